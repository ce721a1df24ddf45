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

    /// The file's text for `release`: under a header, every key the release declares, one
    /// `[app.module]` table per module with keys, in manifest order. A key the operator set is
    /// a plain `key = value` line; a key left at its default is a commented `# key = default`
    /// line, so the file shows every key with the value in effect. A trailing comment gives
    /// the key's type, range and allowed values (and the default of a set key). Keys the
    /// operator set that the release does not declare follow as plain lines (the next prune
    /// removes them). Comments are ignored when the file is read, so it reads back as
    /// [`LiveConfig::render`]'s text does.
    pub fn render_for(&self, release: &relup_appup::Release) -> String {
        let mut out = String::from(HEADER);
        out.push_str(&format!(
            "# Keys of release {} {}: a commented line is a default in effect.\n",
            release.name, release.version
        ));
        let mut shown: Vec<(&str, &str, &str)> = Vec::new();
        for app in &release.applications {
            let mut modules: Vec<&str> = Vec::new();
            for key in &app.config {
                if !modules.contains(&key.module.as_str()) {
                    modules.push(&key.module);
                }
            }
            for module in modules {
                out.push_str(&format!(
                    "\n[{}.{}]\n",
                    toml_key(&app.name),
                    toml_key(module)
                ));
                for key in app.config.iter().filter(|k| k.module == module) {
                    let about = describe(key);
                    match self.value(&app.name, module, &key.key) {
                        Some(value) => out.push_str(&format!(
                            "{} = {}  # {about}; default {}\n",
                            toml_key(&key.key),
                            inline(value),
                            inline(&key.default)
                        )),
                        None => out.push_str(&format!(
                            "# {} = {}  # default; {about}\n",
                            toml_key(&key.key),
                            inline(&key.default)
                        )),
                    }
                    shown.push((&app.name, module, &key.key));
                }
            }
        }
        let mut rest = LiveConfig::default();
        for (app, module, key, value) in self.entries() {
            if !shown.contains(&(app.as_str(), module.as_str(), key.as_str())) {
                rest.set(&app, &module, &key, value);
            }
        }
        if !rest.apps.is_empty() {
            out.push_str("\n# Set, but not declared by this release:\n");
            let text = rest.render();
            out.push_str(text.strip_prefix(HEADER).unwrap_or(&text));
        }
        out
    }

    /// The operator's value of a key, if set.
    pub fn value(&self, app: &str, module: &str, key: &str) -> Option<&toml::Value> {
        self.apps.get(app)?.get(module)?.get(key)
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

/// `name` as a TOML key: bare when it can be, else a quoted string.
fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_string()
    } else {
        toml::Value::String(name.to_string()).to_string()
    }
}

/// A value on one line (tables inline, as `{ a = 1 }`).
fn inline(value: &toml::Value) -> String {
    value.to_string().replace('\n', " ")
}

/// A key's type, range and allowed values, for the comment after it.
fn describe(key: &relup_appup::ConfigKey) -> String {
    let ty = serde_json::to_value(key.ty)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut about = ty;
    if let Some((lo, hi)) = key.range {
        about.push_str(&format!(" in [{lo}, {hi}]"));
    }
    if let Some(allowed) = &key.allowed {
        let list: Vec<String> = allowed.iter().map(inline).collect();
        about.push_str(&format!(", one of {}", list.join(", ")));
    }
    about
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
        let release = relup_appup::Release::parse(
            r#"name = "t"
version = "1.0.0"
[[applications]]
name = "ticker"
version = "1.0.0"
[[applications.modules]]
name = "ticker_server"
file = "lib/t.so"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[[applications.config]]
module = "ticker_server"
key = "ticker"
type = "duration_ms"
default = 1000
range = [10, 600000]
[[applications.config]]
module = "ticker_server"
key = "mode"
type = "string"
default = "slow"
allowed = ["slow", "fast"]
"#,
            "release.toml",
        )
        .unwrap();
        let text = live.render_for(&release);
        assert!(
            text.contains(
                "[ticker.ticker_server]\nticker = 1500  # duration_ms in [10, 600000]; default 1000\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# mode = \"slow\"  # default; string, one of \"slow\", \"fast\"\n"),
            "{text}"
        );
        assert_eq!(LiveConfig::parse(&text, "config.toml").unwrap(), live);
        live.set("gone", "m", "k", toml::Value::Boolean(true));
        let text = live.render_for(&release);
        assert!(text.contains("[gone.m]\nk = true"), "{text}");
        assert_eq!(LiveConfig::parse(&text, "config.toml").unwrap(), live);
        live.remove("gone", "m", "k");
        assert!(live.remove("ticker", "ticker_server", "ticker"));
        assert!(live.apps.is_empty());
    }
}
