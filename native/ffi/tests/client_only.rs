//! The Apple app's library is a client: it must not compile the host's
//! trust service (the gate, the registry, the audit writer) or its
//! connection admission. Checked on the dependency tree cargo resolves for
//! this package alone.

use std::process::Command;

#[test]
fn the_library_depends_on_no_part_of_the_host() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "punktfunk-client-ffi",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let ours: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("punktfunk"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(ours.contains(&"punktfunk-native"), "{tree}");
    assert!(ours.contains(&"punktfunk-identity"), "{tree}");
    for host in ["punktfunk-certs", "punktfunk-conn", "punktfunk-gamestream"] {
        assert!(
            !ours.contains(&host),
            "{host} in the client's tree:\n{tree}"
        );
    }
}
