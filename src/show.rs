//! How the CLI and the start-up lines show fingerprints and dates to
//! people, in the one form the console uses too: fingerprints as
//! uppercase hex in groups of four (short: the first four groups and `…`),
//! dates as `YYYY-MM-DD HH:MM` in local time (seconds where they matter).
//! JSON output keeps lowercase hex and RFC 3339.

use punktfunk_certs::Fingerprint;

/// `AB12 CD34 EF56 7890…`: the first four groups of [`Fingerprint::grouped`].
pub(crate) fn fp_short(fp: &Fingerprint) -> String {
    let grouped = fp.grouped();
    let four: Vec<&str> = grouped.split(' ').take(4).collect();
    format!("{}…", four.join(" "))
}

/// An RFC 3339 time as `YYYY-MM-DD HH:MM` in this machine's time zone
/// (the text unchanged if it does not parse).
pub(crate) fn date(rfc3339: &str) -> String {
    local(rfc3339, "%Y-%m-%d %H:%M")
}

/// Like [`date`], with seconds (the audit trail: order within a minute).
pub(crate) fn date_secs(rfc3339: &str) -> String {
    local(rfc3339, "%Y-%m-%d %H:%M:%S")
}

fn local(rfc3339: &str, format: &str) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(t) => t
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime(format)
            .to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_forms() {
        let fp: Fingerprint = "3f2a9c01".repeat(8).parse().unwrap();
        assert_eq!(fp_short(&fp), "3F2A 9C01 3F2A 9C01…");
        let d = date("2026-11-28T12:00:00Z");
        assert_eq!(d.len(), "2026-11-28 12:00".len(), "{d}");
        assert!(d.starts_with("2026-11-2"), "{d}");
        assert_eq!(date_secs("2026-11-28T12:00:07Z").len(), 19);
        assert_eq!(date("not a date"), "not a date");
    }
}
