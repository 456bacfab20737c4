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
    // The first start shows the console password once (the journal has it).
    let password = host.password().to_owned();
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
    for file in ["host.key", "trust.json", "console.passwd", "audit.jsonl"] {
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

    // A restart: the identity and the device are kept; the password is
    // the one chosen, and none is shown.
    let mut again = Host::start_with(service_command(), state);
    assert!(again.password.is_none(), "the password is shown only once");
    assert_ne!(password, chosen);
    again.password = Some(chosen.to_owned());
    let console = Console::login(&again);
    assert!(moonlight::device(&console, &deck.fingerprint).is_some());
    assert_eq!(deck.pair_status(Door::of(&again)).as_deref(), Some("1"));
    assert!(again.stop().success());
}
