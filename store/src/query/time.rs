//! Absolute and relative times, as typed in a time picker or a query.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::StoreError;

/// Reads a time: `now`, `now-15m`, `now+1h` (units `s`, `m`, `h`, `d`, `w`), RFC 3339
/// (`2024-05-01T10:00:00Z`), or a date (`2024-05-01`, meaning its midnight UTC).
///
/// `now` is passed in so that every time in one request is read against the same instant.
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, StoreError> {
    let text = text.trim();
    let invalid = || {
        StoreError::query(format!(
            "`{text}` is not a time; use RFC 3339 (2024-05-01T10:00:00Z), a date, or now-15m"
        ))
    };
    if let Some(offset) = text.strip_prefix("now") {
        if offset.is_empty() {
            return Ok(now);
        }
        let (sign, rest) = match offset.as_bytes().first() {
            Some(b'-') => (-1, &offset[1..]),
            Some(b'+') => (1, &offset[1..]),
            _ => return Err(invalid()),
        };
        let unit_at = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        let (amount, unit) = rest.split_at(unit_at);
        let amount: i64 = amount.parse().map_err(|_| invalid())?;
        let seconds_per_unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(invalid()),
        };
        let delta = amount
            .checked_mul(seconds_per_unit)
            .and_then(Duration::try_seconds)
            .ok_or_else(invalid)?;
        let shifted = if sign < 0 {
            now.checked_sub_signed(delta)
        } else {
            now.checked_add_signed(delta)
        };
        return shifted.ok_or_else(invalid);
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).ok_or_else(invalid)?.and_utc());
    }
    Err(invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn relative_and_absolute_times() {
        let now = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        let p = |s| parse_time(s, now).ok();
        assert_eq!(p("now"), Some(now));
        assert_eq!(p("now-15m"), Some(now - Duration::minutes(15)));
        assert_eq!(p("now-2h"), Some(now - Duration::hours(2)));
        assert_eq!(p("now-7d"), Some(now - Duration::days(7)));
        assert_eq!(p("now+1w"), Some(now + Duration::weeks(1)));
        assert_eq!(
            p("2024-05-01T10:00:00+02:00"),
            Some(Utc.with_ymd_and_hms(2024, 5, 1, 8, 0, 0).unwrap())
        );
        assert_eq!(
            p("2024-04-30"),
            Some(Utc.with_ymd_and_hms(2024, 4, 30, 0, 0, 0).unwrap())
        );
        for bad in [
            "",
            "now-",
            "now-5",
            "now-5y",
            "now*5m",
            "yesterday",
            "now-99999999999999999d",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }
}
