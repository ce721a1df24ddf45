//! The remote console: `relup state`, `relup call` and `relup cast` (issue 20), through the
//! control socket like every command (same uid rule).

use super::Failure;
use super::output::print_json;
use super::remote::ask;
use relup_runtime::control::Request;
use std::path::Path;
use std::time::Duration;

/// Reads the command line's JSON argument, saying what is expected when it is not JSON.
fn parse_json(what: &str, text: &str) -> Result<serde_json::Value, Failure> {
    serde_json::from_str(text).map_err(|e| {
        let hint = if !text.is_empty() && text.chars().all(|c| c.is_alphanumeric() || c == '_') {
            format!(" (a unit variant is a JSON string: '\"{text}\"')")
        } else {
            String::new()
        };
        Failure(format!(
            "the {what} {text:?} is not JSON: {e}{hint}; expected the module's type as serde writes it in JSON, e.g. '\"Get\"' or '{{\"Add\": 5}}'"
        ))
    })
}

/// Prints `value` for people: indented JSON.
fn print_pretty(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(_) => println!("{value}"),
    }
}

/// `relup state <name|pid>`: the process's state as its module exports it.
pub fn state(root: &Path, target: &str, json: bool) -> Result<(), Failure> {
    let request = Request::State {
        target: target.to_string(),
    };
    let result = ask(root, &request, json)?;
    if json {
        print_json(&result);
    } else {
        print_pretty(result.get("state").unwrap_or(&serde_json::Value::Null));
    }
    Ok(())
}

/// `relup call <name|pid> '<json>'`: the reply, as JSON.
pub fn call(
    root: &Path,
    target: &str,
    request: &str,
    timeout: Option<Duration>,
    json: bool,
) -> Result<(), Failure> {
    let request = Request::Call {
        target: target.to_string(),
        request: parse_json("request", request)?,
        timeout_ms: timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
    };
    let result = ask(root, &request, json)?;
    if json {
        print_json(&result);
    } else {
        print_pretty(result.get("reply").unwrap_or(&serde_json::Value::Null));
    }
    Ok(())
}

/// `relup cast <name|pid> '<json>'`: puts the message in the process's mailbox.
pub fn cast(root: &Path, target: &str, message: &str, json: bool) -> Result<(), Failure> {
    let request = Request::Cast {
        target: target.to_string(),
        message: parse_json("message", message)?,
    };
    let result = ask(root, &request, json)?;
    if json {
        print_json(&result);
    } else {
        let process = &result["process"];
        let name = process["name"]
            .as_str()
            .map_or(String::new(), |n| format!("{n} "));
        println!(
            "cast to {name}<0.{}.0>: in its mailbox (a cast its module cannot decode is dropped with a warning in log/node.log)",
            process["pid"]
        );
    }
    Ok(())
}
