//! kv_server 0.1.0: a Redis-protocol key-value server. One process owns the listener, every
//! client connection (through the node's ports) and the data, as Redis does.
//!
//! Data layout: `data` maps key bytes to value bytes. Commands: GET, SET [NX|XX], DEL, EXISTS,
//! INCR, FLUSHDB/FLUSHALL, plus the shared ones (PING, ECHO, CONFIG GET, INFO, QUIT, ...).
//!
//! Migrations: the downgrade from 0.2.0 runs *this* code_change with 0.2.0's state, whose
//! values are typed (`Int` or `Bytes`) and carry a write counter: integers go back to their
//! decimal text, the counters are dropped. The upgrade to 0.2.0 is 0.2.0's code_change.

use relup_example_kv_common::front::{Front, Store};
use relup_example_kv_common::session::After;
use relup_example_kv_common::{Args, Call, Status, admin, as_int, resp};
use relup_module::{Context, Direction, Info, OldState, Server};
use serde::{Deserialize, Serialize};
use serde_bytes::{ByteBuf, Bytes};
use std::collections::HashMap;

/// The module (and release) version of this file.
pub const VERSION: &str = "0.1.0";

/// The keys and their values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data {
    /// Key bytes to value bytes.
    map: HashMap<ByteBuf, ByteBuf>,
}

/// The process state of kv_server 0.1.0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvServer {
    /// Listener, connections, their partial input (the same in every version).
    front: Front,
    /// The data.
    data: Data,
}

/// kv_server 0.2.0's state, as far as the downgrade needs it.
#[derive(Serialize, Deserialize)]
struct StateV020 {
    front: Front,
    data: DataV020,
}

/// 0.2.0's data: typed values with a write counter.
#[derive(Serialize, Deserialize)]
struct DataV020 {
    map: HashMap<ByteBuf, EntryV020>,
}

/// 0.2.0's entry.
#[derive(Serialize, Deserialize)]
struct EntryV020 {
    value: ValueV020,
    writes: u64,
}

/// 0.2.0's value.
#[derive(Serialize, Deserialize)]
enum ValueV020 {
    Int(i64),
    Bytes(ByteBuf),
}

impl Data {
    fn from_v020(old: DataV020) -> Data {
        let map = old
            .map
            .into_iter()
            .map(|(key, entry)| {
                let value = match entry.value {
                    ValueV020::Int(n) => ByteBuf::from(n.to_string().into_bytes()),
                    ValueV020::Bytes(bytes) => bytes,
                };
                (key, value)
            })
            .collect();
        Data { map }
    }

    fn set(&mut self, args: &[&[u8]], out: &mut Vec<u8>) {
        let (mut nx, mut xx) = (false, false);
        for option in &args[3..] {
            match option.to_ascii_uppercase().as_slice() {
                b"NX" => nx = true,
                b"XX" => xx = true,
                _ => return resp::error(out, "ERR syntax error (this server keeps no expiry)"),
            }
        }
        if nx && xx {
            return resp::error(out, "ERR syntax error");
        }
        let exists = self.map.contains_key(Bytes::new(args[1]));
        if (nx && exists) || (xx && !exists) {
            return resp::nil(out);
        }
        self.map
            .insert(ByteBuf::from(args[1]), ByteBuf::from(args[2]));
        resp::simple(out, "OK");
    }

    fn incr(&mut self, key: &[u8], out: &mut Vec<u8>) {
        let current = match self.map.get(Bytes::new(key)) {
            None => 0,
            Some(value) => match as_int(value) {
                Some(n) => n,
                None => return resp::error(out, "ERR value is not an integer or out of range"),
            },
        };
        let Some(next) = current.checked_add(1) else {
            return resp::error(out, "ERR increment or decrement would overflow");
        };
        self.map.insert(
            ByteBuf::from(key),
            ByteBuf::from(next.to_string().into_bytes()),
        );
        resp::int(out, next);
    }
}

impl Store for Data {
    fn exec(&mut self, name: &[u8], args: &[&[u8]], out: &mut Vec<u8>) -> Option<After> {
        let n = args.len();
        match name {
            b"GET" if n == 2 => match self.map.get(Bytes::new(args[1])) {
                Some(value) => resp::bulk(out, value),
                None => resp::nil(out),
            },
            b"SET" if n >= 3 => self.set(args, out),
            b"DEL" if n >= 2 => {
                let removed = args[1..]
                    .iter()
                    .filter(|k| self.map.remove(Bytes::new(k)).is_some())
                    .count();
                resp::int(out, removed as i64);
            }
            b"EXISTS" if n >= 2 => {
                let found = args[1..]
                    .iter()
                    .filter(|k| self.map.contains_key(Bytes::new(k)))
                    .count();
                resp::int(out, found as i64);
            }
            b"INCR" if n == 2 => self.incr(args[1], out),
            b"FLUSHDB" | b"FLUSHALL" => {
                self.map.clear();
                resp::simple(out, "OK");
            }
            b"GET" | b"SET" | b"DEL" | b"EXISTS" | b"INCR" => admin::arity(out, args),
            _ => return None,
        }
        Some(After::Continue)
    }

    fn keys(&self) -> usize {
        self.map.len()
    }
}

impl Server for KvServer {
    type Args = Args;
    type Call = Call;
    type Reply = Status;
    type Cast = ();
    type Info = ();

    fn init(_args: Args, ctx: &mut Context<'_>) -> Result<Self, String> {
        let name = relup_example_kv_common::REGISTERED_NAME;
        if !ctx.register(name) {
            return Err(format!("the name {name} is taken"));
        }
        Ok(KvServer {
            front: Front::open(ctx, VERSION)?,
            data: Data::default(),
        })
    }

    fn handle_call(&mut self, request: Call, _ctx: &mut Context<'_>) -> Status {
        match request {
            Call::Status => self.front.status(VERSION, self.data.keys()),
        }
    }

    fn handle_info(&mut self, info: Info<()>, ctx: &mut Context<'_>) {
        self.front.handle_info(&mut self.data, info, ctx, VERSION);
    }

    fn code_change(old: OldState<'_>) -> Result<Self, String> {
        let bad = |e: relup_module::codec::CodecError| {
            format!("kv_server {VERSION}: bad state from {}: {e}", old.from_vsn)
        };
        match (old.direction, old.from_vsn) {
            (Direction::Down, "0.2.0") => {
                let state = old.decode::<StateV020>().map_err(bad)?;
                Ok(KvServer {
                    front: state.front,
                    data: Data::from_v020(state.data),
                })
            }
            (_, VERSION) => old.decode::<KvServer>().map_err(bad),
            (direction, other) => Err(format!(
                "kv_server {VERSION} cannot take the state of {other} ({direction:?}); it \
                 migrates down from 0.2.0"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relup_module::codec;
    use std::collections::BTreeMap;

    fn run(data: &mut Data, line: &[&[u8]]) -> String {
        let mut out = Vec::new();
        let name = admin::name(line);
        let handled = data.exec(&name, line, &mut out);
        assert!(handled.is_some(), "{line:?} not handled");
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn commands() {
        let mut data = Data::default();
        assert_eq!(run(&mut data, &[b"GET", b"k"]), "$-1\r\n");
        assert_eq!(run(&mut data, &[b"set", b"k", b"v"]), "+OK\r\n");
        assert_eq!(run(&mut data, &[b"SET", b"k", b"w", b"NX"]), "$-1\r\n");
        assert_eq!(run(&mut data, &[b"GET", b"k"]), "$1\r\nv\r\n");
        assert_eq!(run(&mut data, &[b"INCR", b"n"]), ":1\r\n");
        assert_eq!(run(&mut data, &[b"INCR", b"n"]), ":2\r\n");
        assert!(run(&mut data, &[b"INCR", b"k"]).starts_with("-ERR value is not an integer"));
        assert_eq!(run(&mut data, &[b"EXISTS", b"k", b"n", b"x"]), ":2\r\n");
        assert_eq!(run(&mut data, &[b"DEL", b"k", b"x"]), ":1\r\n");
        assert!(run(&mut data, &[b"GET"]).starts_with("-ERR wrong number"));
        let mut out = Vec::new();
        assert_eq!(
            data.exec(b"INCRBY", &[b"INCRBY", b"n", b"2"], &mut out),
            None
        );
    }

    #[test]
    fn downgrade_from_020_turns_typed_values_back_into_text() {
        let mut map = HashMap::new();
        map.insert(
            ByteBuf::from(&b"counter"[..]),
            EntryV020 {
                value: ValueV020::Int(-42),
                writes: 7,
            },
        );
        map.insert(
            ByteBuf::from(&b"key"[..]),
            EntryV020 {
                value: ValueV020::Bytes(ByteBuf::from(&b"xxx"[..])),
                writes: 1,
            },
        );
        let mut sessions = BTreeMap::new();
        sessions.insert(9, Default::default());
        let front = Front {
            listener: Some(relup_module::PortId(3)),
            addr: "127.0.0.1:6380".into(),
            sessions,
            commands: 99,
        };
        let bytes = codec::encode(&StateV020 {
            front: front.clone(),
            data: DataV020 { map },
        })
        .unwrap();
        let extra = codec::encode(&()).unwrap();
        let state = KvServer::code_change(OldState {
            from_vsn: "0.2.0",
            direction: Direction::Down,
            bytes: &bytes,
            extra: &extra,
        })
        .unwrap();
        assert_eq!(state.front, front);
        let mut data = state.data;
        assert_eq!(run(&mut data, &[b"GET", b"counter"]), "$3\r\n-42\r\n");
        assert_eq!(run(&mut data, &[b"GET", b"key"]), "$3\r\nxxx\r\n");
        assert_eq!(run(&mut data, &[b"INCR", b"counter"]), ":-41\r\n");
        let err = KvServer::code_change(OldState {
            from_vsn: "0.3.0",
            direction: Direction::Down,
            bytes: &bytes,
            extra: &extra,
        })
        .unwrap_err();
        assert!(err.contains("down from 0.2.0"), "{err}");
        assert!(
            KvServer::code_change(OldState {
                from_vsn: "0.2.0",
                direction: Direction::Down,
                bytes: &[0xc1],
                extra: &extra,
            })
            .is_err()
        );
    }
}
