//! Chain search: which releases have a direct upgrade/downgrade path between them, and the
//! shortest chain of direct paths from one release to another.

use crate::appup::{Appup, Direction, Entry};
use crate::release::Release;
use semver::Version;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// The status of a release on a node (as OTP's release_handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Unpacked, never installed (or installed and left).
    Unpacked,
    /// Running now, not yet made permanent.
    Current,
    /// Running and booted on node restart.
    Permanent,
    /// Was permanent before the current permanent one.
    Old,
}

impl fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReleaseStatus::Unpacked => "unpacked",
            ReleaseStatus::Current => "current",
            ReleaseStatus::Permanent => "permanent",
            ReleaseStatus::Old => "old",
        })
    }
}

/// A release known to the node: its manifest, its status and the appups shipped with it
/// (one per application version of the release).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnownRelease {
    /// The manifest.
    pub release: Release,
    /// Its status.
    pub status: ReleaseStatus,
    /// Its appups (the newer side of every transition involving this release).
    pub appups: Vec<Appup>,
}

/// How one application changes on a direct path between two releases.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AppChange<'a> {
    /// Version changed: the appup entry that says how.
    Changed {
        /// The appup (of the newer release).
        appup: &'a Appup,
        /// The matching up or down entry.
        entry: &'a Entry,
    },
    /// Only in the target release.
    Added(&'a str),
    /// Only in the source release.
    Removed(&'a str),
}

/// The releases and appups the search works on, one per version.
pub(crate) struct Graph<'a> {
    pub(crate) nodes: BTreeMap<Version, (&'a Release, &'a [Appup])>,
}

impl<'a> Graph<'a> {
    pub(crate) fn new(extra: &[&'a Release], known: &'a [KnownRelease]) -> Graph<'a> {
        let mut nodes = BTreeMap::new();
        for k in known {
            nodes
                .entry(k.release.version.clone())
                .or_insert((&k.release, k.appups.as_slice()));
        }
        for r in extra {
            let appups = nodes.get(&r.version).map(|(_, a)| *a).unwrap_or(&[][..]);
            nodes.insert(r.version.clone(), (*r, appups));
        }
        Graph { nodes }
    }

    /// The application changes of the direct path `from` → `to`, or `None` when an appup
    /// or a matching entry is missing.
    pub(crate) fn direct(&self, from: &Version, to: &Version) -> Option<Vec<AppChange<'a>>> {
        let (a, _) = self.nodes.get(from)?;
        let (b, _) = self.nodes.get(to)?;
        direct(a, b, self.appups_of(from, to))
    }

    fn appups_of(&self, from: &Version, to: &Version) -> &'a [Appup] {
        let newer = if to > from { to } else { from };
        self.nodes.get(newer).map(|(_, a)| *a).unwrap_or(&[])
    }

    /// Shortest chain of versions from `from` to `to` (both included); ties broken by
    /// visiting neighbours in ascending version order.
    pub(crate) fn chain(&self, from: &Version, to: &Version) -> Option<Vec<Version>> {
        let mut parent: BTreeMap<&Version, &Version> = BTreeMap::new();
        let mut queue = VecDeque::new();
        let start = self.nodes.get_key_value(from)?.0;
        queue.push_back(start);
        while let Some(v) = queue.pop_front() {
            if v == to {
                let mut chain = vec![v.clone()];
                let mut cur = v;
                while let Some(p) = parent.get(cur) {
                    chain.push((*p).clone());
                    cur = p;
                }
                chain.reverse();
                return Some(chain);
            }
            for w in self.nodes.keys() {
                if w == start || w == v || parent.contains_key(w) {
                    continue;
                }
                if self.direct(v, w).is_some() {
                    parent.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        None
    }
}

/// The application changes from release `a` to release `b` using the newer release's
/// appups; `None` when a changed application has no appup entry for the change.
pub(crate) fn direct<'a>(
    a: &'a Release,
    b: &'a Release,
    newer_appups: &'a [Appup],
) -> Option<Vec<AppChange<'a>>> {
    if a.name != b.name || a.version == b.version {
        return None;
    }
    let up = b.version > a.version;
    let (older, newer) = if up { (a, b) } else { (b, a) };
    let dir = if up { Direction::Up } else { Direction::Down };
    let mut out = Vec::new();
    for nb in &b.applications {
        match a.application(&nb.name) {
            None => out.push(AppChange::Added(&nb.name)),
            Some(na) if na.version == nb.version => {}
            Some(_) => {
                let (Some(new_app), Some(old_app)) =
                    (newer.application(&nb.name), older.application(&nb.name))
                else {
                    return None;
                };
                let appup = newer_appups
                    .iter()
                    .find(|u| u.application == nb.name && u.version == new_app.version)?;
                let entry = appup.entry(dir, &old_app.version)?;
                out.push(AppChange::Changed { appup, entry });
            }
        }
    }
    for na in &a.applications {
        if b.application(&na.name).is_none() {
            out.push(AppChange::Removed(&na.name));
        }
    }
    Some(out)
}
