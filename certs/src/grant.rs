//! What a paired device may do: Apollo's permission set, bit for bit, so a
//! streamer ported from Apollo (`src/crypto.h`, `PERM`) maps one to one,
//! and the presets the console and the CLI offer.
//!
//! Apollo's groups: input (controller, touch, pen, mouse, keyboard),
//! operation (clipboard set and read, file upload and download, server
//! commands) and action (list apps, view streams, launch apps). The names
//! here are Apollo's member names, except `file_download` (Apollo spells
//! it `file_dwnload`); the bits are Apollo's values, so
//! [`Permissions::bits`] is the number Apollo stores as `perm`.
//!
//! In files and on the wire a set is a list of names, in bit order; the
//! console and the CLI also accept the short names `controller`, `touch`,
//! `pen`, `mouse` and `keyboard`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A set of permissions.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u32);

/// One permission: its name, its short name (if any) and its bit.
struct Perm {
    name: &'static str,
    short: Option<&'static str>,
    bit: u32,
    /// What it allows, in the console's words.
    what: &'static str,
}

/// Every permission, in bit order (Apollo's values).
const PERMS: [Perm; 13] = [
    Perm {
        name: "input_controller",
        short: Some("controller"),
        bit: 0x0000_0100,
        what: "controllers",
    },
    Perm {
        name: "input_touch",
        short: Some("touch"),
        bit: 0x0000_0200,
        what: "touch",
    },
    Perm {
        name: "input_pen",
        short: Some("pen"),
        bit: 0x0000_0400,
        what: "pen",
    },
    Perm {
        name: "input_mouse",
        short: Some("mouse"),
        bit: 0x0000_0800,
        what: "mouse",
    },
    Perm {
        name: "input_kbd",
        short: Some("keyboard"),
        bit: 0x0000_1000,
        what: "keyboard",
    },
    Perm {
        name: "clipboard_set",
        short: None,
        bit: 0x0001_0000,
        what: "set the host's clipboard",
    },
    Perm {
        name: "clipboard_read",
        short: None,
        bit: 0x0002_0000,
        what: "read the host's clipboard",
    },
    Perm {
        name: "file_upload",
        short: None,
        bit: 0x0004_0000,
        what: "upload files",
    },
    Perm {
        name: "file_download",
        short: None,
        bit: 0x0008_0000,
        what: "download files",
    },
    Perm {
        name: "server_cmd",
        short: None,
        bit: 0x0010_0000,
        what: "run server commands",
    },
    Perm {
        name: "list",
        short: None,
        bit: 0x0100_0000,
        what: "list apps",
    },
    Perm {
        name: "view",
        short: None,
        bit: 0x0200_0000,
        what: "view streams",
    },
    Perm {
        name: "launch",
        short: None,
        bit: 0x0400_0000,
        what: "launch apps",
    },
];

impl Permissions {
    /// Nothing.
    pub const NONE: Self = Self(0);
    /// A controller (gamepad).
    pub const INPUT_CONTROLLER: Self = Self(0x0000_0100);
    /// Touch input.
    pub const INPUT_TOUCH: Self = Self(0x0000_0200);
    /// Pen input.
    pub const INPUT_PEN: Self = Self(0x0000_0400);
    /// Mouse input.
    pub const INPUT_MOUSE: Self = Self(0x0000_0800);
    /// Keyboard input.
    pub const INPUT_KBD: Self = Self(0x0000_1000);
    /// Set the host's clipboard.
    pub const CLIPBOARD_SET: Self = Self(0x0001_0000);
    /// Read the host's clipboard.
    pub const CLIPBOARD_READ: Self = Self(0x0002_0000);
    /// Upload files to the host.
    pub const FILE_UPLOAD: Self = Self(0x0004_0000);
    /// Download files from the host (Apollo: `file_dwnload`).
    pub const FILE_DOWNLOAD: Self = Self(0x0008_0000);
    /// Run the host's server commands.
    pub const SERVER_CMD: Self = Self(0x0010_0000);
    /// List the apps.
    pub const LIST: Self = Self(0x0100_0000);
    /// View a stream already running.
    pub const VIEW: Self = Self(0x0200_0000);
    /// Launch an app (and so start a stream).
    pub const LAUNCH: Self = Self(0x0400_0000);
    /// Every permission (Apollo `_all`).
    pub const ALL: Self = Self(0x071F_1F00);

    /// Apollo's `perm` number for this set.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// The set with Apollo's `perm` number `bits`; bits Apollo does not
    /// define are dropped (as Apollo masks with `_all`).
    pub fn from_bits_truncate(bits: u32) -> Self {
        Self(bits & Self::ALL.0)
    }

    /// Whether every permission of `other` is in this set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether this set shares any permission with `other`.
    pub fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// This set plus `other`.
    #[must_use]
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// This set without `other`.
    #[must_use]
    pub fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The names of the permissions in this set, in bit order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        PERMS
            .iter()
            .filter(move |p| self.0 & p.bit != 0)
            .map(|p| p.name)
    }

    /// What this set allows, in the console's words ("controllers, mouse,
    /// list apps").
    pub fn describe(self) -> String {
        let words: Vec<&str> = PERMS
            .iter()
            .filter(|p| self.0 & p.bit != 0)
            .map(|p| p.what)
            .collect();
        if words.is_empty() {
            "nothing".to_owned()
        } else {
            words.join(", ")
        }
    }

    /// This set for people: its preset's title and what it allows ("Watch
    /// (list apps, view streams)"), or just what it allows.
    pub fn titled(self) -> String {
        match self.preset() {
            Some(preset) => format!("{} ({})", preset.title(), self.describe()),
            None => self.describe(),
        }
    }

    /// The one permission named `name` (its name or short name).
    pub fn named(name: &str) -> Result<Self, UnknownPermission> {
        PERMS
            .iter()
            .find(|p| p.name == name || p.short == Some(name))
            .map(|p| Self(p.bit))
            .ok_or_else(|| UnknownPermission(name.to_owned()))
    }

    /// This set changed by `change`: a preset's name, or a comma-separated
    /// list of `+name` (add) and `-name` (remove), as the CLI takes it
    /// (`punktfunk devices grant PREFIX -list,+clipboard_read`).
    pub fn apply(self, change: &str) -> Result<Self, GrantChangeError> {
        if let Ok(preset) = change.parse::<Preset>() {
            return Ok(preset.permissions());
        }
        let mut set = self;
        for part in change.split(',').map(str::trim) {
            let (add, name) = match part.as_bytes().first() {
                Some(b'+') => (true, &part[1..]),
                Some(b'-') => (false, &part[1..]),
                _ => return Err(GrantChangeError::NotAChange(part.to_owned())),
            };
            let perm = Self::named(name)?;
            set = if add {
                set.with(perm)
            } else {
                set.without(perm)
            };
        }
        Ok(set)
    }

    /// The preset this set is, if it is one.
    pub fn preset(self) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.permissions() == self)
    }
}

impl std::ops::BitOr for Permissions {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        self.with(other)
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// Written as the list of its names, in bit order.
impl Serialize for Permissions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

/// Read from a list of names; an unknown name is an error (a newer build's
/// permission is not silently dropped).
impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names.iter().try_fold(Self::NONE, |set, name| {
            Self::named(name)
                .map(|p| set.with(p))
                .map_err(serde::de::Error::custom)
        })
    }
}

/// A permission name nobody defined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a permission; the permissions are {all}", name = .0, all = all_names())]
pub struct UnknownPermission(pub String);

fn all_names() -> String {
    PERMS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// Why a grant change (`full`, `-list,+clipboard_read`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantChangeError {
    /// A part is neither a preset nor `+name` / `-name`.
    #[error(
        "{0:?} is neither a preset (full, play, gamepad, watch) nor +PERMISSION or -PERMISSION"
    )]
    NotAChange(String),
    /// A name is not a permission.
    #[error(transparent)]
    Unknown(#[from] UnknownPermission),
}

/// What a device may do, as the console's API takes it: a preset's name,
/// or the list of permission names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct May(pub Permissions);

impl<'de> Deserialize<'de> for May {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(name) => name
                .parse::<Preset>()
                .map(|p| May(p.permissions()))
                .map_err(|_| {
                    D::Error::custom(format!(
                        "{name:?} is not a preset (full, play, gamepad, watch)"
                    ))
                }),
            list @ serde_json::Value::Array(_) => Permissions::deserialize(list)
                .map(May)
                .map_err(D::Error::custom),
            _ => Err(D::Error::custom(
                "`may` is a preset's name or a list of permissions",
            )),
        }
    }
}

/// A named set of permissions the console and the CLI offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Everything (what every device had before grants).
    Full,
    /// Play: every input, list, view, launch, and reading the clipboard.
    Play,
    /// Gamepad only: a controller, list, view, launch.
    Gamepad,
    /// Watch: list and view, no input.
    Watch,
}

impl Preset {
    /// Every preset, widest first.
    pub const ALL: [Preset; 4] = [Preset::Full, Preset::Play, Preset::Gamepad, Preset::Watch];

    /// Its permissions.
    pub fn permissions(self) -> Permissions {
        use Permissions as P;
        let watch = P::LIST | P::VIEW;
        match self {
            Preset::Full => P::ALL,
            Preset::Play => {
                watch
                    | P::LAUNCH
                    | P::INPUT_CONTROLLER
                    | P::INPUT_MOUSE
                    | P::INPUT_KBD
                    | P::INPUT_TOUCH
                    | P::INPUT_PEN
                    | P::CLIPBOARD_READ
            }
            Preset::Gamepad => watch | P::LAUNCH | P::INPUT_CONTROLLER,
            Preset::Watch => watch,
        }
    }

    /// Its name as the CLI and the API write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Full => "full",
            Preset::Play => "play",
            Preset::Gamepad => "gamepad",
            Preset::Watch => "watch",
        }
    }

    /// Its name in the console ("Gamepad only").
    pub fn title(self) -> &'static str {
        match self {
            Preset::Full => "Full",
            Preset::Play => "Play",
            Preset::Gamepad => "Gamepad only",
            Preset::Watch => "Watch",
        }
    }
}

impl FromStr for Preset {
    type Err = GrantChangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| GrantChangeError::NotAChange(s.to_owned()))
    }
}

/// How long a guest invite (its pairing link and PIN, or its one-time PIN
/// for Moonlight) pairs.
pub const INVITE_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// What a device is given when it is admitted: its permissions and when
/// its access ends (the grant picker, a guest invite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// What it may do.
    pub permissions: Permissions,
    /// When its access ends.
    pub until: Until,
    /// Given by a guest invite (`Trust::invite`, `Trust::create_otp_for`;
    /// they set it): the device is listed as a guest, and its pairing is
    /// recorded as `invite_used`. The grant pickers leave it `false`.
    pub invite: bool,
}

/// When an admitted device's access ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// It does not.
    Never,
    /// At this time (Unix seconds).
    At(u64),
    /// This many seconds after it is admitted (a guest invite's "for 4
    /// hours", counted from when the guest pairs).
    For(u64),
    /// When its first session ends, as the streamer reports it
    /// (`Trust::session_ended`): a guest for one game night.
    FirstSession,
}

impl Until {
    /// Unix seconds it ends at, for a device admitted at `now` (`None`: no
    /// time; [`Until::FirstSession`] ends at an event).
    pub fn at(self, now: u64) -> Option<u64> {
        match self {
            Until::Never | Until::FirstSession => None,
            Until::At(t) => Some(t),
            Until::For(s) => Some(now.saturating_add(s)),
        }
    }
}

/// A change to what a paired device may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessChange {
    /// Its permissions become these.
    Permissions(Permissions),
    /// Enabled (`true`) or disabled (`false`).
    Enabled(bool),
    /// Its access ends at this time (Unix seconds), or never (`None`):
    /// this also renews an expired device.
    Expires(Option<u64>),
    /// Its access ended at its time (the expiry timer's change).
    Expired,
    /// Its first session ended, and with it its access (a device admitted
    /// [`Until::FirstSession`]).
    FirstSessionEnded,
    /// Its access ends when its next session does (this also renews an
    /// expired device).
    UntilFirstSession,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bits_are_apollo_s() {
        // src/crypto.h: _all = 0x71F1F00, _default (list + view) = 0x3000000.
        assert_eq!(Permissions::ALL.bits(), 0x071F_1F00);
        assert_eq!(Preset::Watch.permissions().bits(), 0x0300_0000);
        let every = PERMS.iter().fold(0, |all, p| all | p.bit);
        assert_eq!(every, Permissions::ALL.bits());
        assert_eq!(
            Permissions::from_bits_truncate(u32::MAX),
            Permissions::ALL,
            "undefined bits are dropped"
        );
    }

    #[test]
    fn a_set_is_written_and_read_as_its_names() {
        let play = Preset::Play.permissions();
        let json = serde_json::to_string(&play).unwrap();
        assert_eq!(
            json,
            r#"["input_controller","input_touch","input_pen","input_mouse","input_kbd","clipboard_read","list","view","launch"]"#
        );
        assert_eq!(serde_json::from_str::<Permissions>(&json).unwrap(), play);
        assert!(serde_json::from_str::<Permissions>(r#"["list","teleport"]"#).is_err());
        assert_eq!(play.preset(), Some(Preset::Play));
        assert_eq!(play.without(Permissions::LIST).preset(), None);
    }

    #[test]
    fn changes_are_presets_or_plus_and_minus_names() {
        let play = Preset::Play.permissions();
        assert_eq!(play.apply("full").unwrap(), Permissions::ALL);
        let less = play.apply("-list, +clipboard_set,-keyboard").unwrap();
        assert!(!less.contains(Permissions::LIST));
        assert!(!less.contains(Permissions::INPUT_KBD));
        assert!(less.contains(Permissions::CLIPBOARD_SET | Permissions::VIEW));
        assert_eq!(
            play.apply("list"),
            Err(GrantChangeError::NotAChange("list".into()))
        );
        assert!(matches!(
            play.apply("+fly"),
            Err(GrantChangeError::Unknown(_))
        ));
        assert_eq!(
            Preset::Watch.permissions().describe(),
            "list apps, view streams"
        );
    }

    #[test]
    fn may_is_a_preset_s_name_or_the_list() {
        let may = |json: &str| serde_json::from_str::<May>(json).map(|May(p)| p);
        assert_eq!(may(r#""watch""#).unwrap(), Preset::Watch.permissions());
        assert_eq!(
            may(r#"["list","launch"]"#).unwrap(),
            Permissions::LIST | Permissions::LAUNCH
        );
        assert_eq!(may("[]").unwrap(), Permissions::NONE);
        assert!(may(r#""everything""#)
            .unwrap_err()
            .to_string()
            .contains("not a preset"));
        assert!(may(r#"["fly"]"#)
            .unwrap_err()
            .to_string()
            .contains("not a permission"));
        assert!(may("3").is_err());
    }
}
