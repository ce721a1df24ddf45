//! High-level appup instructions: their types, and their TOML form (one inline table each,
//! tagged by the key that names the instruction, e.g. `{ update = "ticker_server" }`).

use crate::error::Error;
use crate::span::{Location, Pos};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

/// What happens to a module's old code once the new code is in (as OTP's PostPurge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purge {
    /// Old code is dropped once no process runs it any more (processes are not killed).
    #[default]
    Soft,
    /// Processes still running old code are killed, then old code is dropped.
    Brutal,
}

/// How an added application is started (as OTP's application start types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartType {
    /// If it stops, the node stops.
    #[default]
    Permanent,
    /// If it stops abnormally, the node stops.
    Transient,
    /// Stopping is reported only.
    Temporary,
    /// Loaded but not started.
    Load,
}

/// One high-level appup instruction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Instruction {
    /// Load new code for a module no process runs (no suspend, no code_change).
    LoadModule {
        /// The module.
        module: String,
        /// Old code purge mode.
        purge: Purge,
        /// Modules whose instructions go first on upgrade (last on downgrade).
        depends_on: Vec<String>,
    },
    /// Suspend the processes running a module, load its new code, code_change their state with
    /// `extra`, resume them.
    Update {
        /// The module.
        module: String,
        /// Passed to code_change.
        extra: toml::Value,
        /// How long to wait for each process to suspend (finish its current message).
        timeout_ms: Option<u64>,
        /// Old code purge mode.
        purge: Purge,
        /// Modules whose instructions go first on upgrade (last on downgrade); processes of
        /// this module are suspended before theirs.
        depends_on: Vec<String>,
    },
    /// Load a module new in this version.
    AddModule {
        /// The module.
        module: String,
        /// Ordering dependencies.
        depends_on: Vec<String>,
    },
    /// Remove a module (its code becomes old, then purged).
    DeleteModule {
        /// The module.
        module: String,
        /// Ordering dependencies.
        depends_on: Vec<String>,
    },
    /// Load and start an application new in the target release.
    AddApplication {
        /// The application.
        application: String,
        /// How it is started.
        start_type: StartType,
    },
    /// Stop an application absent from the target release and remove its modules.
    RemoveApplication {
        /// The application.
        application: String,
    },
    /// Stop an application, load its new code, start it again.
    RestartApplication {
        /// The application.
        application: String,
    },
    /// Call an exported function of a module (new code) with arguments.
    Apply {
        /// The module.
        module: String,
        /// The exported function.
        function: String,
        /// Arguments, TOML values.
        args: Vec<toml::Value>,
    },
    /// Give a supervisor the flags (strategy, intensity, period) of the target release.
    UpdateSupervisor {
        /// Supervisor path: application name, then nested supervisor child ids, `/`-separated.
        supervisor: String,
    },
    /// Add and start a child, with its spec from the target release.
    AddChild {
        /// Child id.
        child: String,
        /// Supervisor path.
        supervisor: String,
    },
    /// Stop a child and remove its spec.
    RemoveChild {
        /// Child id.
        child: String,
        /// Supervisor path.
        supervisor: String,
    },
    /// Stop a child and start it again with its spec from the target release.
    RestartChild {
        /// Child id.
        child: String,
        /// Supervisor path.
        supervisor: String,
    },
    /// Restart the whole node into the target release. Must be the last instruction.
    RestartNode,
}

/// An instruction with the position it was written at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocatedInstruction {
    /// The instruction.
    pub instruction: Instruction,
    /// Where it is in its appup.toml.
    #[serde(skip)]
    pub pos: Pos,
}

/// The tag keys accepted, with what they mean (aliases map to the same instruction).
pub const TAGS: &[&str] = &[
    "load_module",
    "update",
    "add_module",
    "delete_module",
    "add_application",
    "remove_application",
    "restart_application",
    "apply",
    "update_supervisor",
    "add_child",
    "start_child",
    "remove_child",
    "stop_child",
    "delete_child",
    "restart_child",
    "restart_node",
];

impl Instruction {
    /// The instruction's tag as written in appup.toml.
    pub fn kind(&self) -> &'static str {
        match self {
            Instruction::LoadModule { .. } => "load_module",
            Instruction::Update { .. } => "update",
            Instruction::AddModule { .. } => "add_module",
            Instruction::DeleteModule { .. } => "delete_module",
            Instruction::AddApplication { .. } => "add_application",
            Instruction::RemoveApplication { .. } => "remove_application",
            Instruction::RestartApplication { .. } => "restart_application",
            Instruction::Apply { .. } => "apply",
            Instruction::UpdateSupervisor { .. } => "update_supervisor",
            Instruction::AddChild { .. } => "add_child",
            Instruction::RemoveChild { .. } => "remove_child",
            Instruction::RestartChild { .. } => "restart_child",
            Instruction::RestartNode => "restart_node",
        }
    }

    /// The module whose code this instruction loads, changes or removes, if any.
    pub fn module(&self) -> Option<&str> {
        match self {
            Instruction::LoadModule { module, .. }
            | Instruction::Update { module, .. }
            | Instruction::AddModule { module, .. }
            | Instruction::DeleteModule { module, .. } => Some(module),
            _ => None,
        }
    }

    /// Modules this instruction's module depends on.
    pub fn depends_on(&self) -> &[String] {
        match self {
            Instruction::LoadModule { depends_on, .. }
            | Instruction::Update { depends_on, .. }
            | Instruction::AddModule { depends_on, .. }
            | Instruction::DeleteModule { depends_on, .. } => depends_on,
            _ => &[],
        }
    }

    /// The instruction as a TOML table, the inverse of parsing.
    pub fn to_table(&self) -> toml::Table {
        use toml::Value as V;
        let mut t = toml::Table::new();
        let s = |x: &str| V::String(x.to_string());
        let deps = |d: &[String]| V::Array(d.iter().map(|x| V::String(x.clone())).collect());
        let purge = |p: Purge| {
            V::String(match p {
                Purge::Soft => "soft".into(),
                Purge::Brutal => "brutal".into(),
            })
        };
        match self {
            Instruction::LoadModule {
                module,
                purge: p,
                depends_on,
            } => {
                t.insert("load_module".into(), s(module));
                if *p != Purge::Soft {
                    t.insert("purge".into(), purge(*p));
                }
                if !depends_on.is_empty() {
                    t.insert("depends_on".into(), deps(depends_on));
                }
            }
            Instruction::Update {
                module,
                extra,
                timeout_ms,
                purge: p,
                depends_on,
            } => {
                t.insert("update".into(), s(module));
                t.insert("extra".into(), extra.clone());
                if let Some(ms) = timeout_ms {
                    t.insert(
                        "timeout_ms".into(),
                        V::Integer(i64::try_from(*ms).unwrap_or(i64::MAX)),
                    );
                }
                if *p != Purge::Soft {
                    t.insert("purge".into(), purge(*p));
                }
                if !depends_on.is_empty() {
                    t.insert("depends_on".into(), deps(depends_on));
                }
            }
            Instruction::AddModule { module, depends_on } => {
                t.insert("add_module".into(), s(module));
                if !depends_on.is_empty() {
                    t.insert("depends_on".into(), deps(depends_on));
                }
            }
            Instruction::DeleteModule { module, depends_on } => {
                t.insert("delete_module".into(), s(module));
                if !depends_on.is_empty() {
                    t.insert("depends_on".into(), deps(depends_on));
                }
            }
            Instruction::AddApplication {
                application,
                start_type,
            } => {
                t.insert("add_application".into(), s(application));
                if *start_type != StartType::Permanent {
                    t.insert("start_type".into(), s(start_type_name(*start_type)));
                }
            }
            Instruction::RemoveApplication { application } => {
                t.insert("remove_application".into(), s(application));
            }
            Instruction::RestartApplication { application } => {
                t.insert("restart_application".into(), s(application));
            }
            Instruction::Apply {
                module,
                function,
                args,
            } => {
                t.insert("apply".into(), s(module));
                t.insert("function".into(), s(function));
                t.insert("args".into(), V::Array(args.clone()));
            }
            Instruction::UpdateSupervisor { supervisor } => {
                t.insert("update_supervisor".into(), s(supervisor));
            }
            Instruction::AddChild { child, supervisor } => {
                t.insert("add_child".into(), s(child));
                t.insert("supervisor".into(), s(supervisor));
            }
            Instruction::RemoveChild { child, supervisor } => {
                t.insert("remove_child".into(), s(child));
                t.insert("supervisor".into(), s(supervisor));
            }
            Instruction::RestartChild { child, supervisor } => {
                t.insert("restart_child".into(), s(child));
                t.insert("supervisor".into(), s(supervisor));
            }
            Instruction::RestartNode => {
                t.insert("restart_node".into(), V::Boolean(true));
            }
        }
        t
    }
}

fn start_type_name(s: StartType) -> &'static str {
    match s {
        StartType::Permanent => "permanent",
        StartType::Transient => "transient",
        StartType::Temporary => "temporary",
        StartType::Load => "load",
    }
}

impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", crate::appup::inline_table(&self.to_table()))
    }
}

/// The raw TOML form of one instruction: its fields with their spans.
pub(crate) type RawInstruction = Spanned<BTreeMap<String, Spanned<toml::Value>>>;

/// Decodes one instruction table. `default_supervisor` is used when a child instruction has
/// no `supervisor` key (the application's root supervisor).
pub(crate) fn decode(
    src: &crate::span::Source<'_>,
    raw: &RawInstruction,
    default_supervisor: &str,
) -> Result<LocatedInstruction, Error> {
    let pos = src.pos(&raw.span());
    let fields = raw.get_ref();
    let tags: Vec<&String> = fields
        .keys()
        .filter(|k| TAGS.contains(&k.as_str()))
        .collect();
    let tag = match tags.as_slice() {
        [one] => one.as_str(),
        [] => {
            return Err(Error::Syntax {
                at: Location::new(src.file, pos),
                message: format!(
                    "instruction without a known tag (keys: {})",
                    fields.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                expected: format!("one of the keys {}", TAGS.join(", ")),
            });
        }
        many => {
            return Err(Error::Syntax {
                at: Location::new(src.file, pos),
                message: format!(
                    "instruction with several tags: {}",
                    many.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                expected: "exactly one instruction tag per table".into(),
            });
        }
    };
    let d = Decoder { src, fields, pos };
    let allowed: &[&str] = match tag {
        "load_module" => &["purge", "depends_on"],
        "update" => &["extra", "timeout_ms", "purge", "depends_on"],
        "add_module" | "delete_module" => &["depends_on"],
        "add_application" => &["start_type"],
        "apply" => &["function", "args"],
        "add_child" | "start_child" | "remove_child" | "stop_child" | "delete_child"
        | "restart_child" => &["supervisor"],
        _ => &[],
    };
    for (k, v) in fields {
        if k != tag && !allowed.contains(&k.as_str()) {
            return Err(Error::Syntax {
                at: src.loc(&v.span()),
                message: format!("unknown key `{k}` in a `{tag}` instruction"),
                expected: if allowed.is_empty() {
                    format!("no other key with `{tag}`")
                } else {
                    format!("one of: {}", allowed.join(", "))
                },
            });
        }
    }
    let instruction = match tag {
        "load_module" => Instruction::LoadModule {
            module: d.tag_string(tag)?,
            purge: d.purge()?,
            depends_on: d.string_list("depends_on")?,
        },
        "update" => Instruction::Update {
            module: d.tag_string(tag)?,
            extra: d
                .get("extra")
                .map(|v| v.get_ref().clone())
                .unwrap_or_else(|| toml::Value::Table(toml::Table::new())),
            timeout_ms: d.opt_u64("timeout_ms")?,
            purge: d.purge()?,
            depends_on: d.string_list("depends_on")?,
        },
        "add_module" => Instruction::AddModule {
            module: d.tag_string(tag)?,
            depends_on: d.string_list("depends_on")?,
        },
        "delete_module" => Instruction::DeleteModule {
            module: d.tag_string(tag)?,
            depends_on: d.string_list("depends_on")?,
        },
        "add_application" => Instruction::AddApplication {
            application: d.tag_string(tag)?,
            start_type: match d.opt_string("start_type")?.as_deref() {
                None | Some("permanent") => StartType::Permanent,
                Some("transient") => StartType::Transient,
                Some("temporary") => StartType::Temporary,
                Some("load") => StartType::Load,
                Some(other) => {
                    return Err(d.invalid(
                        "start_type",
                        other,
                        "permanent, transient, temporary or load",
                    ));
                }
            },
        },
        "remove_application" => Instruction::RemoveApplication {
            application: d.tag_string(tag)?,
        },
        "restart_application" => Instruction::RestartApplication {
            application: d.tag_string(tag)?,
        },
        "apply" => Instruction::Apply {
            module: d.tag_string(tag)?,
            function: d.opt_string("function")?.ok_or_else(|| Error::Syntax {
                at: Location::new(src.file, pos),
                message: "apply without `function`".into(),
                expected: "function = \"<exported function name>\"".into(),
            })?,
            args: match d.get("args") {
                None => Vec::new(),
                Some(v) => match v.get_ref() {
                    toml::Value::Array(a) => a.clone(),
                    other => return Err(d.invalid("args", &other.to_string(), "an array")),
                },
            },
        },
        "update_supervisor" => Instruction::UpdateSupervisor {
            supervisor: d.tag_string(tag)?,
        },
        "add_child" | "start_child" => Instruction::AddChild {
            child: d.tag_string(tag)?,
            supervisor: d
                .opt_string("supervisor")?
                .unwrap_or_else(|| default_supervisor.to_string()),
        },
        "remove_child" | "stop_child" | "delete_child" => Instruction::RemoveChild {
            child: d.tag_string(tag)?,
            supervisor: d
                .opt_string("supervisor")?
                .unwrap_or_else(|| default_supervisor.to_string()),
        },
        "restart_child" => Instruction::RestartChild {
            child: d.tag_string(tag)?,
            supervisor: d
                .opt_string("supervisor")?
                .unwrap_or_else(|| default_supervisor.to_string()),
        },
        _ => {
            // restart_node: `restart_node = true`
            match d.get(tag).map(|v| v.get_ref()) {
                Some(toml::Value::Boolean(true)) => Instruction::RestartNode,
                Some(other) => return Err(d.invalid(tag, &other.to_string(), "true")),
                None => Instruction::RestartNode,
            }
        }
    };
    Ok(LocatedInstruction { instruction, pos })
}

struct Decoder<'a> {
    src: &'a crate::span::Source<'a>,
    fields: &'a BTreeMap<String, Spanned<toml::Value>>,
    pos: Pos,
}

impl Decoder<'_> {
    fn get(&self, k: &str) -> Option<&Spanned<toml::Value>> {
        self.fields.get(k)
    }

    fn at(&self, k: &str) -> Location {
        match self.get(k) {
            Some(v) => self.src.loc(&v.span()),
            None => Location::new(self.src.file, self.pos),
        }
    }

    fn invalid(&self, k: &str, found: &str, expected: &str) -> Error {
        Error::InvalidValue {
            at: self.at(k),
            what: format!("`{k}`"),
            found: found.to_string(),
            expected: expected.to_string(),
        }
    }

    fn tag_string(&self, tag: &str) -> Result<String, Error> {
        match self.get(tag).map(|v| v.get_ref()) {
            Some(toml::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(other) => Err(self.invalid(tag, &other.to_string(), "a non-empty name string")),
            None => Err(self.invalid(tag, "nothing", "a name")),
        }
    }

    fn opt_string(&self, k: &str) -> Result<Option<String>, Error> {
        match self.get(k).map(|v| v.get_ref()) {
            None => Ok(None),
            Some(toml::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(other) => Err(self.invalid(k, &other.to_string(), "a non-empty string")),
        }
    }

    fn opt_u64(&self, k: &str) -> Result<Option<u64>, Error> {
        match self.get(k).map(|v| v.get_ref()) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if *i >= 0 => Ok(Some(*i as u64)),
            Some(other) => Err(self.invalid(k, &other.to_string(), "a non-negative integer")),
        }
    }

    fn purge(&self) -> Result<Purge, Error> {
        match self.opt_string("purge")?.as_deref() {
            None | Some("soft") | Some("soft_purge") => Ok(Purge::Soft),
            Some("brutal") | Some("brutal_purge") => Ok(Purge::Brutal),
            Some(other) => Err(self.invalid("purge", other, "\"soft\" or \"brutal\"")),
        }
    }

    fn string_list(&self, k: &str) -> Result<Vec<String>, Error> {
        match self.get(k).map(|v| v.get_ref()) {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(self.invalid(k, &other.to_string(), "an array of module names")),
                })
                .collect(),
            Some(other) => Err(self.invalid(k, &other.to_string(), "an array of module names")),
        }
    }
}
