//! Runs the console's browser tests (every `tests/browser/*.test.mjs`): the real
//! page in Debian's headless Chromium, driven by playwright-core, against
//! this build's `punktfunk` binary. `scripts/test` installs Node packages and
//! Chromium; without them this test fails with what is missing.

use std::path::Path;
use std::process::Command;

#[test]
fn console_page_in_headless_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    for package in ["playwright-core", "axe-core"] {
        assert!(
            dir.join("node_modules").join(package).is_dir(),
            "{package} is not installed: run ./scripts/test (or `npm ci` in {})",
            dir.display()
        );
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is not installed at {chromium}: run ./scripts/test (it installs Debian's chromium)"
    );
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".test.mjs"))
        .collect();
    files.sort();
    let status = Command::new("node")
        .args(["--test", "--test-concurrency=1"])
        .args(&files)
        .current_dir(&dir)
        .env("PUNKTFUNK_BIN", env!("CARGO_BIN_EXE_punktfunk"))
        .env("PUNKTFUNK_SCREENSHOTS", &screenshots)
        .status()
        .expect("cannot run node");
    assert!(status.success(), "browser tests failed (output above)");
}
