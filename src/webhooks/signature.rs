//! `Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`,
//! with several `v1=` during a rotation. Verified on the raw bytes, in
//! constant time (`Mac::verify_slice`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub timestamp: i64,
    pub signatures: Vec<Vec<u8>>,
}

/// `None` when the header is not of the documented form.
pub fn parse(header: &str) -> Option<Header> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "t" if timestamp.is_none() => timestamp = Some(v.parse::<i64>().ok()?),
            "v1" => signatures.push(hex::decode(v).ok()?),
            // Other schemes (v0, …) are ignored, as Stripe does.
            _ if k != "t" => {}
            _ => return None,
        }
    }
    let timestamp = timestamp?;
    (!signatures.is_empty()).then_some(Header {
        timestamp,
        signatures,
    })
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Some signature of the header was made with one of `secrets`.
pub fn verify<'a>(header: &Header, body: &[u8], secrets: impl IntoIterator<Item = &'a str>) -> bool {
    secrets.into_iter().any(|secret| {
        header
            .signatures
            .iter()
            .any(|sig| mac(secret, header.timestamp, body).verify_slice(sig).is_ok())
    })
}

/// The header a provider would send (for tests, tools and documentation).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    sign_all([secret], timestamp, body)
}

/// The header of an outbound delivery: one `v1=` per secret (the new and
/// the replaced one during a rotation's grace period).
pub fn sign_all<'a>(secrets: impl IntoIterator<Item = &'a str>, timestamp: i64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        let sig = mac(secret, timestamp, body).finalize().into_bytes();
        header.push_str(",v1=");
        header.push_str(&hex::encode(sig));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_its_body_time_and_secret() {
        let body = br#"{"id":"evt_1"}"#;
        let header = parse(&sign("whsec_a", 1_700_000_000, body)).unwrap();
        assert!(verify(&header, body, ["whsec_a"]));
        assert!(verify(&header, body, ["whsec_old", "whsec_a"]));
        assert!(!verify(&header, br#"{"id":"evt_2"}"#, ["whsec_a"]));
        assert!(!verify(&header, body, ["whsec_b"]));
        let moved = Header {
            timestamp: header.timestamp + 1,
            ..header
        };
        assert!(!verify(&moved, body, ["whsec_a"]));
    }

    #[test]
    fn headers_parse_strictly_and_take_several_signatures() {
        let h = parse("t=12, v1=00ff, v1=0a, v0=zz").unwrap();
        assert_eq!(h.timestamp, 12);
        assert_eq!(h.signatures, vec![vec![0, 255], vec![10]]);
        for bad in [
            "",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "t=1,v1=zz",
            "t=1,t=2,v1=00",
            "garbage",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
