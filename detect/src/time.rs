//! The parts of a timestamp that the time modifiers (`minute`, `hour`, `day`, `week`, `month`,
//! `year`) compare.
//!
//! The specification says these modifiers do no time zone or format conversion, so a timestamp
//! string is read as written: `2024-03-05T23:10:00+02:00` has hour 23, whatever its offset.

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use vigil_event::JsonRef as Json;

use crate::modifier::TimePart;

impl TimePart {
    /// The values a part can take; a rule value outside them could never match.
    pub fn range(self) -> (i64, i64) {
        match self {
            TimePart::Minute => (0, 59),
            TimePart::Hour => (0, 23),
            TimePart::Day => (1, 31),
            // ISO 8601 weeks: years with 53 exist, though the specification says 52.
            TimePart::Week => (1, 53),
            TimePart::Month => (1, 12),
            TimePart::Year => (i64::MIN, i64::MAX),
        }
    }
}

/// The part of a field value read as a timestamp; `None` when it is not one, or when it has no
/// such part (a bare date has no hour).
pub(crate) fn part_of(value: Json<'_>, part: TimePart) -> Option<i64> {
    match value {
        Json::String(text) => part_of_text(text, part),
        // Numbers are Unix times in seconds, in UTC.
        Json::Number(n) => {
            let secs = n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f.floor() as i64))?;
            let t = DateTime::from_timestamp(secs, 0)?.naive_utc();
            Some(match part {
                TimePart::Minute => t.minute().into(),
                TimePart::Hour => t.hour().into(),
                TimePart::Day => t.day().into(),
                TimePart::Week => t.iso_week().week().into(),
                TimePart::Month => t.month().into(),
                TimePart::Year => t.year().into(),
            })
        }
        _ => None,
    }
}

/// Reads `YYYY-MM-DD`, optionally followed by `T` or a space and `HH:MM`; seconds, fractions
/// and a zone may follow and are not needed.
fn part_of_text(text: &str, part: TimePart) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let slice = b.get(range)?;
        slice.iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let year = digits(0..4)?;
    let month = digits(5..7)?;
    let day = digits(8..10)?;
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    let time = || -> Option<(u32, u32)> {
        if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
            return None;
        }
        let (hour, minute) = (digits(11..13)?, digits(14..16)?);
        (hour < 24 && minute < 60).then_some((hour, minute))
    };
    match b.get(10) {
        None | Some(b'T' | b't' | b' ') => {}
        // Anything else glued to the date means it is not one.
        Some(_) => return None,
    }
    Some(match part {
        TimePart::Minute => time()?.1.into(),
        TimePart::Hour => time()?.0.into(),
        TimePart::Day => date.day().into(),
        TimePart::Week => date.iso_week().week().into(),
        TimePart::Month => date.month().into(),
        TimePart::Year => date.year().into(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_parts_as_written() {
        let t = json!("2024-03-05T23:10:59.123+02:00");
        assert_eq!(part_of(Json::from(&t), TimePart::Minute), Some(10));
        assert_eq!(part_of(Json::from(&t), TimePart::Hour), Some(23));
        assert_eq!(part_of(Json::from(&t), TimePart::Day), Some(5));
        assert_eq!(part_of(Json::from(&t), TimePart::Week), Some(10));
        assert_eq!(part_of(Json::from(&t), TimePart::Month), Some(3));
        assert_eq!(part_of(Json::from(&t), TimePart::Year), Some(2024));
        let spaced = json!("2021-01-03 04:05:06");
        assert_eq!(part_of(Json::from(&spaced), TimePart::Hour), Some(4));
        // 2021-01-03 is a Sunday of ISO week 53 of 2020.
        assert_eq!(part_of(Json::from(&spaced), TimePart::Week), Some(53));
    }

    #[test]
    fn dates_have_no_time_and_junk_has_nothing() {
        let date = json!("2024-03-05");
        assert_eq!(part_of(Json::from(&date), TimePart::Day), Some(5));
        assert_eq!(part_of(Json::from(&date), TimePart::Hour), None);
        for junk in [
            "",
            "2024",
            "2024-13-01",
            "2024-02-30",
            "x024-01-01",
            "2024-01-01X",
        ] {
            assert_eq!(
                part_of(Json::from(&json!(junk)), TimePart::Year),
                None,
                "{junk}"
            );
        }
        assert_eq!(
            part_of(Json::from(&json!("2024-01-01T25:00")), TimePart::Hour),
            None
        );
        assert_eq!(part_of(Json::from(&json!(true)), TimePart::Year), None);
        assert_eq!(
            part_of(Json::from(&json!("٢٠٢٤-01-01")), TimePart::Year),
            None
        );
    }

    #[test]
    fn numbers_are_unix_seconds() {
        assert_eq!(part_of(Json::from(&json!(0)), TimePart::Year), Some(1970));
        assert_eq!(part_of(Json::from(&json!(3600.5)), TimePart::Hour), Some(1));
        assert_eq!(part_of(Json::from(&json!(i64::MAX)), TimePart::Year), None);
        assert_eq!(part_of(Json::from(&json!(1e300)), TimePart::Year), None);
    }
}
