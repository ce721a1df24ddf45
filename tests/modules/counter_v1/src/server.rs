// The counter test server, shared by versions 1.0.0 and 2.0.0 (included with `#[path]`).
// Version 2.0.0 is built with the `v2` feature: its state gains a `bonus` field with
// `#[serde(default)]`, and its upgrade code_change sets the bonus to 100.

use relup_fixture_counter_api::{Args, Call, Cast, Info as Note, PANIC_IN_CONFIG_CHANGE, Reply};
#[cfg(feature = "v2")]
use relup_module::Direction;
use relup_module::{ConfigChange, Context, ExitReason, Info, LogLevel, OldState, Server};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Serialize, Deserialize, Default)]
pub struct Counter {
    count: i64,
    ticks: u64,
    downs: u64,
    exits: u64,
    notes: Vec<i64>,
    received: u64,
    out_of_order: u64,
    last_seq: HashMap<u64, u64>,
    panic_in_terminate: bool,
    down_order: Vec<u64>,
    #[cfg(feature = "v2")]
    #[serde(default)]
    bonus: i64,
}

impl Counter {
    fn bonus(&self) -> i64 {
        #[cfg(feature = "v2")]
        return self.bonus;
        #[cfg(not(feature = "v2"))]
        0
    }
}

impl Server for Counter {
    type Args = Args;
    type Call = Call;
    type Reply = Reply;
    type Cast = Cast;
    type Info = Note;

    fn init(args: Args, ctx: &mut Context<'_>) -> Result<Self, String> {
        if args.panic_in_init {
            panic!("init was told to panic");
        }
        if args.fail_in_init {
            return Err("init was told to fail".into());
        }
        if let Some(name) = &args.register_as
            && !ctx.register(name)
        {
            return Err(format!("name {name} is taken"));
        }
        if let Some(ms) = args.tick_ms {
            ctx.send_interval(Duration::from_millis(ms), &Note::Tick)
                .map_err(|e| e.to_string())?;
        }
        if args.trap_exit {
            ctx.trap_exit(true);
        }
        Ok(Counter {
            count: args.start,
            panic_in_terminate: args.panic_in_terminate,
            ..Counter::default()
        })
    }

    fn handle_call(&mut self, request: Call, ctx: &mut Context<'_>) -> Reply {
        match request {
            Call::Get => Reply::Count(self.count),
            Call::Add(n) => {
                self.count += n;
                Reply::Count(self.count)
            }
            Call::Describe => Reply::Description {
                version: env!("CARGO_PKG_VERSION").to_string(),
                count: self.count,
                ticks: self.ticks,
                downs: self.downs,
                exits: self.exits,
                notes: self.notes.clone(),
                bonus: self.bonus(),
            },
            Call::Panic(message) => panic!("{message}"),
            Call::Stop(reason) => {
                ctx.stop(ExitReason::from_text(&reason));
                Reply::Ok
            }
            Call::Sleep(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                Reply::Ok
            }
            Call::CallGet { target, timeout_ms } => {
                let answer: Result<Reply, _> = ctx.call(
                    target.as_str(),
                    &Call::Get,
                    Duration::from_millis(timeout_ms),
                );
                Reply::Inner(match answer {
                    Ok(Reply::Count(n)) => Ok(n),
                    Ok(other) => Err(format!("unexpected reply {other:?}")),
                    Err(e) => Err(e.to_string()),
                })
            }
            Call::OrderReport => Reply::Order {
                received: self.received,
                out_of_order: self.out_of_order,
            },
            Call::Monitor(name) => match ctx.whereis(&name) {
                Some(pid) => {
                    ctx.monitor(pid);
                    Reply::Ok
                }
                None => Reply::Count(-1),
            },
            Call::Link(name) => match ctx.whereis(&name) {
                Some(pid) if ctx.link(pid) => Reply::Ok,
                _ => Reply::Count(-1),
            },
            Call::NoteAfter { ms, n } => {
                match ctx.send_after(Duration::from_millis(ms), &Note::Note(n)) {
                    Ok(_) => Reply::Ok,
                    Err(e) => Reply::Value(Some(e.to_string())),
                }
            }
            Call::DownOrder => Reply::Pids(self.down_order.clone()),
            Call::Env(key) => Reply::Value(ctx.env(&key).map(|v| format!("{v:?}"))),
            Call::Register(name) => Reply::Count(i64::from(ctx.register(&name))),
            Call::Log(line) => {
                ctx.log(LogLevel::Info, &line);
                Reply::Ok
            }
        }
    }

    fn handle_cast(&mut self, message: Cast, _ctx: &mut Context<'_>) {
        match message {
            Cast::Add(n) => self.count += n,
            Cast::Record { sender, seq } => {
                self.received += 1;
                let last = self.last_seq.entry(sender).or_insert(0);
                if seq != *last + 1 {
                    self.out_of_order += 1;
                }
                *last = seq;
            }
            Cast::Panic => panic!("cast was told to panic"),
        }
    }

    fn handle_info(&mut self, info: Info<Note>, _ctx: &mut Context<'_>) {
        match info {
            Info::Message(Note::Tick) => self.ticks += 1,
            Info::Message(Note::Note(n)) => self.notes.push(n),
            Info::Down { pid, .. } => {
                self.downs += 1;
                self.down_order.push(pid.0);
            }
            Info::Exit { .. } => self.exits += 1,
            // The counter owns no TCP ports.
            _ => {}
        }
    }

    fn terminate(&mut self, _reason: &ExitReason, _ctx: &mut Context<'_>) {
        if self.panic_in_terminate {
            panic!("terminate was told to panic");
        }
    }

    fn config_change(
        &mut self,
        change: &ConfigChange,
        _ctx: &mut Context<'_>,
    ) -> Result<(), String> {
        let keys = change.changed.iter().chain(&change.new).map(|(k, _)| k);
        for key in keys {
            if key == PANIC_IN_CONFIG_CHANGE {
                // Half-updated state first: a process that ran on would show it.
                self.count = -1;
                panic!("config_change was told to panic");
            }
        }
        Ok(())
    }

    fn code_change(old: OldState<'_>) -> Result<Self, String> {
        let extra = old.extra::<String>().ok();
        match extra.as_deref() {
            Some("fail") => return Err(format!("code_change from {} refused", old.from_vsn)),
            Some("panic") => panic!("code_change was told to panic"),
            _ => {}
        }
        #[allow(unused_mut)]
        let mut state: Counter = old.decode().map_err(|e| e.to_string())?;
        // `fail_count=N`: only the state whose count is N is refused (a migration bug that
        // one state in many hits).
        if let Some(n) = extra.as_deref().and_then(|e| e.strip_prefix("fail_count="))
            && n.parse::<i64>() == Ok(state.count)
        {
            return Err(format!("cannot migrate a counter at {n}"));
        }
        #[cfg(feature = "v2")]
        if old.direction == Direction::Up {
            // `unhealthy`: the new version's health check fails after the upgrade.
            state.bonus = if extra.as_deref() == Some("unhealthy") {
                -1
            } else {
                100
            };
        }
        Ok(state)
    }

    fn apply(function: &str, args: &[u8], ctx: &mut Context<'_>) -> Result<Vec<u8>, String> {
        match function {
            // `sleep [ms]`: holds an install up (tests of concurrent installs).
            "sleep" => {
                let args: Vec<u64> =
                    relup_module::codec::decode(args).map_err(|e| e.to_string())?;
                std::thread::sleep(Duration::from_millis(args.first().copied().unwrap_or(0)));
                Ok(Vec::new())
            }
            "fail" => Err("apply was told to fail".into()),
            // `ask_c1`: calls the process registered as c1 (within 2 s) and fails if it does
            // not answer: an apply that needs a process its own hop keeps suspended.
            "ask_c1" => match ctx.call::<_, Reply>("c1", &Call::Get, Duration::from_secs(2)) {
                Ok(_) => Ok(Vec::new()),
                Err(e) => Err(format!("c1 did not answer: {e}")),
            },
            // `register name`: registers the applying process; the encoded bool says whether
            // the node accepted.
            "register" => {
                let name: String = relup_module::codec::decode(args).map_err(|e| e.to_string())?;
                relup_module::codec::encode(&ctx.register(&name)).map_err(|e| e.to_string())
            }
            // `listen`: opens a listener on a free loopback port owned by the applying process;
            // returns its encoded address.
            "listen" => {
                let (_, addr) = ctx.tcp_listen("127.0.0.1:0").map_err(|e| e.to_string())?;
                relup_module::codec::encode(&addr).map_err(|e| e.to_string())
            }
            other => Err(format!("no exported function {other}")),
        }
    }

    fn health(&self) -> Result<(), String> {
        if self.count < 0 {
            Err(format!("count is negative: {}", self.count))
        } else if self.bonus() < 0 {
            Err(format!("bonus is negative: {}", self.bonus()))
        } else {
            Ok(())
        }
    }
}
