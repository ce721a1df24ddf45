//! The live `config.toml`: `[app.module] key = value`, the operator's values.

use relup_module::ConfigValue;
use std::collections::BTreeMap;
use std::path::Path;

/// The operator's values by application, module and key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveConfig {
    /// app -> module -> key -> value.
    pub apps: BTreeMap<String, BTreeMap<String, BTreeMap<String, toml::Value>>>,
}

const HEADER: &str = "# Operator-set configuration, written by relup (DESIGN.md §4).\n\
# Change it by appending app:module:key:value lines to config.toml.new next to this file,\n\
# or with `relup config set`; the node rewrites this file atomically.\n\n";

impl LiveConfig {
    /// Reads `path`; a missing file is an empty config. Errors name the file and the line.
    pub fn load(path: &Path) -> Result<LiveConfig, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LiveConfig::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        LiveConfig::parse(&text, &path.display().to_string())
    }

    /// Parses a `config.toml` text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<LiveConfig, String> {
        // The 1-based line of a byte offset, counted in bytes: an offset inside a multi-byte
        // character must not be used to slice the text.
        let line_of = |offset: usize| {
            let before = &text.as_bytes()[..offset.min(text.len())];
            1 + before.iter().filter(|&&b| b == b'\n').count()
        };
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e.span().map(|s| line_of(s.start)).unwrap_or(1);
            format!(
                "{file} line {line}: {}; expected TOML tables [app.module] of key = value",
                e.message()
            )
        })?;
        let mut live = LiveConfig::default();
        let find = |needle: &str| {
            text.find(needle)
                .map(line_of)
                .map(|l| format!(" line {l}"))
                .unwrap_or_default()
        };
        for (app, modules) in doc {
            let toml::Value::Table(modules) = modules else {
                return Err(format!(
                    "{file}{}: {app} is not a table; expected [{app}.<module>] tables of key = value",
                    find(&app)
                ));
            };
            for (module, keys) in modules {
                let toml::Value::Table(keys) = keys else {
                    return Err(format!(
                        "{file}{}: {app}.{module} is not a table; expected [{app}.{module}] \
                         with key = value lines",
                        find(&module)
                    ));
                };
                let entry = live
                    .apps
                    .entry(app.clone())
                    .or_default()
                    .entry(module)
                    .or_default();
                entry.extend(keys);
            }
        }
        Ok(live)
    }

    /// The file's text. The whole document goes through one TOML serializer, so a key whose
    /// value is a table is written under `[app.module.key]` (a section of its own would
    /// otherwise be read back as an application) and names are escaped TOML's way.
    pub fn render(&self) -> String {
        let mut doc = toml::Table::new();
        for (app, modules) in &self.apps {
            let mut tables = toml::Table::new();
            for (module, keys) in modules {
                if keys.is_empty() {
                    continue;
                }
                let keys: toml::Table = keys.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                tables.insert(module.clone(), toml::Value::Table(keys));
            }
            if !tables.is_empty() {
                doc.insert(app.clone(), toml::Value::Table(tables));
            }
        }
        let mut out = String::from(HEADER);
        // A table of TOML values always serializes.
        out.push_str(&toml::to_string(&doc).unwrap_or_default());
        out
    }

    /// Sets a value.
    pub fn set(&mut self, app: &str, module: &str, key: &str, value: toml::Value) {
        self.apps
            .entry(app.to_string())
            .or_default()
            .entry(module.to_string())
            .or_default()
            .insert(key.to_string(), value);
    }

    /// Removes a value; returns whether it was there.
    pub fn remove(&mut self, app: &str, module: &str, key: &str) -> bool {
        let Some(modules) = self.apps.get_mut(app) else {
            return false;
        };
        let Some(keys) = modules.get_mut(module) else {
            return false;
        };
        let removed = keys.remove(key).is_some();
        if keys.is_empty() {
            modules.remove(module);
        }
        if modules.is_empty() {
            self.apps.remove(app);
        }
        removed
    }

    /// Every (app, module, key, value).
    pub fn entries(&self) -> Vec<(String, String, String, toml::Value)> {
        let mut out = Vec::new();
        for (app, modules) in &self.apps {
            for (module, keys) in modules {
                for (key, value) in keys {
                    out.push((app.clone(), module.clone(), key.clone(), value.clone()));
                }
            }
        }
        out
    }
}

/// A configuration value as TOML (for display and persistence).
pub fn toml_value(value: &ConfigValue) -> toml::Value {
    match value {
        ConfigValue::Bool(b) => toml::Value::Boolean(*b),
        ConfigValue::Int(i) => toml::Value::Integer(*i),
        ConfigValue::Float(f) => toml::Value::Float(*f),
        ConfigValue::Str(s) => toml::Value::String(s.clone()),
        ConfigValue::List(items) => toml::Value::Array(items.iter().map(toml_value).collect()),
        ConfigValue::Table(t) => {
            toml::Value::Table(t.iter().map(|(k, v)| (k.clone(), toml_value(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors_name_the_line() {
        let mut live = LiveConfig::default();
        live.set(
            "ticker",
            "ticker_server",
            "ticker",
            toml::Value::Integer(1500),
        );
        live.set(
            "ticker",
            "ticker_server",
            "mode",
            toml::Value::String("a:b".into()),
        );
        let text = live.render();
        assert!(text.contains("[ticker.ticker_server]"), "{text}");
        assert_eq!(LiveConfig::parse(&text, "config.toml").unwrap(), live);
        let err = LiveConfig::parse("[a.b]\nx = 1\ny = \n", "config.toml").unwrap_err();
        assert!(err.starts_with("config.toml line 3"), "{err}");
        let err = LiveConfig::parse("\n\nticker = 5\n", "config.toml").unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("not a table"),
            "{err}"
        );
        assert!(live.remove("ticker", "ticker_server", "mode"));
        assert!(live.remove("ticker", "ticker_server", "ticker"));
        assert!(live.apps.is_empty());
    }
}
