//! A service with its own `main()` that embeds the relup runtime.
//!
//! It starts a node, registers a native (statically linked) server type, optionally loads a
//! cdylib module given on the command line, starts a supervision tree with both kinds of
//! children, talks to them by name and by pid, and shuts down cleanly.
//!
//! ```text
//! cargo run -p relup-example-embed                       # native child only
//! cargo run -p relup-example-embed -- path/to/libcounter.so   # plus a cdylib child
//! ```

use relup_example_embed::{GREETER, Greeter, GreeterCall, GreeterReply};
use relup_runtime::{ChildSpec, Expect, Node, NodeConfig, Strategy, SupervisorSpec};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn run(module: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    let timeout = Duration::from_secs(5);
    let node = Node::start(NodeConfig::default())?;
    println!("node: {} scheduler threads", node.schedulers());
    node.code()
        .register_native::<Greeter>(GREETER.0, GREETER.1)?;
    let mut children = vec![ChildSpec::worker("greeter", "greeter", "Hello").named("greeter")];
    if let Some(path) = &module {
        // SAFETY: the library runs in this process; whoever names it on the command line
        // vouches for it, as for the binary itself.
        let loaded = unsafe { node.code().load_current(path, &Expect::default()) }?;
        println!(
            "loaded module {} {} from {}",
            loaded.name(),
            loaded.version(),
            path.display()
        );
        #[derive(Serialize)]
        struct CounterArgs {
            start: i64,
        }
        children.push(
            ChildSpec::worker("counter", loaded.name(), &CounterArgs { start: 40 })
                .named("counter"),
        );
    }
    let root = node.start_supervisor(
        SupervisorSpec::new(Strategy::OneForOne, children),
        Some("root"),
    )?;
    for child in node.which_children(root)? {
        println!(
            "child {} ({:?}) running as {}",
            child.id,
            child.kind,
            child.pid.map_or("-".into(), |p| p.to_string())
        );
    }

    let reply: GreeterReply =
        node.call("greeter", &GreeterCall::Greet("operator".into()), timeout)?;
    println!("greeter says: {reply:?}");
    node.cast("greeter", &"Welcome back".to_string())?;
    let pid = node.whereis("greeter").ok_or("greeter is not registered")?;
    let reply: GreeterReply = node.call(pid, &GreeterCall::Greet("operator".into()), timeout)?;
    println!("greeter (by pid {pid}) says: {reply:?}");

    if module.is_some() {
        // The counter fixture's protocol: `Add(n)` replies `Count(total)`.
        #[derive(Serialize)]
        enum CounterCall {
            #[allow(dead_code)]
            Get,
            Add(i64),
        }
        #[derive(Deserialize)]
        enum CounterReply {
            Count(i64),
        }
        let CounterReply::Count(total) = node.call("counter", &CounterCall::Add(2), timeout)?;
        println!("counter says: Count({total})");
    }

    node.shutdown(timeout);
    println!("clean shutdown: {} processes left", node.process_count());
    Ok(())
}

fn main() -> ExitCode {
    let module = std::env::args_os().nth(1).map(PathBuf::from);
    match run(module) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("embed: {error}");
            ExitCode::FAILURE
        }
    }
}
