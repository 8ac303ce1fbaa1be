//! `metadata` on any object: the caller's own string key–value pairs, with
//! Stripe's bounds. Nested objects, arrays and non-string values are refused
//! by the type (422 naming the key, e.g. `metadata.tier`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::ValidationError;

/// Up to 50 string values, keys of 1–40 characters, values of at most 500.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(example = json!({"order_id": "A-1001"}))]
pub struct Metadata(pub BTreeMap<String, String>);

/// A key sent twice is refused (422), like a repeated top-level field,
/// rather than the last one silently winning.
impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = Metadata;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format_args!("duplicate key {k:?}")));
                    }
                    out.insert(k, v);
                }
                Ok(Metadata(out))
            }
        }
        d.deserialize_map(Keys)
    }
}

pub const MAX_KEYS: usize = 50;
pub const MAX_KEY_CHARS: usize = 40;
pub const MAX_VALUE_CHARS: usize = 500;

/// For `#[validate(custom(function = "crate::metadata::bounded"))]`.
pub fn bounded(m: &Metadata) -> Result<(), ValidationError> {
    let fail = |msg: String| Err(ValidationError::new("metadata").with_message(msg.into()));
    if m.0.len() > MAX_KEYS {
        return fail(format!("at most {MAX_KEYS} keys (got {})", m.0.len()));
    }
    for (k, v) in &m.0 {
        let chars = k.chars().count();
        if chars == 0 || chars > MAX_KEY_CHARS {
            return fail(format!("key {k:?} must be 1 to {MAX_KEY_CHARS} characters"));
        }
        if v.chars().count() > MAX_VALUE_CHARS {
            return fail(format!(
                "value of {k:?} must be at most {MAX_VALUE_CHARS} characters"
            ));
        }
    }
    Ok(())
}

/// Stored metadata read back from `jsonb` (only [`Metadata`] is ever
/// written, so anything else is a data error, never silently dropped).
pub fn from_json(v: serde_json::Value) -> Result<Metadata, sqlx::Error> {
    serde_json::from_value(v).map_err(|e| sqlx::Error::Decode(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let m = |pairs: &[(&str, &str)]| {
            Metadata(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert!(bounded(&m(&[("tier", "gold")])).is_ok());
        assert!(bounded(&m(&[(&"k".repeat(40), &"v".repeat(500))])).is_ok());
        assert!(bounded(&m(&[("", "v")])).is_err());
        assert!(bounded(&m(&[(&"k".repeat(41), "v")])).is_err());
        let long = bounded(&m(&[("note", &"v".repeat(501))])).unwrap_err();
        assert!(long.message.unwrap().contains("\"note\""), "the key is named");
        let many = Metadata((0..51).map(|i| (format!("k{i}"), String::new())).collect());
        assert!(bounded(&many).is_err());
        assert!(bounded(&Metadata(many.0.into_iter().take(50).collect())).is_ok());
    }
}
