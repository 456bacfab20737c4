//! The one rule for names people read: device names from every door (a
//! native `hello`, a Moonlight `devicename`), the host name, and labels typed
//! into the console.
//!
//! Names come from the network and end up on the console page next to an
//! Approve button, so they must not be able to hide or reorder text: a
//! `"Living Room\u{202E}"` must not render as something else. The rule is the
//! one `docs/native-protocol.md` § 4.2 specifies for the native door, applied
//! to every door:
//!
//! 1. Whitespace, including the control characters that are whitespace (TAB,
//!    LF, CR, U+0085 …), is folded: every run becomes one space, and leading
//!    and trailing runs go.
//! 2. The other control characters (Cc) are removed, and so are the
//!    characters that print nothing and can hide or reorder text: every
//!    `Default_Ignorable_Code_Point` (bidi overrides and isolates, zero-width
//!    characters, soft hyphen, BOM, variation selectors, tags, Hangul
//!    fillers, …) and the braille blank.
//! 3. At most [`MAX_NAME_CHARS`] characters are kept (a device name is cut
//!    there; a label that is longer is refused instead, see [`Label`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest name kept, in characters (Unicode scalar values).
pub const MAX_NAME_CHARS: usize = 64;
/// Longest label, in characters, after the rule is applied.
pub const MAX_LABEL_CHARS: usize = MAX_NAME_CHARS;

/// Reads a cleaned text newtype as the `str` it holds.
macro_rules! text_newtype {
    ($t:ident) => {
        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}

/// A name shown to people, cleaned by the module's rule: never empty, no
/// control or invisible formatting characters, no leading, trailing or
/// repeated whitespace, 1 to [`MAX_NAME_CHARS`] characters.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    /// Applies the rule; `None` if nothing printable is left.
    pub fn sanitize(raw: &str) -> Option<Self> {
        let s = sanitize(raw, MAX_NAME_CHARS);
        (!s.is_empty()).then_some(Self(s))
    }

    /// Applies the rule; `fallback` if nothing printable is left.
    pub fn sanitize_or(raw: &str, fallback: &str) -> Self {
        Self::sanitize(raw)
            .or_else(|| Self::sanitize(fallback))
            .unwrap_or_else(|| Self("unnamed device".to_owned()))
    }

    /// The cleaned name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype!(DisplayName);

impl<'de> Deserialize<'de> for DisplayName {
    /// Stored names are cleaned again on load, so a file written by an older
    /// build (or by hand) cannot bring back what the rule removes.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Ok(Self::sanitize_or(&raw, "unnamed device"))
    }
}

/// A label typed into the console for a device ("Living Room TV"), cleaned
/// by the same rule as device names.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Label(String);

/// Why a label was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Longer than [`MAX_LABEL_CHARS`] once cleaned.
    #[error("a label has at most {MAX_LABEL_CHARS} characters")]
    TooLong,
}

impl Label {
    /// Cleans a label. `Ok(None)` when nothing printable is left (which
    /// clears the label); an error when it is too long, rather than cutting
    /// what the person typed.
    pub fn parse(raw: &str) -> Result<Option<Self>, LabelError> {
        let s = sanitize(raw, MAX_LABEL_CHARS + 1);
        if s.chars().count() > MAX_LABEL_CHARS {
            return Err(LabelError::TooLong);
        }
        Ok((!s.is_empty()).then_some(Self(s)))
    }

    /// The cleaned label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype!(Label);

/// Reads a stored optional label, cleaned again: one that is no longer
/// acceptable is cut to the limit, or dropped if nothing is left, rather
/// than failing the whole file (use with `#[serde(default, deserialize_with)]`).
pub fn deserialize_label<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Label>, D::Error> {
    let raw = Option::<String>::deserialize(d)?;
    Ok(raw
        .map(|raw| sanitize(&raw, MAX_LABEL_CHARS))
        .filter(|s| !s.is_empty())
        .map(Label))
}

/// The rule (module docs): fold whitespace, drop control and invisible
/// formatting characters, trim, keep at most `max_chars` characters. For
/// other text shown to people, such as a peer's error message.
pub fn sanitize(raw: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut space = false;
    for c in raw.chars() {
        // Before the control check: TAB, LF, CR and U+0085 are both, and
        // they separate words, so they become a space rather than vanish.
        if c.is_whitespace() {
            space = count > 0;
            continue;
        }
        if c.is_control() || is_invisible_format(c) {
            continue;
        }
        let need = if space { 2 } else { 1 };
        if count + need > max_chars {
            break;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
        count += need;
    }
    out
}

/// Characters that render as nothing and so can hide or pad text on screen:
/// every `Default_Ignorable_Code_Point` (soft hyphen, zero-width and bidi
/// controls, BOM, variation selectors, tags, Hangul fillers, musical and
/// shorthand format controls, and the code points reserved for more of
/// them), from ICU's table of the Unicode Character Database rather than a
/// list kept by hand; and three that are not in that property but print
/// nothing either: the braille blank U+2800 and the interlinear annotation
/// controls U+FFF9–U+FFFB.
pub fn is_invisible_format(c: char) -> bool {
    const DEFAULT_IGNORABLE: icu_properties::CodePointSetDataBorrowed<'static> =
        icu_properties::CodePointSetData::new::<icu_properties::props::DefaultIgnorableCodePoint>();
    DEFAULT_IGNORABLE.contains(c) || matches!(c, '\u{2800}' | '\u{FFF9}'..='\u{FFFB}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Option<String> {
        DisplayName::sanitize(s).map(|d| d.0)
    }

    #[test]
    fn names_lose_what_hides_or_reorders_text() {
        assert_eq!(n("Living Room\u{202E}").as_deref(), Some("Living Room"));
        assert_eq!(
            n("\u{202E}moc.elgoog\u{202C}").as_deref(),
            Some("moc.elgoog")
        );
        assert_eq!(
            n("Ann\u{200B}a\u{2066}'s\u{2069}").as_deref(),
            Some("Anna's")
        );
        assert_eq!(n("a\u{FEFF}b\u{00AD}c\u{E0041}").as_deref(), Some("abc"));
        assert_eq!(n("x\u{0007}y\u{007F}z").as_deref(), Some("xyz"));
        // Musical symbol beams/ties/slurs, shorthand format controls, the
        // braille blank: they print nothing, so "TV" + them must be "TV".
        for c in ('\u{1D173}'..='\u{1D17A}').chain('\u{1BCA0}'..='\u{1BCA3}') {
            assert_eq!(n(&format!("T{c}V{c}")).as_deref(), Some("TV"), "{c:?}");
        }
        assert_eq!(
            n("Living Room TV\u{2800}\u{2800}").as_deref(),
            Some("Living Room TV")
        );
        assert_eq!(n("\u{2800}"), None);
        // Every character the rule listed by hand before is still dropped.
        for c in [
            '\u{00AD}', '\u{034F}', '\u{061C}', '\u{115F}', '\u{1160}', '\u{17B4}', '\u{17B5}',
            '\u{3164}', '\u{FEFF}', '\u{FFA0}',
        ]
        .into_iter()
        .chain('\u{180B}'..='\u{180F}')
        .chain('\u{200B}'..='\u{200F}')
        .chain('\u{202A}'..='\u{202E}')
        .chain('\u{2060}'..='\u{206F}')
        .chain('\u{FE00}'..='\u{FE0F}')
        .chain('\u{FFF0}'..='\u{FFFB}')
        .chain('\u{E0000}'..='\u{E0FFF}')
        {
            assert!(is_invisible_format(c), "{c:?}");
        }
        // Visible neighbours stay: a braille dot, a musical symbol.
        assert_eq!(n("\u{2801}\u{1D172}").as_deref(), Some("\u{2801}\u{1D172}"));
    }

    #[test]
    fn whitespace_controls_become_one_space() {
        assert_eq!(n("  a\t\tb\r\nc\u{0085}d  ").as_deref(), Some("a b c d"));
        assert_eq!(n("a \u{3000} b").as_deref(), Some("a b"));
        assert_eq!(n(" \t\u{200B}\u{202E} "), None);
        assert_eq!(n(""), None);
    }

    #[test]
    fn names_are_cut_at_64_characters() {
        let long = "é".repeat(100);
        assert_eq!(n(&long).unwrap().chars().count(), MAX_NAME_CHARS);
        // A space is never left dangling at the cut.
        let spaced = format!("{} b", "a".repeat(63));
        assert_eq!(n(&spaced).unwrap(), "a".repeat(63));
        assert_eq!(
            DisplayName::sanitize_or("\u{202E}", "Moonlight").as_str(),
            "Moonlight"
        );
    }

    #[test]
    fn labels_follow_the_same_rule_and_refuse_overlong_input() {
        let l = |s: &str| Label::parse(s).map(|o| o.map(|l| l.0));
        assert_eq!(
            l(" TV\u{202E} \t room ").unwrap().as_deref(),
            Some("TV room")
        );
        assert_eq!(l("\u{200B} ").unwrap(), None);
        assert_eq!(l(&"x".repeat(64)).unwrap().unwrap().len(), 64);
        assert_eq!(l(&"x".repeat(65)).unwrap_err(), LabelError::TooLong);
        // Invisible characters do not count against the limit.
        let padded = format!("{}{}", "x".repeat(64), "\u{200B}".repeat(10));
        assert!(l(&padded).unwrap().is_some());
    }

    #[test]
    fn stored_names_are_cleaned_on_load() {
        let d: DisplayName = serde_json::from_str("\"TV\\u202e\"").unwrap();
        assert_eq!(d.as_str(), "TV");
        let d: DisplayName = serde_json::from_str("\"\\u200b\"").unwrap();
        assert_eq!(d.as_str(), "unnamed device");
        #[derive(Deserialize)]
        struct Stored {
            #[serde(default, deserialize_with = "deserialize_label")]
            label: Option<Label>,
        }
        let label = |json: &str| serde_json::from_str::<Stored>(json).unwrap().label;
        assert_eq!(label(r#"{"label": " Den\u202e "}"#).unwrap(), "Den");
        assert_eq!(label(r#"{"label": "\u200b"}"#), None);
        assert_eq!(label(r#"{"label": null}"#), None);
        assert_eq!(label("{}"), None);
    }
}
