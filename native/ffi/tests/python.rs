//! The FFI layer end to end through UniFFI's generated Python bindings
//! (`tests/e2e.py`) against the real `punktfunk serve --native`, and the
//! committed Swift bindings checked against the library they came from.
//!
//! Both need the built library (`libpunktfunk_client_ffi.so`, a cdylib of
//! this crate) and the host binary next to `uniffi-bindgen` in the target
//! dir; `cargo test --workspace --all-targets` (scripts/test) builds all
//! three before running any test.

use std::path::{Path, PathBuf};
use std::process::Command;

const BINDGEN: &str = env!("CARGO_BIN_EXE_uniffi-bindgen");

/// The target dir's profile directory (`target/debug`).
fn built() -> PathBuf {
    Path::new(BINDGEN).parent().unwrap().to_path_buf()
}

/// The cdylib: uplifted to `target/debug` by `cargo build`, left in
/// `target/debug/deps` by `cargo test`; the newer of the two (an uplifted
/// copy from an earlier `cargo build` may be stale).
fn library() -> PathBuf {
    let name = format!(
        "{}punktfunk_client_ffi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    [built().join(&name), built().join("deps").join(&name)]
        .into_iter()
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| {
            panic!(
                "{name} is not built in {}: run `cargo build -p punktfunk-client-ffi`",
                built().display()
            )
        })
}

/// `uniffi-bindgen generate --library LIB --language LANGUAGE --out-dir OUT`.
fn generate(language: &str, out: &Path) {
    let status = Command::new(BINDGEN)
        .args(["generate", "--library"])
        .arg(library())
        .args(["--language", language, "--no-format", "--out-dir"])
        .arg(out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cannot run uniffi-bindgen");
    assert!(status.success(), "uniffi-bindgen failed for {language}");
}

#[test]
fn the_python_bindings_pair_connect_knock_and_see_revocation_against_the_real_host() {
    let host = built().join("punktfunk");
    assert!(
        host.exists(),
        "{} is not built: run `cargo build --bin punktfunk` (scripts/test builds everything)",
        host.display()
    );
    let out = tempfile::tempdir().unwrap();
    generate("python", out.path());
    let lib = library();
    std::fs::copy(&lib, out.path().join(lib.file_name().unwrap())).unwrap();
    let python = std::env::var("PUNKTFUNK_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e.py"))
        .env("PF_BINDINGS", out.path())
        .env("PF_HOST_BIN", &host)
        .status()
        .expect("cannot run python3");
    assert!(
        status.success(),
        "the Python-through-FFI tests failed (output above)"
    );
}

/// The Swift sources committed for the app are what this library generates:
/// regenerate with `scripts/apple-xcframework --bindings-only`.
#[test]
fn the_committed_swift_bindings_are_up_to_date() {
    let out = tempfile::tempdir().unwrap();
    generate("swift", out.path());
    let swift_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("swift");
    for (generated, committed) in [
        (
            "punktfunk_client.swift",
            "Sources/PunktfunkClient/punktfunk_client.swift",
        ),
        ("punktfunk_clientFFI.h", "Headers/punktfunk_clientFFI.h"),
        ("punktfunk_clientFFI.modulemap", "Headers/module.modulemap"),
    ] {
        let fresh = std::fs::read_to_string(out.path().join(generated))
            .unwrap_or_else(|e| panic!("uniffi-bindgen made no {generated}: {e}"));
        let path = swift_dir.join(committed);
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            fresh == old,
            "{} is stale: run `scripts/apple-xcframework --bindings-only` and commit the result",
            path.display()
        );
    }
}
