//! Test module `tables`, versions 1.0.0 and 2.0.0 (the `v2` feature): a server that drives
//! the node-table API of `relup_module::Context` on the test's behalf.
//!
//! Its state holds only table ids; the tables belong to the node. Version 2.0.0's
//! `code_change` fails when the state says so (`fail_code_change`), for rolled-back upgrades.

use relup_module::{Context, Info, OldState, Pid, Server, TableError, TableId, TableOptions};
use serde::{Deserialize, Serialize};

pub use relup_fixture_tables_api::{Args, Call, Reply, fill_value};

/// The process state: no data, only what it knows of the tables.
#[derive(Serialize, Deserialize, Default)]
pub struct Tables {
    /// The table created at init, if any.
    table: Option<TableId>,
    /// Notes received as an heir.
    notes: Vec<String>,
    /// 2.0.0's code_change fails when set.
    fail_code_change: bool,
}

fn answer<T>(result: Result<T, TableError>, reply: impl FnOnce(T) -> Reply) -> Reply {
    match result {
        Ok(value) => reply(value),
        Err(e) => Reply::Error(e.to_string()),
    }
}

impl Server for Tables {
    type Args = Args;
    type Call = Call;
    type Reply = Reply;
    type Cast = ();
    type Info = String;

    fn init(args: Args, ctx: &mut Context<'_>) -> Result<Self, String> {
        let mut state = Tables::default();
        if let Some(name) = &args.table {
            let id = ctx
                .table_open(name, TableOptions::create())
                .map_err(|e| e.to_string())?;
            for i in 0..args.fill {
                ctx.table_insert(id, format!("k{i:06}").as_bytes(), &fill_value(i))
                    .map_err(|e| e.to_string())?;
            }
            state.table = Some(id);
        }
        Ok(state)
    }

    fn handle_call(&mut self, request: Call, ctx: &mut Context<'_>) -> Reply {
        match request {
            Call::Open {
                name,
                create,
                exclusive,
                public,
            } => {
                let options = TableOptions {
                    create,
                    exclusive,
                    public,
                };
                answer(ctx.table_open(&name, options), |id| Reply::Table(id.0))
            }
            Call::Insert { table, key, value } => {
                answer(ctx.table_insert(TableId(table), &key, &value), |()| {
                    Reply::Ok
                })
            }
            Call::Lookup { table, key } => {
                answer(ctx.table_lookup(TableId(table), &key), Reply::Value)
            }
            Call::Remove { table, key } => {
                answer(ctx.table_remove(TableId(table), &key), Reply::Removed)
            }
            Call::Counter {
                table,
                key,
                incr,
                default,
            } => answer(
                ctx.table_update_counter(TableId(table), &key, incr, default),
                Reply::Count,
            ),
            Call::Scan { table, prefix } => {
                let mut rows = ctx.table_rows(TableId(table), &prefix);
                let all: Vec<_> = rows.by_ref().collect();
                match rows.error() {
                    Some(e) => Reply::Error(e.to_string()),
                    None => Reply::Rows(all),
                }
            }
            Call::Size { table } => answer(ctx.table_size(TableId(table)), Reply::Size),
            Call::Delete { table } => answer(ctx.table_delete(TableId(table)), |()| Reply::Ok),
            Call::SetHeir { table, heir, note } => answer(
                ctx.table_set_heir(TableId(table), heir.map(Pid), &note),
                |()| Reply::Ok,
            ),
            Call::Transform {
                table,
                chunk,
                suffix,
                fail_key,
            } => {
                let transformed = ctx.table_transform(TableId(table), chunk, |key, value| {
                    if fail_key.as_deref() == Some(key) {
                        return Err(format!(
                            "row {} cannot be transformed",
                            String::from_utf8_lossy(key)
                        ));
                    }
                    Ok([value, &suffix].concat())
                });
                answer(transformed, Reply::Transformed)
            }
            Call::Typed { table, key, value } => {
                let put = ctx.table_put(TableId(table), &key, &value);
                answer(
                    put.and_then(|()| ctx.table_get::<_, Vec<String>>(TableId(table), &key)),
                    Reply::Typed,
                )
            }
            Call::CheckReads { table, key, rounds } => {
                let mut torn = 0;
                for _ in 0..rounds {
                    match ctx.table_lookup(TableId(table), &key) {
                        Ok(Some(value)) => {
                            if value.iter().any(|b| Some(b) != value.first()) {
                                torn += 1;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => return Reply::Error(e.to_string()),
                    }
                }
                Reply::Torn {
                    reads: rounds,
                    torn,
                }
            }
            Call::Notes => Reply::Notes(self.notes.clone()),
            Call::FailCodeChange(on) => {
                self.fail_code_change = on;
                Reply::Ok
            }
            Call::Version => Reply::Version(env!("CARGO_PKG_VERSION").to_string()),
            Call::Crash => panic!("told to crash"),
        }
    }

    fn handle_info(&mut self, info: Info<String>, _ctx: &mut Context<'_>) {
        if let Info::Message(note) = info {
            self.notes.push(note);
        }
    }

    fn code_change(old: OldState<'_>) -> Result<Self, String> {
        let state: Tables = old.decode().map_err(|e| e.to_string())?;
        if cfg!(feature = "v2") && state.fail_code_change {
            return Err("code_change was told to fail".into());
        }
        Ok(state)
    }
}

relup_module::export_module!(Tables, "tables");
