//! Tables owned by the node (Erlang's ETS): ordered byte-keyed maps that outlive any code
//! change.
//!
//! # Model
//! - A table has a name (unique in the node while it lives), an id ([`TableId`], never
//!   reused), an owner pid and, optionally, an heir. Module code reaches tables through
//!   `Context::table_*`; the node's own code through [`Tables`] ([`crate::Node::tables`]).
//! - Data: a `BTreeMap<Vec<u8>, Vec<u8>>` behind a `parking_lot` read-write lock. Readers
//!   run concurrently; each read copies the value whole under the read lock and each write
//!   replaces it whole under the write lock, so no reader ever sees a torn value. Key order
//!   gives ordered scans and prefix scans.
//! - Access: every process reads; only the owner writes to a *protected* table (the default),
//!   any process to a *public* one. Only the owner deletes a table or names its heir.
//! - Owner exit ([`Tables::owner_exited`], called by the node as the process finishes
//!   exiting, whatever the reason): each table it owns passes to its heir if the heir is
//!   alive, which then gets the owner's heir message as a plain info message; otherwise the
//!   table is deleted.
//! - Code changes: tables are not process state. No upgrade, downgrade or rollback reads,
//!   copies or migrates them; a process keeps its [`TableId`] (a number) in its state. A change
//!   of the values' shape is explicit: [`Tables::transform`] (`Context::table_transform`)
//!   computes every new value in parallel chunks while readers see the old ones, then swaps
//!   them all in at once, or changes nothing if any row fails.
//!
//! # Locks
//! The registry lock (names, ids, owners) is taken briefly by every operation to find the
//! table (a read lock, except to create, delete or change owners); a table's data lock is
//! taken after it, never the other way round.

use crate::node::NodeInner;
use crate::process::{InfoMsg, Payload, Process};
use parking_lot::{Mutex, RwLock, RwLockUpgradableReadGuard};
use relup_module::abi::table_status;
use relup_module::{Pid, TableId};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Why a table operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// No such table (never created, or deleted).
    #[error("no such table {0}")]
    NoTable(TableId),
    /// No table has that name.
    #[error("no table named {0:?}")]
    NoName(String),
    /// Only the owner may do that.
    #[error("{pid} is not the owner of {table}")]
    NotOwner {
        /// The table.
        table: TableId,
        /// Who asked.
        pid: Pid,
    },
    /// The name is taken (exclusive create).
    #[error("a table named {0:?} exists already")]
    Exists(String),
    /// The value is not the decimal text of an i64 (counters).
    #[error("the value at the key is not an integer")]
    NotInteger,
    /// The counter would overflow.
    #[error("the counter would overflow an i64")]
    Overflow,
    /// A transform failed on a row; no value changed.
    #[error("transform of {table} failed on a row, no value changed: {reason}")]
    Transform {
        /// The table.
        table: TableId,
        /// The first failure seen.
        reason: String,
    },
    /// The process is not alive (an heir, or a creator that is exiting).
    #[error("no such process {0}")]
    NoProc(Pid),
    /// A bad name.
    #[error("bad table name: {0}")]
    BadName(String),
    /// A table handed over by another node does not read (see [`crate::handover`]).
    #[error("table {name:?} handed over by the old node: {reason}")]
    HandedOver {
        /// Its name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

impl TableError {
    /// The ABI status for this error ([`table_status`]).
    pub fn status(&self) -> i32 {
        match self {
            TableError::NoTable(_) | TableError::NoName(_) => table_status::NO_TABLE,
            TableError::NotOwner { .. } => table_status::NOT_OWNER,
            TableError::Exists(_) => table_status::EXISTS,
            TableError::NotInteger => table_status::NOT_INTEGER,
            TableError::Overflow => table_status::OVERFLOW,
            TableError::Transform { .. } => table_status::FAILED,
            TableError::NoProc(_) => table_status::NO_PROC,
            TableError::BadName(_) | TableError::HandedOver { .. } => table_status::BAD_ARG,
        }
    }
}

/// Who may write to a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Access {
    /// Only the owner writes; everyone reads.
    Protected,
    /// Everyone reads and writes.
    Public,
}

/// A snapshot of one table, for status displays and tests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableInfo {
    /// Its id.
    pub id: TableId,
    /// Its name.
    pub name: String,
    /// Its owner.
    pub owner: Pid,
    /// Its heir, if any.
    pub heir: Option<Pid>,
    /// Who may write.
    pub access: Access,
    /// Number of rows.
    pub size: usize,
}

/// One row set: key bytes to value bytes, in key order.
pub type Rows = BTreeMap<Vec<u8>, Vec<u8>>;

/// Who owns a table and who inherits it.
struct Ownership {
    owner: Pid,
    /// The heir and the message it gets when it inherits.
    heir: Option<(Pid, Vec<u8>)>,
}

/// One table.
struct Table {
    id: TableId,
    name: String,
    access: Access,
    /// Changed only under the registry's write lock (so the owner index stays right).
    ownership: Mutex<Ownership>,
    rows: RwLock<Rows>,
}

impl Table {
    fn may_write(&self, pid: Option<Pid>) -> Result<(), TableError> {
        match pid {
            None => Ok(()),
            Some(_) if self.access == Access::Public => Ok(()),
            Some(pid) if self.ownership.lock().owner == pid => Ok(()),
            Some(pid) => Err(TableError::NotOwner {
                table: self.id,
                pid,
            }),
        }
    }
}

#[derive(Default)]
struct Registry {
    by_name: HashMap<String, TableId>,
    by_id: HashMap<TableId, Arc<Table>>,
    by_owner: HashMap<Pid, Vec<TableId>>,
}

impl Registry {
    fn remove(&mut self, id: TableId) -> Option<Arc<Table>> {
        let table = self.by_id.remove(&id)?;
        if self.by_name.get(&table.name) == Some(&id) {
            self.by_name.remove(&table.name);
        }
        let owner = table.ownership.lock().owner;
        self.unindex(owner, id);
        Some(table)
    }

    fn unindex(&mut self, owner: Pid, id: TableId) {
        if let Some(ids) = self.by_owner.get_mut(&owner) {
            ids.retain(|t| *t != id);
            if ids.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
    }
}

/// The node's tables.
pub struct Tables {
    registry: RwLock<Registry>,
    next_id: AtomicU64,
    /// Number of live tables: a process exit looks no further when it is 0.
    live: AtomicUsize,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for Tables {
    fn default() -> Self {
        Tables::new()
    }
}

/// Parses a counter value: the decimal text of an i64.
fn counter_value(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// A transform of one row: its key and value to the new value, or why it cannot be done.
pub type TransformRow<'f> = &'f (dyn Fn(&[u8], &[u8]) -> Result<Vec<u8>, String> + Sync);

/// The new values of one chunk of a transform (by chunk index), or the row's failure.
type ChunkResult = (usize, Result<Vec<Vec<u8>>, String>);

/// Rows per chunk of a transform when the caller gives none.
const DEFAULT_CHUNK: usize = 16 * 1024;

impl Tables {
    /// No tables.
    pub fn new() -> Tables {
        Tables {
            registry: RwLock::new(Registry::default()),
            next_id: AtomicU64::new(1),
            live: AtomicUsize::new(0),
        }
    }

    fn table(&self, id: TableId) -> Result<Arc<Table>, TableError> {
        self.registry
            .read()
            .by_id
            .get(&id)
            .cloned()
            .ok_or(TableError::NoTable(id))
    }

    /// The id of the table called `name`.
    pub fn whereis(&self, name: &str) -> Option<TableId> {
        self.registry.read().by_name.get(name).copied()
    }

    /// Opens the table called `name`, or creates it owned by `process` when `create` is set
    /// (refusing an existing name when `exclusive`). A process that has started exiting
    /// creates nothing ([`TableError::NoProc`]).
    pub(crate) fn open(
        &self,
        process: &Arc<Process>,
        name: &str,
        create: bool,
        exclusive: bool,
        access: Access,
    ) -> Result<TableId, TableError> {
        if name.is_empty() {
            return Err(TableError::BadName("empty".into()));
        }
        if !create {
            return self
                .whereis(name)
                .ok_or_else(|| TableError::NoName(name.to_string()));
        }
        let mut registry = self.registry.write();
        if let Some(id) = registry.by_name.get(name) {
            if exclusive {
                return Err(TableError::Exists(name.to_string()));
            }
            return Ok(*id);
        }
        // Checked under the registry lock: the exit marks the process dead before it takes
        // this lock to free its tables, so either that sees this table or this sees it dead.
        if process.is_dead() {
            return Err(TableError::NoProc(process.pid));
        }
        let id = TableId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let table = Arc::new(Table {
            id,
            name: name.to_string(),
            access,
            ownership: Mutex::new(Ownership {
                owner: process.pid,
                heir: None,
            }),
            rows: RwLock::new(Rows::new()),
        });
        registry.by_name.insert(name.to_string(), id);
        registry.by_id.insert(id, table);
        registry.by_owner.entry(process.pid).or_default().push(id);
        self.live.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// Inserts or replaces a row. `caller` None is the node itself (always allowed).
    pub fn insert(
        &self,
        caller: Option<Pid>,
        id: TableId,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), TableError> {
        let table = self.table(id)?;
        table.may_write(caller)?;
        let mut rows = table.rows.write();
        match rows.get_mut(key) {
            Some(old) => {
                old.clear();
                old.extend_from_slice(value);
            }
            None => {
                rows.insert(key.to_vec(), value.to_vec());
            }
        }
        Ok(())
    }

    /// Runs `read` on the value of `key` (None when absent) under the table's read lock.
    pub fn lookup_with<R>(
        &self,
        id: TableId,
        key: &[u8],
        read: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, TableError> {
        let table = self.table(id)?;
        let rows = table.rows.read();
        Ok(read(rows.get(key).map(Vec::as_slice)))
    }

    /// The value of `key`, copied.
    pub fn lookup(&self, id: TableId, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        self.lookup_with(id, key, |v| v.map(<[u8]>::to_vec))
    }

    /// Removes a row; true if it was there.
    pub fn remove(&self, caller: Option<Pid>, id: TableId, key: &[u8]) -> Result<bool, TableError> {
        let table = self.table(id)?;
        table.may_write(caller)?;
        Ok(table.rows.write().remove(key).is_some())
    }

    /// Adds `incr` to the counter at `key` (`default` when absent; stored as decimal text)
    /// and returns the new value.
    pub fn update_counter(
        &self,
        caller: Option<Pid>,
        id: TableId,
        key: &[u8],
        incr: i64,
        default: i64,
    ) -> Result<i64, TableError> {
        let table = self.table(id)?;
        table.may_write(caller)?;
        let mut rows = table.rows.write();
        // In place when the row exists: one tree descent, no copy of the key, the value's
        // buffer reused (an insert would copy the key and descend again).
        if let Some(value) = rows.get_mut(key) {
            let current = counter_value(value).ok_or(TableError::NotInteger)?;
            let next = current.checked_add(incr).ok_or(TableError::Overflow)?;
            value.clear();
            value.extend_from_slice(next.to_string().as_bytes());
            return Ok(next);
        }
        let next = default.checked_add(incr).ok_or(TableError::Overflow)?;
        rows.insert(key.to_vec(), next.to_string().into_bytes());
        Ok(next)
    }

    /// Calls `row` on up to `limit` rows in key order whose key starts with `prefix`, from
    /// `from` on (after it when `exclusive`), under one read lock.
    pub fn scan_with(
        &self,
        id: TableId,
        from: &[u8],
        exclusive: bool,
        prefix: &[u8],
        limit: usize,
        mut row: impl FnMut(&[u8], &[u8]),
    ) -> Result<usize, TableError> {
        let table = self.table(id)?;
        let rows = table.rows.read();
        // Rows before the prefix cannot match: start at the later of `from` and `prefix`.
        let start = if from < prefix {
            Bound::Included(prefix)
        } else if exclusive {
            Bound::Excluded(from)
        } else {
            Bound::Included(from)
        };
        let mut seen = 0;
        for (key, value) in rows.range::<[u8], _>((start, Bound::Unbounded)) {
            if seen >= limit || !key.starts_with(prefix) {
                break;
            }
            row(key, value);
            seen += 1;
        }
        Ok(seen)
    }

    /// Every row, copied (in key order).
    pub fn rows(&self, id: TableId) -> Result<Rows, TableError> {
        Ok(self.table(id)?.rows.read().clone())
    }

    /// Number of rows.
    pub fn size(&self, id: TableId) -> Result<usize, TableError> {
        Ok(self.table(id)?.rows.read().len())
    }

    /// What the node knows of a table.
    pub fn info(&self, id: TableId) -> Result<TableInfo, TableError> {
        let table = self.table(id)?;
        let (owner, heir) = {
            let ownership = table.ownership.lock();
            (ownership.owner, ownership.heir.as_ref().map(|(p, _)| *p))
        };
        Ok(TableInfo {
            id,
            name: table.name.clone(),
            owner,
            heir,
            access: table.access,
            size: table.rows.read().len(),
        })
    }

    /// Every live table, by id.
    pub fn list(&self) -> Vec<TableInfo> {
        let mut ids: Vec<TableId> = self.registry.read().by_id.keys().copied().collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|id| self.info(id).ok())
            .collect()
    }

    /// Every table with its rows, and the next id (for a handover: the processes that write
    /// are suspended meanwhile).
    pub(crate) fn export(&self) -> (Vec<crate::handover::image::TableImage>, u64) {
        use serde_bytes::ByteBuf;
        let registry = self.registry.read();
        let mut ids: Vec<&TableId> = registry.by_id.keys().collect();
        ids.sort();
        let images = ids
            .into_iter()
            .filter_map(|id| registry.by_id.get(id))
            .map(|table| {
                let ownership = table.ownership.lock();
                crate::handover::image::TableImage {
                    id: table.id.0,
                    name: table.name.clone(),
                    public: table.access == Access::Public,
                    owner: ownership.owner.0,
                    heir: ownership
                        .heir
                        .as_ref()
                        .map(|(pid, msg)| (pid.0, ByteBuf::from(msg.clone()))),
                    count: table.rows.read().len() as u64,
                    rows: {
                        let rows = table.rows.read();
                        let bytes: usize = rows.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
                        let mut flat = Vec::with_capacity(bytes);
                        for (k, v) in rows.iter() {
                            crate::handover::image::put_row(&mut flat, k, v);
                        }
                        flat
                    },
                }
            })
            .collect();
        (images, self.next_id.load(Ordering::SeqCst))
    }

    /// Puts handed-over tables in under their ids, names and owners; ids go on from
    /// `next_id`. A name already taken here is refused.
    pub(crate) fn import(
        &self,
        images: Vec<crate::handover::image::TableImage>,
        next_id: u64,
    ) -> Result<(), TableError> {
        self.next_id.fetch_max(next_id, Ordering::SeqCst);
        let mut registry = self.registry.write();
        for image in images {
            if registry.by_name.contains_key(&image.name) {
                return Err(TableError::Exists(image.name));
            }
            let rows = crate::handover::image::rows(&image.rows).map_err(|reason| {
                TableError::HandedOver {
                    name: image.name.clone(),
                    reason,
                }
            })?;
            let id = TableId(image.id);
            let owner = Pid(image.owner);
            let table = Arc::new(Table {
                id,
                name: image.name.clone(),
                access: if image.public {
                    Access::Public
                } else {
                    Access::Protected
                },
                ownership: Mutex::new(Ownership {
                    owner,
                    heir: image.heir.map(|(pid, msg)| (Pid(pid), msg.into_vec())),
                }),
                rows: RwLock::new(rows.into_iter().collect()),
            });
            registry.by_name.insert(image.name, id);
            registry.by_id.insert(id, table);
            registry.by_owner.entry(owner).or_default().push(id);
            self.live.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Deletes a table (its owner, or the node with `caller` None).
    pub fn delete(&self, caller: Option<Pid>, id: TableId) -> Result<(), TableError> {
        let mut registry = self.registry.write();
        let table = registry.by_id.get(&id).ok_or(TableError::NoTable(id))?;
        if let Some(pid) = caller
            && table.ownership.lock().owner != pid
        {
            return Err(TableError::NotOwner { table: id, pid });
        }
        if registry.remove(id).is_some() {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Names the heir of a table (owner only) and the message it gets when it inherits;
    /// `None` removes it.
    pub fn set_heir(
        &self,
        caller: Pid,
        id: TableId,
        heir: Option<(Pid, Vec<u8>)>,
    ) -> Result<(), TableError> {
        let table = self.table(id)?;
        let mut ownership = table.ownership.lock();
        if ownership.owner != caller {
            return Err(TableError::NotOwner {
                table: id,
                pid: caller,
            });
        }
        ownership.heir = heir;
        Ok(())
    }

    /// Replaces every value with `f(key, value)`, all or nothing. The new values are computed
    /// on up to `threads` threads in chunks of `chunk` rows (0: a default) under an
    /// upgradable read lock (readers go on seeing the old values, writers wait), then swapped
    /// in under the write lock. If any row fails, nothing changes and the error carries the
    /// first failure found (in key order). Returns the number of rows.
    pub fn transform(
        &self,
        caller: Option<Pid>,
        id: TableId,
        chunk: usize,
        threads: usize,
        f: TransformRow<'_>,
    ) -> Result<usize, TableError> {
        let table = self.table(id)?;
        table.may_write(caller)?;
        let chunk = if chunk == 0 { DEFAULT_CHUNK } else { chunk };
        let rows = table.rows.upgradable_read();
        let entries: Vec<(&Vec<u8>, &Vec<u8>)> = rows.iter().collect();
        let chunks: Vec<&[(&Vec<u8>, &Vec<u8>)]> = entries.chunks(chunk).collect();
        let next = AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let threads = threads.clamp(1, chunks.len().max(1));
        // Each worker takes the next chunk until none is left or a row failed.
        let work = || {
            let mut done: Vec<ChunkResult> = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(part) = chunks.get(index) else {
                    return done;
                };
                if failed.load(Ordering::Relaxed) {
                    return done;
                }
                let mut values = Vec::with_capacity(part.len());
                let mut error = None;
                for (key, value) in part.iter() {
                    match f(key, value) {
                        Ok(new) => values.push(new),
                        Err(why) => {
                            error = Some(why);
                            break;
                        }
                    }
                }
                match error {
                    Some(why) => {
                        failed.store(true, Ordering::Relaxed);
                        done.push((index, Err(why)));
                    }
                    None => done.push((index, Ok(values))),
                }
            }
        };
        let results: Vec<ChunkResult> = if threads <= 1 {
            work()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
                let mut all = work();
                for handle in handles {
                    match handle.join() {
                        Ok(part) => all.extend(part),
                        Err(_) => all.push((0, Err("a transform thread panicked".into()))),
                    }
                }
                all
            })
        };
        let mut by_chunk: Vec<Option<Vec<Vec<u8>>>> = vec![None; chunks.len()];
        let mut first_error: Option<(usize, String)> = None;
        for (index, result) in results {
            match result {
                Ok(values) => {
                    if let Some(slot) = by_chunk.get_mut(index) {
                        *slot = Some(values);
                    }
                }
                Err(why) => {
                    if first_error.as_ref().is_none_or(|(at, _)| index < *at) {
                        first_error = Some((index, why));
                    }
                }
            }
        }
        if let Some((_, reason)) = first_error {
            return Err(TableError::Transform { table: id, reason });
        }
        if by_chunk.iter().any(Option::is_none) {
            return Err(TableError::Transform {
                table: id,
                reason: "a chunk was not transformed".into(),
            });
        }
        let count = entries.len();
        drop(chunks);
        drop(entries);
        let mut rows = RwLockUpgradableReadGuard::upgrade(rows);
        let mut new_values = by_chunk.into_iter().flatten().flatten();
        for value in rows.values_mut() {
            if let Some(new) = new_values.next() {
                *value = new;
            }
        }
        Ok(count)
    }

    /// The exit hook: each table `pid` owned passes to its heir if the heir is alive (the
    /// heir gets the owner's message), else is deleted. Called by the node once the process
    /// is marked dead.
    pub(crate) fn owner_exited(&self, node: &NodeInner, pid: Pid) {
        if self.live.load(Ordering::Relaxed) == 0 {
            return;
        }
        if !self.registry.read().by_owner.contains_key(&pid) {
            return;
        }
        let mut messages = Vec::new();
        {
            let mut registry = self.registry.write();
            let Some(ids) = registry.by_owner.remove(&pid) else {
                return;
            };
            for id in ids {
                let Some(table) = registry.by_id.get(&id).cloned() else {
                    continue;
                };
                let heir = table.ownership.lock().heir.take();
                // The heir's own exit frees its tables under this lock after marking it
                // dead: an heir seen alive here will see this table when it exits.
                let heir = heir
                    .filter(|(h, _)| *h != pid && node.lookup(*h).is_some_and(|p| !p.is_dead()));
                match heir {
                    Some((heir, message)) => {
                        table.ownership.lock().owner = heir;
                        registry.by_owner.entry(heir).or_default().push(id);
                        messages.push((heir, message));
                    }
                    None => {
                        if registry.remove(id).is_some() {
                            self.live.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        for (heir, message) in messages {
            node.send_info(heir, InfoMsg::Message(Payload::Bytes(message)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_with(tables: &Tables, n: usize) -> (Arc<Process>, TableId) {
        let process = Arc::new(Process::new(Pid(7), None));
        let id = tables
            .open(&process, "t", true, false, Access::Protected)
            .expect("create");
        for i in 0..n {
            tables
                .insert(Some(Pid(7)), id, format!("k{i:04}").as_bytes(), b"v")
                .expect("insert");
        }
        (process, id)
    }

    #[test]
    fn scan_by_prefix_and_from() {
        let tables = Tables::new();
        let (_p, id) = table_with(&tables, 0);
        for key in ["a", "b1", "b2", "b3", "c"] {
            tables
                .insert(None, id, key.as_bytes(), b"x")
                .expect("insert");
        }
        let mut seen = Vec::new();
        let n = tables
            .scan_with(id, b"", false, b"b", 10, |k, _| seen.push(k.to_vec()))
            .expect("scan");
        assert_eq!(n, 3);
        assert_eq!(seen, vec![b"b1".to_vec(), b"b2".to_vec(), b"b3".to_vec()]);
        seen.clear();
        tables
            .scan_with(id, b"b1", true, b"b", 1, |k, _| seen.push(k.to_vec()))
            .expect("scan");
        assert_eq!(seen, vec![b"b2".to_vec()]);
    }

    #[test]
    fn protected_tables_refuse_other_writers_and_counters_check_their_text() {
        let tables = Tables::new();
        let (_p, id) = table_with(&tables, 0);
        assert!(matches!(
            tables.insert(Some(Pid(8)), id, b"k", b"v"),
            Err(TableError::NotOwner { .. })
        ));
        assert_eq!(tables.update_counter(Some(Pid(7)), id, b"n", 5, 10), Ok(15));
        assert_eq!(tables.lookup(id, b"n"), Ok(Some(b"15".to_vec())));
        tables.insert(None, id, b"s", b"abc").expect("insert");
        assert_eq!(
            tables.update_counter(None, id, b"s", 1, 0),
            Err(TableError::NotInteger)
        );
        tables
            .insert(None, id, b"m", i64::MAX.to_string().as_bytes())
            .expect("insert");
        assert_eq!(
            tables.update_counter(None, id, b"m", 1, 0),
            Err(TableError::Overflow)
        );
    }

    #[test]
    fn a_failing_transform_changes_nothing_and_a_good_one_changes_all() {
        let tables = Tables::new();
        let (_p, id) = table_with(&tables, 1000);
        let before = tables.rows(id).expect("rows");
        let failing = |key: &[u8], value: &[u8]| {
            if key == b"k0777" {
                Err("row 777 is bad".to_string())
            } else {
                Ok([value, b"!"].concat())
            }
        };
        let error = tables
            .transform(None, id, 10, 4, &failing)
            .expect_err("must fail");
        assert!(error.to_string().contains("row 777 is bad"), "{error}");
        assert_eq!(tables.rows(id).expect("rows"), before);
        let good = |key: &[u8], _: &[u8]| Ok(key.to_vec());
        assert_eq!(tables.transform(None, id, 7, 3, &good), Ok(1000));
        for (key, value) in tables.rows(id).expect("rows") {
            assert_eq!(key, value);
        }
    }
}
