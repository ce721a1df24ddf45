//! `relup config get [app[:key]]` and `relup config set app:module:key:value`, through the
//! node's control socket (the node validates a `set` exactly like a `config.toml.new` line).

use super::Failure;
use super::output::print_json;
use super::remote::ask;
use relup_runtime::control::Request;
use std::path::Path;

/// `relup config get [app[:key]]`.
pub fn get(root: &Path, selector: Option<&str>, json: bool) -> Result<(), Failure> {
    let (app, key) = match selector {
        None => (None, None),
        Some(s) => match s.split_once(':') {
            Some((app, key)) if !app.is_empty() && !key.is_empty() && !key.contains(':') => {
                (Some(app.to_string()), Some(key.to_string()))
            }
            Some(_) => {
                return Err(Failure(format!(
                    "{s:?}: expected `app` or `app:key` (e.g. ticker or ticker:ticker)"
                )));
            }
            None => (Some(s.to_string()), None),
        },
    };
    let result = ask(root, &Request::ConfigGet { app, key }, json)?;
    if json {
        print_json(&result);
        return Ok(());
    }
    let keys = result["keys"].as_array().cloned().unwrap_or_default();
    if keys.is_empty() {
        println!("no config keys declared");
    }
    for k in keys {
        let text = |f: &str| k[f].as_str().unwrap_or("").to_string();
        let value = k["value"].as_str().unwrap_or("(unset)");
        let origin = k["origin"].as_str().unwrap_or("unset");
        println!(
            "{}:{}:{} = {value}  ({origin}, {})",
            text("app"),
            text("module"),
            text("key"),
            text("type")
        );
    }
    Ok(())
}

/// `relup config set app:module:key:value`.
pub fn set(root: &Path, line: &str, json: bool) -> Result<(), Failure> {
    let result = ask(
        root,
        &Request::ConfigSet {
            line: line.to_string(),
        },
        json,
    )?;
    if json {
        print_json(&result);
    } else {
        println!(
            "set {}:{}:{} = {} (saved in config/config.toml)",
            result["app"].as_str().unwrap_or(""),
            result["module"].as_str().unwrap_or(""),
            result["key"].as_str().unwrap_or(""),
            result["value"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
