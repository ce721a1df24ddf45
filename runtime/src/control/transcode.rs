//! JSON to and from the module codec (MessagePack with named fields), for the remote console
//! (`relup state`, `relup call`, `relup cast`).
//!
//! JSON to MessagePack goes through serde (a `serde_json::Value` is serialized by the module
//! codec), so a request reads as serde writes Rust values in JSON: a unit variant as
//! `"Get"`, a newtype variant as `{"Add": 5}`, a struct variant as `{"V": {"field": 1}}`, a
//! tuple as an array, `()` and `None` as `null`.
//!
//! MessagePack to JSON is a visitor of its own rather than `serde_json::Value`'s: that one
//! refuses byte strings and maps whose keys are not strings, both of which a state may hold
//! (a `HashMap<u64, _>`, a `serde_bytes` field). Bytes become an array of numbers (what a
//! `Vec<u8>` decodes from), a non-string key its JSON text (`1` → `"1"`), a float that JSON
//! cannot hold (NaN, infinity) `null`.

use serde::de::{self, Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Encodes a JSON value with the module codec.
pub fn json_to_module(value: &Value) -> Result<Vec<u8>, String> {
    relup_module::codec::encode(value).map_err(|e| e.0)
}

/// Decodes bytes of the module codec into JSON (at most [`relup_module::codec::MAX_DEPTH`]
/// levels deep).
pub fn module_to_json(bytes: &[u8]) -> Result<Value, String> {
    let mut decoder = rmp_serde::Deserializer::from_read_ref(bytes);
    decoder.set_max_depth(relup_module::codec::MAX_DEPTH);
    decoder.deserialize_any(JsonVisitor).map_err(|e| {
        format!(
            "cannot read {} bytes of MessagePack as JSON: {e}",
            bytes.len()
        )
    })
}

/// A JSON value decoded by [`JsonVisitor`] (for nested values and map keys).
struct Json(Value);

impl<'de> de::Deserialize<'de> for Json {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor).map(Json)
    }
}

/// Builds a [`Value`] from any self-describing input.
struct JsonVisitor;

fn float(value: f64) -> Value {
    Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// Bytes as an array of numbers (what a `Vec<u8>` decodes from).
fn bytes(v: &[u8]) -> Value {
    Value::Array(v.iter().map(|b| Value::Number((*b).into())).collect())
}

/// The text a map key becomes: a string as it is, anything else as its JSON text.
fn key_text(key: Value) -> String {
    match key {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any MessagePack value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f32<E>(self, v: f32) -> Result<Value, E> {
        Ok(float(f64::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(bytes(v))
    }

    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(bytes(&v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(JsonVisitor)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(JsonVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // The size hint comes from the input: it bounds nothing, so it reserves nothing.
        let mut items = Vec::new();
        while let Some(Json(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some((Json(key), Json(value))) = map.next_entry()? {
            object.insert(key_text(key), value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::{json_to_module, module_to_json};
    use serde::{Deserialize, Serialize};
    use serde_json::json;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Call {
        Get,
        Add(i64),
        Move { x: i32, y: i32 },
        Pair(u8, String),
    }

    #[test]
    fn json_requests_decode_as_serde_writes_them() {
        let decode = |v: serde_json::Value| {
            relup_module::codec::decode::<Call>(&json_to_module(&v).unwrap())
        };
        assert_eq!(decode(json!("Get")).unwrap(), Call::Get);
        assert_eq!(decode(json!({"Add": -5})).unwrap(), Call::Add(-5));
        assert_eq!(
            decode(json!({"Move": {"x": 1, "y": 2}})).unwrap(),
            Call::Move { x: 1, y: 2 }
        );
        assert_eq!(
            decode(json!({"Pair": [3, "x"]})).unwrap(),
            Call::Pair(3, "x".into())
        );
        let error = decode(json!({"Nope": 1})).unwrap_err().0;
        assert!(error.contains("unknown variant"), "{error}");
    }

    #[test]
    fn states_become_json_whatever_their_keys_and_bytes() {
        #[derive(Serialize)]
        struct State {
            count: i64,
            by_id: BTreeMap<u64, String>,
            #[serde(with = "serde_bytes_like")]
            raw: Vec<u8>,
            ratio: f64,
            none: Option<u8>,
            call: Call,
        }
        mod serde_bytes_like {
            pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(v)
            }
        }
        let state = State {
            count: 7,
            by_id: BTreeMap::from([(1, "one".to_string())]),
            raw: vec![1, 2],
            ratio: f64::NAN,
            none: None,
            call: Call::Add(2),
        };
        let bytes = relup_module::codec::encode(&state).unwrap();
        assert_eq!(
            module_to_json(&bytes).unwrap(),
            json!({"count": 7, "by_id": {"1": "one"}, "raw": [1, 2], "ratio": null,
                   "none": null, "call": {"Add": 2}})
        );
    }

    #[test]
    fn garbage_and_deep_nesting_are_errors() {
        assert!(module_to_json(&[0xc1]).is_err());
        let deep = vec![0x91u8; 10_000];
        assert!(module_to_json(&deep).is_err());
    }
}
