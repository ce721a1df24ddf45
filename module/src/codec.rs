//! The one codec for messages, replies, args and migrated state: MessagePack with named fields.
//!
//! Named fields make state self-describing, so adding a field with `#[serde(default)]` to a
//! state struct migrates from the old version's bytes with no hand-written `code_change`, and a
//! removed field is ignored.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An encoding or decoding error, as text (it crosses the ABI as text anyway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

/// Encodes a value.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    rmp_serde::to_vec_named(value).map_err(|e| CodecError(format!("encode failed: {e}")))
}

/// Encodes a value into an existing buffer (appending).
pub fn encode_into<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result<(), CodecError> {
    rmp_serde::encode::write_named(buf, value)
        .map_err(|e| CodecError(format!("encode failed: {e}")))
}

/// Deepest nesting of maps and arrays a decoded value may have: far more than any state or
/// message needs, and shallow enough for a 2 MiB thread stack (a scheduler thread's). The
/// decoder's own default, 1024, lets a hostile buffer overflow such a stack in a debug
/// build, which aborts the whole node.
pub const MAX_DEPTH: usize = 128;

/// Decodes a value (at most [`MAX_DEPTH`] levels deep).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let mut decoder = rmp_serde::Deserializer::from_read_ref(bytes);
    decoder.set_max_depth(MAX_DEPTH);
    T::deserialize(&mut decoder).map_err(|e| {
        CodecError(format!(
            "cannot decode {} from {} bytes: {e}",
            std::any::type_name::<T>(),
            bytes.len()
        ))
    })
}

/// The encoding of an empty map: what `init` receives when `release.toml` gives a child no
/// `args` (or `args = {}`).
const EMPTY_MAP: u8 = 0x80;

/// Decodes `init` args: as [`decode`], except that no args (an empty map) also decode as a
/// unit-like type (`()`, or an `Option` that is then `None`), so that `type Args = ()`
/// servers start with no `args` in `release.toml`.
pub fn decode_args<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match decode(bytes) {
        Err(e) if bytes == [EMPTY_MAP] => {
            decode(&encode(&()).map_err(|_| e.clone())?).map_err(|_| e)
        }
        other => other,
    }
}

#[cfg(test)]
mod args_tests {
    use super::{decode_args, encode};
    use std::collections::BTreeMap;

    #[test]
    fn no_args_start_a_unit_args_server() {
        let none = encode(&BTreeMap::<String, u8>::new()).unwrap();
        decode_args::<()>(&none).unwrap();
        assert_eq!(decode_args::<Option<u8>>(&none).unwrap(), None);
        // A struct with defaults still decodes from the empty map as before.
        #[derive(serde::Deserialize, Default, PartialEq, Debug)]
        struct Args {
            #[serde(default)]
            start: i64,
        }
        assert_eq!(decode_args::<Args>(&none).unwrap(), Args::default());
        // Real args for a unit server are still refused, with the decoder's message.
        let some = encode(&BTreeMap::from([("start".to_string(), 1u8)])).unwrap();
        let err = decode_args::<()>(&some).unwrap_err().to_string();
        assert!(err.contains("cannot decode ()"), "{err}");
    }
}
