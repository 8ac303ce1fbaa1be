//! Content negotiation: how much a request's `Accept` wants a media type,
//! q-values honoured (RFC 9110 §12.5.1), in integer thousandths.

use axum::http::{HeaderMap, header};

/// The quality (0–1000) `Accept` gives `media` (`type/subtype`): that of
/// the most specific range naming it (`type/subtype`, then `type/*`, then
/// `*/*`), 0 when none does. Without `Accept` anything is welcome (1000).
pub fn quality(headers: &HeaderMap, media: &str) -> u16 {
    let mut ranges = headers.get_all(header::ACCEPT).iter().peekable();
    if ranges.peek().is_none() {
        return 1000;
    }
    let kind = media.split('/').next().unwrap_or("");
    let mut best = (0u8, 0u16);
    for value in ranges {
        for range in value.to_str().unwrap_or("").split(',') {
            let mut parts = range.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let specific = if name == media {
                3
            } else if name.strip_suffix("/*") == Some(kind) {
                2
            } else if name == "*/*" {
                1
            } else {
                continue;
            };
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(qvalue)
                .unwrap_or(1000);
            if specific > best.0 || (specific == best.0 && q > best.1) {
                best = (specific, q);
            }
        }
    }
    best.1
}

/// `Accept` wants `media` more than `default` (a tie is the default's).
pub fn prefers(headers: &HeaderMap, media: &str, default: &str) -> bool {
    quality(headers, media) > quality(headers, default)
}

/// An RFC 9110 qvalue (`0`–`1`, at most three decimals) in thousandths.
fn qvalue(raw: &str) -> Option<u16> {
    let (whole, frac) = raw.trim().split_once('.').unwrap_or((raw.trim(), ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{frac:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Headers with this `Accept`, for tests of what a handler negotiates.
#[cfg(test)]
pub(crate) fn accept(v: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT, axum::http::HeaderValue::from_str(v).unwrap());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qvalues_in_thousandths() {
        assert_eq!(
            (
                qvalue("0.5"),
                qvalue("1"),
                qvalue("0"),
                qvalue("1.5"),
                qvalue("0.1234")
            ),
            (Some(500), Some(1000), Some(0), None, None)
        );
    }

    #[test]
    fn the_most_specific_range_decides() {
        let h = accept("text/*;q=0.3, text/csv;q=0.7, */*;q=0.1");
        assert_eq!(quality(&h, "text/csv"), 700);
        assert_eq!(quality(&h, "text/plain"), 300);
        assert_eq!(quality(&h, "application/json"), 100);
        assert_eq!(quality(&HeaderMap::new(), "application/json"), 1000);
        // A Prometheus scraper's Accept keeps its text.
        let scraper =
            accept("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1");
        assert!(!prefers(&scraper, "application/json", "text/plain"));
        assert!(prefers(
            &accept("application/json"),
            "application/json",
            "text/plain"
        ));
        assert!(!prefers(&accept("*/*"), "application/json", "text/plain"));
    }
}
