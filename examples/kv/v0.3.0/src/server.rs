//! kv_server 0.3.0 (and 0.3.1, built from this source): 0.2.0's commands, the data in a node
//! table.
//!
//! Data layout: a node table named `kv` (see `relup_module::Context::table_open`), owned by
//! the kv process: key bytes to value bytes, as a client wrote them (integers are the decimal
//! text INCR reads and writes, through `table_update_counter`). The process state holds only
//! the network side ([`Front`]) and the table's id, so an upgrade or downgrade between table
//! versions (0.3.0 <-> 0.3.1) exports and decodes a few hundred bytes whatever the number of
//! keys: no migration reads the table. 0.2.0's per-key write counters are not kept (no
//! command shows them; a downgrade starts every key at 1, as the upgrade from 0.1.0 does).
//!
//! Migrations: the upgrade from 0.2.0 runs *this* code_change with 0.2.0's state: it takes
//! the map out of the state into `pending`, and the first callback after the resume (which
//! has a process context; code_change has none) puts those rows into the table before it
//! handles anything. The downgrade to 0.2.0 is 0.2.0's code_change: it keeps the table's id,
//! and 0.2.0's first callback reads the rows back and deletes the table.

use relup_example_kv_common::front::{Front, Store};
use relup_example_kv_common::session::After;
use relup_example_kv_common::{Args, Call, Status, admin, as_int, resp};
use relup_module::{
    Context, Direction, Info, LogLevel, OldState, Server, TableError, TableId, TableOptions,
};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::collections::HashMap;

/// The module (and release) version of this build: 0.3.0 or 0.3.1.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The name of the node table holding the data.
pub const TABLE: &str = "kv";

/// The process state of kv_server 0.3.x.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvServer {
    /// Listener, connections, their partial input (the same in every version).
    front: Front,
    /// The node table with the data; None only between an upgrade from 0.2.0 and the first
    /// callback after it.
    table: Option<TableId>,
    /// Rows carried out of 0.2.0's state by the upgrade, not in the table yet.
    #[serde(default)]
    pending: Vec<(ByteBuf, ByteBuf)>,
}

/// kv_server 0.2.0's state, for the upgrade from 0.2.0.
#[derive(Serialize, Deserialize)]
struct StateV020 {
    front: Front,
    data: DataV020,
    /// A table 0.2.0 has not taken its rows from yet (it was downgraded from 0.3.0 and has
    /// handled no message since).
    #[serde(default)]
    table: Option<TableId>,
}

/// 0.2.0's data.
#[derive(Serialize, Deserialize)]
struct DataV020 {
    map: HashMap<ByteBuf, EntryV020>,
}

/// 0.2.0's entry: a typed value and a write counter.
#[derive(Serialize, Deserialize)]
struct EntryV020 {
    value: ValueV020,
    #[allow(dead_code)]
    writes: u64,
}

/// 0.2.0's value.
#[derive(Serialize, Deserialize)]
enum ValueV020 {
    Int(i64),
    Bytes(ByteBuf),
}

impl ValueV020 {
    fn into_bytes(self) -> ByteBuf {
        match self {
            ValueV020::Int(n) => ByteBuf::from(n.to_string().into_bytes()),
            ValueV020::Bytes(bytes) => bytes,
        }
    }
}

/// The data commands on the table.
struct Data<'s> {
    table: &'s mut TableId,
}

/// Answers a table error as a RESP error.
fn failed(out: &mut Vec<u8>, e: &TableError) {
    resp::error(out, &format!("ERR table: {e}"));
}

impl Data<'_> {
    fn set(&mut self, args: &[&[u8]], out: &mut Vec<u8>, ctx: &Context<'_>) {
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
        if nx || xx {
            let exists = match ctx.table_lookup(*self.table, args[1]) {
                Ok(value) => value.is_some(),
                Err(e) => return failed(out, &e),
            };
            if (nx && exists) || (xx && !exists) {
                return resp::nil(out);
            }
        }
        match ctx.table_insert(*self.table, args[1], args[2]) {
            Ok(()) => resp::simple(out, "OK"),
            Err(e) => failed(out, &e),
        }
    }

    /// INCRBY and friends: adds `by` to the integer at `key` (0 when missing).
    fn add(&mut self, key: &[u8], by: Option<i64>, out: &mut Vec<u8>, ctx: &Context<'_>) {
        let Some(by) = by else {
            return resp::error(out, "ERR value is not an integer or out of range");
        };
        // Redis takes only the canonical decimal form ("007" is not an integer); the node's
        // counter is laxer, so the value is checked first (this process is the only writer).
        match ctx.table_lookup(*self.table, key) {
            Ok(Some(value)) if as_int(&value).is_none() => {
                return resp::error(out, "ERR value is not an integer or out of range");
            }
            Ok(_) => {}
            Err(e) => return failed(out, &e),
        }
        match ctx.table_update_counter(*self.table, key, by, 0) {
            Ok(next) => resp::int(out, next),
            Err(TableError::Overflow) => {
                resp::error(out, "ERR increment or decrement would overflow")
            }
            Err(TableError::NotInteger) => {
                resp::error(out, "ERR value is not an integer or out of range")
            }
            Err(e) => failed(out, &e),
        }
    }

    fn append(&mut self, key: &[u8], tail: &[u8], out: &mut Vec<u8>, ctx: &Context<'_>) {
        let mut bytes = match ctx.table_lookup(*self.table, key) {
            Ok(value) => value.unwrap_or_default(),
            Err(e) => return failed(out, &e),
        };
        bytes.extend_from_slice(tail);
        match ctx.table_insert(*self.table, key, &bytes) {
            Ok(()) => resp::int(out, bytes.len() as i64),
            Err(e) => failed(out, &e),
        }
    }

    /// FLUSHDB: a new empty table under the same name (the old one is deleted).
    fn flush(&mut self, out: &mut Vec<u8>, ctx: &Context<'_>) {
        let fresh = ctx
            .table_delete(*self.table)
            .and_then(|()| ctx.table_open(TABLE, TableOptions::create()));
        match fresh {
            Ok(id) => {
                *self.table = id;
                resp::simple(out, "OK");
            }
            Err(e) => failed(out, &e),
        }
    }

    fn count(&self, keys: &[&[u8]], out: &mut Vec<u8>, ctx: &Context<'_>, remove: bool) {
        let mut n = 0;
        for key in keys {
            let hit = if remove {
                ctx.table_remove(*self.table, key)
            } else {
                ctx.table_lookup(*self.table, key).map(|v| v.is_some())
            };
            match hit {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(e) => return failed(out, &e),
            }
        }
        resp::int(out, n);
    }
}

impl Store for Data<'_> {
    fn exec(&mut self, _name: &[u8], _args: &[&[u8]], _out: &mut Vec<u8>) -> Option<After> {
        // Every data command needs the table: the front calls `exec_cx`.
        None
    }

    fn keys(&self) -> usize {
        0
    }

    fn exec_cx(
        &mut self,
        name: &[u8],
        args: &[&[u8]],
        out: &mut Vec<u8>,
        ctx: &Context<'_>,
    ) -> Option<After> {
        let n = args.len();
        let negated = |by: &[u8]| as_int(by).and_then(i64::checked_neg);
        match name {
            b"GET" if n == 2 => match ctx.table_lookup(*self.table, args[1]) {
                Ok(Some(value)) => resp::bulk(out, &value),
                Ok(None) => resp::nil(out),
                Err(e) => failed(out, &e),
            },
            b"SET" if n >= 3 => self.set(args, out, ctx),
            b"DEL" if n >= 2 => self.count(&args[1..], out, ctx, true),
            b"EXISTS" if n >= 2 => self.count(&args[1..], out, ctx, false),
            b"INCR" if n == 2 => self.add(args[1], Some(1), out, ctx),
            b"DECR" if n == 2 => self.add(args[1], Some(-1), out, ctx),
            b"INCRBY" if n == 3 => self.add(args[1], as_int(args[2]), out, ctx),
            b"DECRBY" if n == 3 => self.add(args[1], negated(args[2]), out, ctx),
            b"APPEND" if n == 3 => self.append(args[1], args[2], out, ctx),
            b"STRLEN" if n == 2 => match ctx.table_lookup(*self.table, args[1]) {
                Ok(value) => resp::int(out, value.map_or(0, |v| v.len()) as i64),
                Err(e) => failed(out, &e),
            },
            b"DBSIZE" if n == 1 => resp::int(out, self.keys_cx(ctx) as i64),
            b"FLUSHDB" | b"FLUSHALL" => self.flush(out, ctx),
            b"GET" | b"SET" | b"DEL" | b"EXISTS" | b"INCR" | b"DECR" | b"INCRBY" | b"DECRBY"
            | b"APPEND" | b"STRLEN" | b"DBSIZE" => admin::arity(out, args),
            _ => return None,
        }
        Some(After::Continue)
    }

    fn keys_cx(&self, ctx: &Context<'_>) -> usize {
        ctx.table_size(*self.table).map_or(0, |n| n as usize)
    }
}

impl KvServer {
    /// The table, created if this state has none yet, with the rows an upgrade carried put
    /// into it. Runs at the start of every callback; does work only once after an upgrade
    /// from 0.2.0.
    fn table(&mut self, ctx: &Context<'_>) -> Result<TableId, TableError> {
        let id = match self.table {
            Some(id) => id,
            None => {
                let id = ctx.table_open(TABLE, TableOptions::create())?;
                self.table = Some(id);
                id
            }
        };
        if !self.pending.is_empty() {
            let rows = std::mem::take(&mut self.pending);
            let count = rows.len();
            for (key, value) in rows {
                ctx.table_insert(id, &key, &value)?;
            }
            ctx.log(
                LogLevel::Info,
                &format!("kv_server {VERSION}: {count} keys moved into table {TABLE}"),
            );
        }
        Ok(id)
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
        // A restarted process after a crash finds no table: it died with its owner.
        let table = ctx
            .table_open(TABLE, TableOptions::create())
            .map_err(|e| format!("kv_server {VERSION}: {e}"))?;
        Ok(KvServer {
            front: Front::open(ctx, VERSION)?,
            table: Some(table),
            pending: Vec::new(),
        })
    }

    fn handle_call(&mut self, request: Call, ctx: &mut Context<'_>) -> Status {
        let keys = match self.table(ctx) {
            Ok(id) => ctx.table_size(id).map_or(0, |n| n as usize),
            Err(_) => 0,
        };
        match request {
            Call::Status => self.front.status(VERSION, keys),
        }
    }

    fn handle_info(&mut self, info: Info<()>, ctx: &mut Context<'_>) {
        let mut table = match self.table(ctx) {
            Ok(id) => id,
            Err(e) => {
                // Without its table the service cannot answer: crash, and let the
                // supervisor start it again (with a new, empty table, as after any crash).
                ctx.stop(relup_module::ExitReason::Error(format!(
                    "kv_server {VERSION}: table {TABLE}: {e}"
                )));
                return;
            }
        };
        let mut data = Data { table: &mut table };
        self.front.handle_info(&mut data, info, ctx, VERSION);
        self.table = Some(table);
    }

    fn code_change(old: OldState<'_>) -> Result<Self, String> {
        let bad = |e: relup_module::codec::CodecError| {
            format!("kv_server {VERSION}: bad state from {}: {e}", old.from_vsn)
        };
        match (old.direction, old.from_vsn) {
            (Direction::Up, "0.2.0") => {
                let state = old.decode::<StateV020>().map_err(bad)?;
                let pending = state
                    .data
                    .map
                    .into_iter()
                    .map(|(key, entry)| (key, entry.value.into_bytes()))
                    .collect();
                Ok(KvServer {
                    front: state.front,
                    table: state.table,
                    pending,
                })
            }
            (_, "0.3.0" | "0.3.1" | "0.3.2") => old.decode::<KvServer>().map_err(bad),
            (direction, other) => Err(format!(
                "kv_server {VERSION} cannot take the state of {other} ({direction:?}); it \
                 migrates up from 0.2.0 and between 0.3.x"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relup_module::codec;

    #[test]
    fn upgrade_from_020_carries_every_value_as_its_bytes() {
        #[derive(Serialize)]
        struct Entry {
            value: ValueV020,
            writes: u64,
        }
        #[derive(Serialize)]
        struct Data {
            map: HashMap<ByteBuf, Entry>,
        }
        #[derive(Serialize)]
        struct State {
            front: Front,
            data: Data,
        }
        let mut map = HashMap::new();
        let int = Entry {
            value: ValueV020::Int(-41),
            writes: 3,
        };
        let text = Entry {
            value: ValueV020::Bytes(ByteBuf::from(&b"0x1"[..])),
            writes: 1,
        };
        map.insert(ByteBuf::from(&b"count"[..]), int);
        map.insert(ByteBuf::from(&b"text"[..]), text);
        let bytes = codec::encode(&State {
            front: Front::default(),
            data: Data { map },
        })
        .unwrap();
        let extra = codec::encode(&()).unwrap();
        let state = KvServer::code_change(OldState {
            from_vsn: "0.2.0",
            direction: Direction::Up,
            bytes: &bytes,
            extra: &extra,
        })
        .unwrap();
        let mut pending = state.pending.clone();
        pending.sort();
        assert_eq!(
            pending,
            vec![
                (ByteBuf::from(&b"count"[..]), ByteBuf::from(&b"-41"[..])),
                (ByteBuf::from(&b"text"[..]), ByteBuf::from(&b"0x1"[..])),
            ]
        );
        assert_eq!(state.table, None);
        // Between 0.3.x the state decodes as it is.
        let same = codec::encode(&state).unwrap();
        let again = KvServer::code_change(OldState {
            from_vsn: "0.3.0",
            direction: Direction::Up,
            bytes: &same,
            extra: &extra,
        })
        .unwrap();
        assert_eq!(again, state);
        assert!(
            KvServer::code_change(OldState {
                from_vsn: "0.1.0",
                direction: Direction::Up,
                bytes: &bytes,
                extra: &extra,
            })
            .is_err()
        );
    }
}
