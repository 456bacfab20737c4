//! How the CLI and the start-up lines show fingerprints and dates to
//! people, in the one form the console uses too: fingerprints as
//! uppercase hex in groups of four (short: the first four groups and `…`),
//! dates as `YYYY-MM-DD HH:MM` in local time (seconds where they matter).
//! JSON output keeps lowercase hex and RFC 3339. Links are shown with their
//! QR code drawn in the terminal.

use punktfunk_certs::Fingerprint;
use qrcode::render::unicode::Dense1x2;
use qrcode::QrCode;

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

/// `text` as a QR code drawn with Unicode half blocks (two modules per
/// character cell), one line per row, quiet zone included. Drawn light on
/// dark: a dark module is a space, a light one a block, which reads right
/// on the usual dark terminal background (phones also read the inverse).
/// `None` if the text is too long for a QR code.
pub fn qr(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    let mut block = code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    block.push('\n');
    Some(block)
}

/// Unix seconds as [`date`] shows them.
pub(crate) fn date_unix(secs: u64) -> String {
    match i64::try_from(secs).map(jiff::Timestamp::from_second) {
        Ok(Ok(t)) => date(&t.to_string()),
        _ => secs.to_string(),
    }
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
        assert_eq!(date_unix(1_798_135_200), date("2026-12-24T18:00:00Z"));
        assert_eq!(date_unix(u64::MAX), u64::MAX.to_string());
    }
}
