//! kv_server 0.2.0: as 0.1.0, with a new data layout and more commands.
//!
//! Data layout: each key maps to an [`Entry`]: a typed [`Value`] (`Int` for the canonical
//! decimal form of an i64, so INCR no longer parses and prints text; `Bytes` otherwise) and a
//! write counter (`writes`, how many times the key was written). New commands: INCRBY, DECR,
//! DECRBY, APPEND, STRLEN, DBSIZE.
//!
//! Migrations: the upgrade from 0.1.0 runs *this* code_change with 0.1.0's state (values as
//! bytes): integer-looking values become `Int`, every entry starts at `writes = 1`. The
//! downgrade to 0.1.0 is 0.1.0's code_change.
//!
//! The downgrade from 0.3.0 (whose data is in a node table) runs *this* code_change with
//! 0.3.0's state: it keeps the table's id (code_change has no process context, so it cannot
//! read the table), and the first callback after the resume reads every row into the map
//! (typed as from 0.1.0, `writes = 1`) and deletes the table, before handling anything.

use relup_example_kv_common::front::{Front, Store};
use relup_example_kv_common::session::After;
use relup_example_kv_common::{Args, Call, Status, admin, as_int, resp};
use relup_module::{Context, Direction, Info, LogLevel, OldState, Server, TableId};
use serde::{Deserialize, Serialize};
use serde_bytes::{ByteBuf, Bytes};
use std::collections::HashMap;

/// The module (and release) version of this file.
pub const VERSION: &str = "0.2.0";

/// A stored value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// An integer (stored when the value is the canonical decimal text of one).
    Int(i64),
    /// Anything else.
    Bytes(ByteBuf),
}

impl Value {
    /// The value for bytes a client sent.
    fn from_bytes(bytes: &[u8]) -> Value {
        match as_int(bytes) {
            Some(n) => Value::Int(n),
            None => Value::Bytes(ByteBuf::from(bytes)),
        }
    }

    /// The bytes a client reads.
    fn to_bytes(&self) -> Vec<u8> {
        match self {
            Value::Int(n) => n.to_string().into_bytes(),
            Value::Bytes(bytes) => bytes.to_vec(),
        }
    }
}

/// One key's value and how many times it was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The value.
    value: Value,
    /// Writes to this key (1 after the first SET; 1 for every key migrated from 0.1.0).
    writes: u64,
}

/// The keys and their entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data {
    /// Key bytes to entries.
    map: HashMap<ByteBuf, Entry>,
}

/// The process state of kv_server 0.2.0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvServer {
    /// Listener, connections, their partial input (the same in every version).
    front: Front,
    /// The data.
    data: Data,
    /// A node table whose rows this state takes over at its next callback (left by a
    /// downgrade from 0.3.0).
    #[serde(default)]
    table: Option<TableId>,
}

/// kv_server 0.3.0's state, for the downgrade from 0.3.0.
#[derive(Serialize, Deserialize)]
struct StateV030 {
    front: Front,
    table: Option<TableId>,
    /// Rows 0.3.0 had not put into its table yet.
    #[serde(default)]
    pending: Vec<(ByteBuf, ByteBuf)>,
}

/// kv_server 0.1.0's state, for the upgrade from 0.1.0.
#[derive(Serialize, Deserialize)]
struct StateV010 {
    front: Front,
    data: DataV010,
}

/// 0.1.0's data: value bytes.
#[derive(Serialize, Deserialize)]
struct DataV010 {
    map: HashMap<ByteBuf, ByteBuf>,
}

impl Data {
    fn from_v010(old: DataV010) -> Data {
        let map = old
            .map
            .into_iter()
            .map(|(key, value)| {
                let entry = Entry {
                    value: Value::from_bytes(&value),
                    writes: 1,
                };
                (key, entry)
            })
            .collect();
        Data { map }
    }

    /// Writes `value` to `key`, counting the write.
    fn put(&mut self, key: &[u8], value: Value) {
        match self.map.get_mut(Bytes::new(key)) {
            Some(entry) => {
                entry.value = value;
                entry.writes += 1;
            }
            None => {
                self.map
                    .insert(ByteBuf::from(key), Entry { value, writes: 1 });
            }
        }
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
        self.put(args[1], Value::from_bytes(args[2]));
        resp::simple(out, "OK");
    }

    /// INCRBY and friends: adds `by` to the integer at `key` (0 when missing).
    fn add(&mut self, key: &[u8], by: Option<i64>, out: &mut Vec<u8>) {
        let Some(by) = by else {
            return resp::error(out, "ERR value is not an integer or out of range");
        };
        let current = match self.map.get(Bytes::new(key)).map(|e| &e.value) {
            None => 0,
            Some(Value::Int(n)) => *n,
            Some(Value::Bytes(_)) => {
                return resp::error(out, "ERR value is not an integer or out of range");
            }
        };
        let Some(next) = current.checked_add(by) else {
            return resp::error(out, "ERR increment or decrement would overflow");
        };
        self.put(key, Value::Int(next));
        resp::int(out, next);
    }

    fn append(&mut self, key: &[u8], tail: &[u8], out: &mut Vec<u8>) {
        let mut bytes = self
            .map
            .get(Bytes::new(key))
            .map(|e| e.value.to_bytes())
            .unwrap_or_default();
        bytes.extend_from_slice(tail);
        let len = bytes.len();
        self.put(key, Value::from_bytes(&bytes));
        resp::int(out, len as i64);
    }
}

impl Store for Data {
    fn exec(&mut self, name: &[u8], args: &[&[u8]], out: &mut Vec<u8>) -> Option<After> {
        let n = args.len();
        let negated = |by: &[u8]| as_int(by).and_then(i64::checked_neg);
        match name {
            b"GET" if n == 2 => match self.map.get(Bytes::new(args[1])) {
                Some(entry) => match &entry.value {
                    Value::Bytes(bytes) => resp::bulk(out, bytes),
                    Value::Int(i) => resp::bulk(out, i.to_string().as_bytes()),
                },
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
            b"INCR" if n == 2 => self.add(args[1], Some(1), out),
            b"DECR" if n == 2 => self.add(args[1], Some(-1), out),
            b"INCRBY" if n == 3 => self.add(args[1], as_int(args[2]), out),
            b"DECRBY" if n == 3 => self.add(args[1], negated(args[2]), out),
            b"APPEND" if n == 3 => self.append(args[1], args[2], out),
            b"STRLEN" if n == 2 => {
                let len = self
                    .map
                    .get(Bytes::new(args[1]))
                    .map_or(0, |e| e.value.to_bytes().len());
                resp::int(out, len as i64);
            }
            b"DBSIZE" if n == 1 => resp::int(out, self.map.len() as i64),
            b"FLUSHDB" | b"FLUSHALL" => {
                self.map.clear();
                resp::simple(out, "OK");
            }
            b"GET" | b"SET" | b"DEL" | b"EXISTS" | b"INCR" | b"DECR" | b"INCRBY" | b"DECRBY"
            | b"APPEND" | b"STRLEN" | b"DBSIZE" => admin::arity(out, args),
            _ => return None,
        }
        Some(After::Continue)
    }

    fn keys(&self) -> usize {
        self.map.len()
    }
}

impl KvServer {
    /// Reads the rows of the table a downgrade from 0.3.0 left into the map, then deletes
    /// the table. Does work only once after such a downgrade.
    fn take_table(&mut self, ctx: &Context<'_>) {
        let Some(table) = self.table.take() else {
            return;
        };
        let mut rows = ctx.table_rows(table, b"");
        let mut count = 0;
        for (key, value) in rows.by_ref() {
            self.data.put(&key, Value::from_bytes(&value));
            count += 1;
        }
        if let Some(e) = rows.error() {
            ctx.log(LogLevel::Error, &format!("reading table {table}: {e}"));
        }
        if let Err(e) = ctx.table_delete(table) {
            ctx.log(LogLevel::Warn, &format!("deleting table {table}: {e}"));
        }
        ctx.log(
            LogLevel::Info,
            &format!("kv_server {VERSION}: {count} keys moved out of table {table}"),
        );
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
            table: None,
        })
    }

    fn handle_call(&mut self, request: Call, ctx: &mut Context<'_>) -> Status {
        self.take_table(ctx);
        match request {
            Call::Status => self.front.status(VERSION, self.data.keys()),
        }
    }

    fn handle_info(&mut self, info: Info<()>, ctx: &mut Context<'_>) {
        self.take_table(ctx);
        self.front.handle_info(&mut self.data, info, ctx, VERSION);
    }

    fn code_change(old: OldState<'_>) -> Result<Self, String> {
        let bad = |e: relup_module::codec::CodecError| {
            format!("kv_server {VERSION}: bad state from {}: {e}", old.from_vsn)
        };
        match (old.direction, old.from_vsn) {
            (Direction::Up, "0.1.0") => {
                let state = old.decode::<StateV010>().map_err(bad)?;
                Ok(KvServer {
                    front: state.front,
                    data: Data::from_v010(state.data),
                    table: None,
                })
            }
            (Direction::Down, "0.3.0" | "0.3.1") => {
                let state = old.decode::<StateV030>().map_err(bad)?;
                let mut data = Data::default();
                for (key, value) in state.pending {
                    data.put(&key, Value::from_bytes(&value));
                }
                Ok(KvServer {
                    front: state.front,
                    data,
                    table: state.table,
                })
            }
            (_, VERSION) => old.decode::<KvServer>().map_err(bad),
            (direction, other) => Err(format!(
                "kv_server {VERSION} cannot take the state of {other} ({direction:?}); it \
                 migrates up from 0.1.0"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relup_module::codec;

    fn run(data: &mut Data, line: &[&[u8]]) -> String {
        let mut out = Vec::new();
        let name = admin::name(line);
        let handled = data.exec(&name, line, &mut out);
        assert!(handled.is_some(), "{line:?} not handled");
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn commands_and_write_counters() {
        let mut data = Data::default();
        assert_eq!(run(&mut data, &[b"SET", b"n", b"10"]), "+OK\r\n");
        assert_eq!(data.map[Bytes::new(b"n")].value, Value::Int(10));
        assert_eq!(run(&mut data, &[b"INCRBY", b"n", b"5"]), ":15\r\n");
        assert_eq!(run(&mut data, &[b"DECRBY", b"n", b"20"]), ":-5\r\n");
        assert_eq!(run(&mut data, &[b"DECR", b"n"]), ":-6\r\n");
        assert_eq!(run(&mut data, &[b"GET", b"n"]), "$2\r\n-6\r\n");
        assert_eq!(data.map[Bytes::new(b"n")].writes, 4);
        assert_eq!(run(&mut data, &[b"SET", b"s", b"007"]), "+OK\r\n");
        assert_eq!(run(&mut data, &[b"GET", b"s"]), "$3\r\n007\r\n");
        assert!(run(&mut data, &[b"INCR", b"s"]).starts_with("-ERR value is not an integer"));
        assert_eq!(run(&mut data, &[b"APPEND", b"s", b"x"]), ":4\r\n");
        assert_eq!(run(&mut data, &[b"APPEND", b"m", b"12"]), ":2\r\n");
        assert_eq!(run(&mut data, &[b"INCR", b"m"]), ":13\r\n");
        assert_eq!(run(&mut data, &[b"STRLEN", b"s"]), ":4\r\n");
        assert_eq!(run(&mut data, &[b"DBSIZE"]), ":3\r\n");
        assert!(
            run(&mut data, &[b"INCRBY", b"n", b"x"]).starts_with("-ERR value is not an integer")
        );
        assert!(
            run(&mut data, &[b"INCRBY", b"m", b"9223372036854775807"])
                .starts_with("-ERR increment")
        );
    }

    #[test]
    fn upgrade_from_010_types_the_values() {
        let mut map = HashMap::new();
        map.insert(ByteBuf::from(&b"count"[..]), ByteBuf::from(&b"41"[..]));
        map.insert(ByteBuf::from(&b"text"[..]), ByteBuf::from(&b"0x1"[..]));
        let front = Front {
            addr: "127.0.0.1:1".into(),
            commands: 5,
            ..Front::default()
        };
        let bytes = codec::encode(&StateV010 {
            front: front.clone(),
            data: DataV010 { map },
        })
        .unwrap();
        let extra = codec::encode(&()).unwrap();
        let state = KvServer::code_change(OldState {
            from_vsn: "0.1.0",
            direction: Direction::Up,
            bytes: &bytes,
            extra: &extra,
        })
        .unwrap();
        assert_eq!(state.front, front);
        let mut data = state.data;
        assert_eq!(
            data.map[Bytes::new(b"count")],
            Entry {
                value: Value::Int(41),
                writes: 1
            }
        );
        assert_eq!(run(&mut data, &[b"GET", b"text"]), "$3\r\n0x1\r\n");
        assert_eq!(run(&mut data, &[b"INCR", b"count"]), ":42\r\n");
        assert!(
            KvServer::code_change(OldState {
                from_vsn: "0.1.0",
                direction: Direction::Down,
                bytes: &bytes,
                extra: &extra,
            })
            .is_err()
        );
    }
}
