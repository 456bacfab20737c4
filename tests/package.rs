//! The Debian package, installed: the host runs exactly as the system unit
//! says (its `ExecStart`, as its `User=`, state in `/var/lib/punktfunk`), a
//! real Moonlight client pairs with it, and the device is still paired after
//! the service restarts.
//!
//! It needs the package installed and root (to become the service user), so
//! it is ignored in a plain `cargo test`; `scripts/package-test` (part of
//! `scripts/test`) builds and installs the package, runs it with
//! `--ignored`, and purges the package again.

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use common::moonlight::{self, Device, Door};
use common::{Console, Host};

const UNIT: &str = "/usr/lib/systemd/system/punktfunk.service";
const STATE: &str = "/var/lib/punktfunk";

/// The value of `key=` in the unit's `[Service]` section.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{UNIT} has no {key}="))
        .trim()
        .to_owned()
}

/// The unit's `ExecStart`, run as its `User=`, stdout captured.
fn service_command() -> Command {
    let unit = std::fs::read_to_string(UNIT).expect("the package is not installed");
    let exec = unit_value(&unit, "ExecStart");
    let user = unit_value(&unit, "User");
    let group = unit_value(&unit, "Group");
    let mut words = exec.split_whitespace();
    let program = words.next().unwrap();
    assert_eq!(program, "/usr/bin/punktfunk", "{exec}");
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={user}"))
        .arg(format!("--regid={group}"))
        .arg("--init-groups")
        .arg(program)
        .args(words)
        // What systemd gives the service: no terminal, the journal (here a
        // pipe) on stdout.
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

fn owner_and_mode(path: &Path) -> (u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.uid(), m.permissions().mode() & 0o777)
}

#[test]
#[ignore = "needs the installed Debian package and root: run scripts/package-test"]
fn the_installed_service_pairs_a_moonlight_client_and_keeps_it_across_a_restart() {
    let state = Path::new(STATE);
    let host = Host::start_with(service_command(), state);
    // The first start shows the generated console password (the journal
    // has it), as every start does until someone logs in.
    let password = host.password().to_owned();

    // Root's bare commands mean the service's host (no second identity in
    // /root/.config), and say which dir they used.
    let bare = |args: &[&str]| {
        let out = Command::new("/usr/bin/punktfunk")
            .args(args)
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, fp, said) = bare(&["fingerprint"]);
    assert!(ok, "{said}");
    let grouped = host
        .lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("host fingerprint  "))
        .unwrap()
        .to_owned();
    assert_eq!(fp.trim(), grouped);
    assert!(
        said.contains("state dir: /var/lib/punktfunk (the system service's"),
        "{said}"
    );
    let (ok, list, said) = bare(&["devices", "list"]);
    assert!(ok && list.contains("no paired devices"), "{list}{said}");
    // Root's bare `serve` would write as root into the service's dir:
    // refused, with what to run instead.
    let (ok, _, said) = bare(&["serve", "--no-mdns"]);
    assert!(!ok);
    assert!(
        said.contains("`sudo -u punktfunk punktfunk serve --state-dir /var/lib/punktfunk`")
            && said.contains("systemctl start punktfunk"),
        "{said}"
    );

    let door = Door::of(&host);
    let console = Console::login(&host);
    let deck = Device::new();
    moonlight::pair(&console, door, &deck);
    assert!(moonlight::device(&console, &deck.fingerprint).is_some());
    assert_eq!(deck.pair_status(door).as_deref(), Some("1"));
    assert!(
        host.stop().success(),
        "the service must stop cleanly on SIGTERM"
    );

    // Everything it wrote belongs to the service user and no one else.
    let uid = std::fs::metadata(state).unwrap().uid();
    assert_ne!(uid, 0, "the state dir belongs to the service user");
    assert_eq!(owner_and_mode(state), (uid, 0o700));
    for file in [
        "host.key",
        "trust.json",
        "console.passwd",
        "audit.jsonl",
        "console.logged-in",
    ] {
        assert_eq!(owner_and_mode(&state.join(file)), (uid, 0o600), "{file}");
    }

    // The README's way to choose the password: as root, on the service's
    // state dir; the file stays readable by the service.
    let chosen = "a password for the living room";
    let mut set = Command::new("/usr/bin/punktfunk")
        .args(["console", "set-password", "--state-dir", STATE])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    set.stdin
        .take()
        .unwrap()
        .write_all(format!("{chosen}\n").as_bytes())
        .unwrap();
    assert!(set.wait().unwrap().success());
    assert_eq!(owner_and_mode(&state.join("console.passwd")), (uid, 0o600));

    // The generated one was used (a login): no copy of it is kept.
    assert!(!state.join("console.generated-password").exists());

    // A restart: the identity and the device are kept; the password is
    // the one chosen, and none is shown (someone has logged in).
    let mut again = Host::start_with(service_command(), state);
    assert!(again.password.is_none(), "no password after a login");
    assert!(
        !again
            .lines
            .iter()
            .any(|l| l.starts_with("console password")),
        "{:?}",
        again.lines
    );
    assert_ne!(password, chosen);
    again.password = Some(chosen.to_owned());
    let console = Console::login(&again);
    assert!(moonlight::device(&console, &deck.fingerprint).is_some());
    assert_eq!(deck.pair_status(Door::of(&again)).as_deref(), Some("1"));
    assert!(again.stop().success());
}

#[test]
#[ignore = "needs the installed Debian package: run scripts/package-test"]
fn the_installed_binary_is_stripped() {
    let bin = Path::new("/usr/bin/punktfunk");
    let sections = Command::new("readelf")
        .args(["-S", "-W"])
        .arg(bin)
        .output()
        .unwrap();
    assert!(sections.status.success());
    let sections = String::from_utf8_lossy(&sections.stdout);
    for debug in [".debug_info", ".debug_line", ".debug_str"] {
        assert!(!sections.contains(debug), "{debug} in {}", bin.display());
    }
    // Where the symbols went: the -dbgsym package, found by build ID.
    assert!(sections.contains(".gnu_debuglink"), "{sections}");
    let file = Command::new("file").arg(bin).output().unwrap();
    assert!(
        String::from_utf8_lossy(&file.stdout).contains(", stripped"),
        "{file:?}"
    );
    // scripts/package-test packages the debug build: stripped it is about
    // 22 MB (the release build about 7.5 MB); with its debug info, 150 MB.
    let size = std::fs::metadata(bin).unwrap().len();
    assert!(size < 32 << 20, "{} is {size} bytes", bin.display());
}
