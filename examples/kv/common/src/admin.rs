//! The commands every kv version answers the same way (connection and server commands),
//! including the ones `redis-benchmark` and `redis-cli` send on their own.

use crate::resp;
use crate::session::After;

/// What `INFO` reports about the server.
pub struct ServerFacts<'a> {
    /// The kv_server module version.
    pub version: &'a str,
    /// Keys stored.
    pub keys: usize,
    /// Commands handled since the process started (carried across upgrades).
    pub commands: u64,
    /// Open client connections.
    pub connections: usize,
}

/// The command name, upper case.
pub fn name(args: &[&[u8]]) -> Vec<u8> {
    args.first()
        .map(|n| n.to_ascii_uppercase())
        .unwrap_or_default()
}

/// `-ERR unknown command`, worded as Redis does.
pub fn unknown(out: &mut Vec<u8>, args: &[&[u8]]) {
    let name = args
        .first()
        .map(|n| String::from_utf8_lossy(n))
        .unwrap_or_default();
    let rest: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| format!("'{}'", String::from_utf8_lossy(a)))
        .collect();
    resp::error(
        out,
        &format!(
            "ERR unknown command '{name}', with args beginning with: {}",
            rest.join(" ")
        ),
    );
}

/// `-ERR wrong number of arguments`.
pub fn arity(out: &mut Vec<u8>, args: &[&[u8]]) {
    let name = args
        .first()
        .map(|n| String::from_utf8_lossy(n).to_lowercase())
        .unwrap_or_default();
    resp::error(
        out,
        &format!("ERR wrong number of arguments for '{name}' command"),
    );
}

/// Answers a connection or server command (`name`: the upper-cased `args[0]`); None when
/// `args` is not one of them.
pub fn answer(
    name: &[u8],
    args: &[&[u8]],
    out: &mut Vec<u8>,
    facts: &ServerFacts<'_>,
) -> Option<After> {
    let n = args.len();
    match name {
        b"PING" => match n {
            1 => resp::simple(out, "PONG"),
            2 => resp::bulk(out, args[1]),
            _ => arity(out, args),
        },
        b"ECHO" if n == 2 => resp::bulk(out, args[1]),
        b"QUIT" => {
            resp::simple(out, "OK");
            return Some(After::Close);
        }
        b"SELECT" if n == 2 => {
            if args[1] == b"0" {
                resp::simple(out, "OK");
            } else {
                resp::error(out, "ERR DB index is out of range");
            }
        }
        b"CONFIG" if n >= 2 && args[1].eq_ignore_ascii_case(b"GET") => config_get(out, &args[2..]),
        // redis-cli asks for command docs in interactive mode: none here.
        b"COMMAND" => resp::array(out, 0),
        b"CLIENT" => resp::simple(out, "OK"),
        b"INFO" => {
            let text = format!(
                "# Server\r\nredis_version:7.0.0\r\nrelup_kv_version:{}\r\n\
                 # Stats\r\ntotal_commands_processed:{}\r\nconnected_clients:{}\r\n\
                 # Keyspace\r\ndb0:keys={}\r\n",
                facts.version, facts.commands, facts.connections, facts.keys
            );
            resp::bulk(out, text.as_bytes());
        }
        b"ECHO" | b"SELECT" | b"CONFIG" => arity(out, args),
        _ => return None,
    }
    Some(After::Continue)
}

/// `CONFIG GET param...`: what redis-benchmark asks at start (`save`, `appendonly`): this
/// server keeps nothing on disk.
fn config_get(out: &mut Vec<u8>, params: &[&[u8]]) {
    let known: [(&[u8], &[u8]); 2] = [(b"save", b""), (b"appendonly", b"no")];
    let found: Vec<(&[u8], &[u8])> = known
        .iter()
        .filter(|(key, _)| params.iter().any(|p| p.eq_ignore_ascii_case(key)))
        .copied()
        .collect();
    resp::array(out, found.len() * 2);
    for (key, value) in found {
        resp::bulk(out, key);
        resp::bulk(out, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&[u8]]) -> (Option<After>, String) {
        let mut out = Vec::new();
        let facts = ServerFacts {
            version: "0.1.0",
            keys: 2,
            commands: 5,
            connections: 1,
        };
        let after = answer(&name(args), args, &mut out, &facts);
        (after, String::from_utf8(out).unwrap())
    }

    #[test]
    fn what_redis_benchmark_and_redis_cli_send() {
        assert_eq!(run(&[b"ping"]).1, "+PONG\r\n");
        assert_eq!(run(&[b"PING", b"hi"]).1, "$2\r\nhi\r\n");
        assert_eq!(
            run(&[b"CONFIG", b"GET", b"save"]).1,
            "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
        );
        assert_eq!(
            run(&[b"config", b"get", b"appendonly"]).1,
            "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
        );
        assert_eq!(run(&[b"CONFIG", b"GET", b"maxmemory"]).1, "*0\r\n");
        assert_eq!(run(&[b"QUIT"]), (Some(After::Close), "+OK\r\n".into()));
        assert!(run(&[b"INFO"]).1.contains("relup_kv_version:0.1.0"));
        assert!(
            run(&[b"PING", b"a", b"b"])
                .1
                .starts_with("-ERR wrong number")
        );
        assert_eq!(run(&[b"GET", b"k"]).0, None);
    }
}
