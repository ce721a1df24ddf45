//! `appup.toml`: how one application version upgrades from earlier versions (`up`) and
//! downgrades to them (`down`); parsing, and writing back to text.

use crate::error::{Error, Errors};
use crate::instruction::{LocatedInstruction, RawInstruction, decode};
use crate::release::{parse_version, syntax};
use crate::span::{Pos, Source};
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use std::fmt;
use toml::Spanned;

/// Which versions an `up` or `down` entry applies to: one exact version, or a semver
/// requirement such as `>=0.1.0, <0.2.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionMatch {
    /// Exactly this version.
    Exact(Version),
    /// Any version meeting the requirement.
    Req(VersionReq),
}

impl VersionMatch {
    /// Parses an exact version first, then a requirement.
    pub fn parse(s: &str) -> Result<VersionMatch, String> {
        let s = s.trim();
        if let Ok(v) = Version::parse(s) {
            return Ok(VersionMatch::Exact(v));
        }
        VersionReq::parse(s)
            .map(VersionMatch::Req)
            .map_err(|e| e.to_string())
    }

    /// Whether `v` is matched.
    pub fn matches(&self, v: &Version) -> bool {
        match self {
            VersionMatch::Exact(x) => x == v,
            VersionMatch::Req(r) => r.matches(v),
        }
    }
}

impl fmt::Display for VersionMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionMatch::Exact(v) => write!(f, "{v}"),
            VersionMatch::Req(r) => write!(f, "{r}"),
        }
    }
}

impl Serialize for VersionMatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for VersionMatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        VersionMatch::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One `[[up]]` (versions it upgrades from) or `[[down]]` (versions it downgrades to) entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// `from` of an up entry, `to` of a down entry.
    pub versions: VersionMatch,
    /// Instructions in appup order.
    pub instructions: Vec<LocatedInstruction>,
    /// Where the entry is.
    #[serde(skip)]
    pub pos: Pos,
}

/// A parsed `appup.toml` for one application version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Appup {
    /// The file name given to [`Appup::parse`], used in error messages.
    pub file: String,
    /// The application.
    pub application: String,
    /// The application version this appup belongs to (the newer side of every entry).
    pub version: Version,
    /// Upgrades into `version`, first match wins.
    pub up: Vec<Entry>,
    /// Downgrades from `version`, first match wins.
    pub down: Vec<Entry>,
}

/// Up or down: which section of an appup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From an older version into the appup's version.
    Up,
    /// From the appup's version to an older one.
    Down,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Up => "up",
            Direction::Down => "down",
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAppup {
    application: Spanned<String>,
    version: Spanned<String>,
    #[serde(default)]
    up: Vec<Spanned<RawUp>>,
    #[serde(default)]
    down: Vec<Spanned<RawDown>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUp {
    from: Spanned<String>,
    #[serde(default)]
    instructions: Vec<RawInstruction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDown {
    to: Spanned<String>,
    #[serde(default)]
    instructions: Vec<RawInstruction>,
}

const APPUP_SHAPE: &str = "an appup.toml: application, version, [[up]] tables with from and instructions, [[down]] tables with to and instructions";

impl Appup {
    /// Parses an `appup.toml` text; `file` names it in errors.
    ///
    /// Besides syntax, checks what needs no release: duplicate entries and instructions,
    /// anything after `restart_node`, and `depends_on` cycles (see [`crate::validate`]).
    pub fn parse(text: &str, file: &str) -> Result<Appup, Errors> {
        let src = Source::new(text, file);
        let raw: RawAppup = toml::from_str(text).map_err(|e| syntax(&src, &e, APPUP_SHAPE))?;
        let mut errs = Vec::new();
        let version = parse_version(&src, &raw.version, "application version", &mut errs);
        let app = raw.application.get_ref().clone();
        let entries = |raws: Vec<(Spanned<String>, Vec<RawInstruction>, Pos)>,
                       errs: &mut Vec<Error>| {
            let mut out = Vec::new();
            for (v, instrs, pos) in raws {
                let versions = match VersionMatch::parse(v.get_ref()) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        errs.push(Error::InvalidValue {
                            at: src.loc(&v.span()),
                            what: "version".into(),
                            found: v.get_ref().clone(),
                            expected: format!(
                                "an exact version like 0.1.0 or a requirement like \">=0.1.0, <0.2.0\" ({e})"
                            ),
                        });
                        None
                    }
                };
                let mut instructions = Vec::new();
                for r in &instrs {
                    match decode(&src, r, &app) {
                        Ok(i) => instructions.push(i),
                        Err(e) => errs.push(e),
                    }
                }
                if let Some(versions) = versions {
                    out.push(Entry {
                        versions,
                        instructions,
                        pos,
                    });
                }
            }
            out
        };
        let ups = raw
            .up
            .into_iter()
            .map(|u| {
                let pos = src.pos(&u.span());
                let u = u.into_inner();
                (u.from, u.instructions, pos)
            })
            .collect();
        let up = entries(ups, &mut errs);
        let downs = raw
            .down
            .into_iter()
            .map(|d| {
                let pos = src.pos(&d.span());
                let d = d.into_inner();
                (d.to, d.instructions, pos)
            })
            .collect();
        let down = entries(downs, &mut errs);
        if app.trim().is_empty() {
            errs.push(Error::InvalidValue {
                at: src.loc(&raw.application.span()),
                what: "application".into(),
                found: app.clone(),
                expected: "an application name".into(),
            });
        }
        let appup = version.map(|version| Appup {
            file: file.to_string(),
            application: app,
            version,
            up,
            down,
        });
        match appup {
            Some(a) if errs.is_empty() => {
                crate::validate::check_structure(&a).into_result()?;
                Ok(a)
            }
            _ => Err(Errors(errs)),
        }
    }

    /// The section for `direction`.
    pub fn section(&self, direction: Direction) -> &[Entry] {
        match direction {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        }
    }

    /// The first entry of `direction` matching the other side's version `other`
    /// (for up: the version upgraded from; for down: the version downgraded to).
    pub fn entry(&self, direction: Direction, other: &Version) -> Option<&Entry> {
        self.section(direction)
            .iter()
            .find(|e| e.versions.matches(other))
    }

    /// The appup as `appup.toml` text; parsing it gives back an equal appup.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "application = {}\n",
            toml::Value::String(self.application.clone())
        ));
        out.push_str(&format!("version = \"{}\"\n", self.version));
        for (name, key, entries) in [("up", "from", &self.up), ("down", "to", &self.down)] {
            for e in entries {
                out.push_str(&format!("\n[[{name}]]\n"));
                out.push_str(&format!(
                    "{key} = {}\n",
                    toml::Value::String(e.versions.to_string())
                ));
                if e.instructions.is_empty() {
                    out.push_str("instructions = []\n");
                } else {
                    out.push_str("instructions = [\n");
                    for i in &e.instructions {
                        out.push_str("  ");
                        out.push_str(&inline_table(&i.instruction.to_table()));
                        out.push_str(",\n");
                    }
                    out.push_str("]\n");
                }
            }
        }
        out
    }
}

/// Formats a table as a one-line TOML inline table, keys in the table's order with the
/// instruction tag first.
pub(crate) fn inline_table(t: &toml::Table) -> String {
    let mut parts = Vec::new();
    let tag = t
        .keys()
        .find(|k| crate::instruction::TAGS.contains(&k.as_str()));
    let mut keys: Vec<&String> = tag.into_iter().collect();
    keys.extend(t.keys().filter(|k| Some(*k) != tag));
    for k in keys {
        if let Some(v) = t.get(k) {
            parts.push(format!("{} = {}", key(k), v));
        }
    }
    if parts.is_empty() {
        "{}".into()
    } else {
        format!("{{ {} }}", parts.join(", "))
    }
}

fn key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}
