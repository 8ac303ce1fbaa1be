//! Dates as RFC 3339 writes them: `YYYY-MM-DD` with a four-digit year,
//! 0001–9999. chrono alone also reads `+12026-01-01` or `0000-01-01`,
//! which generated clients (Python's `isoparse`, JavaScript's `Date`)
//! cannot read back, so such a date is refused on the way in.

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, de::Error};

pub const FORMAT_HINT: &str = "must be a date YYYY-MM-DD with a year from 0001 to 9999";

/// Parses `YYYY-MM-DD` strictly.
pub fn parse(raw: &str) -> Result<NaiveDate, &'static str> {
    let b = raw.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped || &raw[..4] == "0000" {
        return Err(FORMAT_HINT);
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| FORMAT_HINT)
}

/// `#[serde(deserialize_with = "crate::dates::date")]`
pub fn date<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
    let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    parse(&raw).map_err(D::Error::custom)
}

/// `#[serde(default, deserialize_with = "crate::dates::optional")]`
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    match <Option<std::borrow::Cow<'de, str>>>::deserialize(d)? {
        None => Ok(None),
        Some(raw) => parse(&raw).map(Some).map_err(D::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn four_digit_years_only() {
        assert_eq!(parse("2026-02-28").unwrap().to_string(), "2026-02-28");
        assert_eq!(parse("0001-01-01").unwrap().to_string(), "0001-01-01");
        assert_eq!(parse("9999-12-31").unwrap().to_string(), "9999-12-31");
        for bad in [
            "+12026-01-01",
            "-0001-01-01",
            "0000-01-01",
            "+99999-12-31",
            "2026-02-30",
            "2026-2-28",
            "20260228",
            "2026-02-28T00:00:00Z",
            " 2026-02-28",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
