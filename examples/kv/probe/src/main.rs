//! `kv-probe ADDR SECONDS [WHILE_FILE]`: sends `PING` back to back on one connection for
//! SECONDS (or until WHILE_FILE, when given, no longer exists) and
//! prints how many round trips it made and how long they took: the longest is the stall a
//! client saw (during an upgrade, say). Exits non-zero if a reply is wrong or the connection
//! drops, so a script can count on "no connection dropped" too.
//!
//! Output, one line: `probes=N max_ms=X p99_ms=Y p50_ms=Z over_10ms=K`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn run(addr: &str, seconds: f64, while_file: Option<&Path>) -> Result<String, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut waits = Vec::new();
    let mut line = String::new();
    let mut checked = Instant::now();
    while Instant::now() < until {
        if let Some(file) = while_file
            && checked.elapsed() > Duration::from_millis(50)
        {
            if !file.exists() {
                break;
            }
            checked = Instant::now();
        }
        let sent = Instant::now();
        writer
            .write_all(b"*1\r\n$4\r\nPING\r\n")
            .map_err(|e| format!("write after {} probes: {e}", waits.len()))?;
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| format!("read after {} probes: {e}", waits.len()))?;
        if n == 0 {
            return Err(format!("connection closed after {} probes", waits.len()));
        }
        if line != "+PONG\r\n" {
            return Err(format!("unexpected reply {line:?}"));
        }
        waits.push(sent.elapsed());
    }
    if waits.is_empty() {
        return Err("no probe completed".into());
    }
    let over_10ms = waits
        .iter()
        .filter(|w| **w > Duration::from_millis(10))
        .count();
    waits.sort();
    let at = |q: f64| waits[((waits.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(format!(
        "probes={} max_ms={:.3} p99_ms={:.3} p50_ms={:.3} over_10ms={over_10ms}",
        waits.len(),
        ms(waits[waits.len() - 1]),
        ms(at(0.99)),
        ms(at(0.5)),
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(addr), Some(seconds)) = (args.first(), args.get(1).and_then(|s| s.parse().ok()))
    else {
        eprintln!("usage: kv-probe ADDR SECONDS [WHILE_FILE]");
        return ExitCode::from(2);
    };
    match run(addr, seconds, args.get(2).map(Path::new)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kv-probe: {e}");
            ExitCode::FAILURE
        }
    }
}
