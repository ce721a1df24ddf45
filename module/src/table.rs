//! Node-owned tables, as module code sees them through [`Context`].
//!
//! A table is an ordered map of byte keys to byte values that belongs to the node, not to a
//! process state (Erlang's ETS). It has an owner, the process that created it: only the owner
//! writes to a protected table (the default), any process writes to a public one, every
//! process reads. When the owner exits, the table is deleted, unless the owner named an heir
//! ([`Context::table_set_heir`]) that is alive: the heir then owns it and gets the message the
//! owner gave. Upgrades, downgrades and rollbacks never read or copy a table, so a process
//! whose data lives in one upgrades in the time its small state takes.
//!
//! Values are read and written whole under the table's lock: a reader sees a value as some
//! write left it, never a torn one. Typed helpers ([`Context::table_put`],
//! [`Context::table_get`]) encode keys and values with the module codec; counters
//! ([`Context::table_update_counter`]) are stored as the decimal text of an i64.

use crate::abi::{STATUS_ERROR, STATUS_OK, Sink, Slice, table_flags, table_status};
use crate::codec;
use crate::context::Context;
use crate::types::{Pid, TableId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// One row of a table: key bytes and value bytes.
pub type Row = (Vec<u8>, Vec<u8>);

/// Why a table operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableError {
    /// No such table: never created, or deleted (its owner exited and no heir took it).
    NoTable(TableId),
    /// No table of that name (`table_open` without `create`).
    NoName(String),
    /// Only the table's owner may do that.
    NotOwner(TableId),
    /// A table of that name exists already (exclusive create).
    Exists(String),
    /// The value at the key is not the decimal text of an i64.
    NotInteger,
    /// The counter would overflow an i64.
    Overflow,
    /// A transform failed on a row; no value changed.
    Transform(String),
    /// The heir named is not alive, or the caller is exiting.
    NoProc(Pid),
    /// A malformed argument (an empty or non-UTF-8 name), with the runtime's text.
    BadArg(String),
    /// A key or value could not be encoded or decoded.
    Codec(String),
    /// The runtime answered with a status this module does not know.
    Unknown(i32),
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableError::NoTable(table) => write!(f, "no such table {table}"),
            TableError::NoName(name) => write!(f, "no table named {name:?}"),
            TableError::NotOwner(table) => write!(f, "not the owner of {table}"),
            TableError::Exists(name) => write!(f, "a table named {name:?} exists already"),
            TableError::NotInteger => f.write_str("the value is not an integer"),
            TableError::Overflow => f.write_str("the counter would overflow"),
            TableError::Transform(why) => write!(f, "transform failed, no value changed: {why}"),
            TableError::NoProc(pid) => write!(f, "no such process {pid}"),
            TableError::BadArg(why) => write!(f, "bad argument: {why}"),
            TableError::Codec(why) => write!(f, "codec: {why}"),
            TableError::Unknown(code) => write!(f, "unknown table status {code}"),
        }
    }
}

impl std::error::Error for TableError {}

fn status_result(rc: i32, table: TableId) -> Result<(), TableError> {
    match rc {
        table_status::OK => Ok(()),
        table_status::NO_TABLE => Err(TableError::NoTable(table)),
        table_status::NOT_OWNER => Err(TableError::NotOwner(table)),
        table_status::NOT_INTEGER => Err(TableError::NotInteger),
        table_status::OVERFLOW => Err(TableError::Overflow),
        table_status::NO_PROC => Err(TableError::NoProc(Pid(0))),
        other => Err(TableError::Unknown(other)),
    }
}

/// How [`Context::table_open`] opens a table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableOptions {
    /// Create the table, owned by the calling process, if no table has the name.
    pub create: bool,
    /// With `create`: fail with [`TableError::Exists`] if the name is taken.
    pub exclusive: bool,
    /// With `create`: any process may write (default: only the owner).
    pub public: bool,
}

impl TableOptions {
    /// Open an existing table or create it (protected).
    pub fn create() -> TableOptions {
        TableOptions {
            create: true,
            ..TableOptions::default()
        }
    }

    /// Open an existing table only.
    pub fn existing() -> TableOptions {
        TableOptions::default()
    }

    fn flags(self) -> u32 {
        let mut flags = 0;
        if self.create {
            flags |= table_flags::CREATE;
        }
        if self.exclusive {
            flags |= table_flags::EXCLUSIVE;
        }
        if self.public {
            flags |= table_flags::PUBLIC;
        }
        flags
    }
}

/// Rows of a table in key order, fetched from the node in batches (see
/// [`Context::table_rows`]). Each row is read under the table's lock; rows written between
/// two batches are seen if their key comes after the last row returned.
pub struct TableRows<'c, 'a> {
    ctx: &'c Context<'a>,
    table: TableId,
    prefix: Vec<u8>,
    /// The last key returned (the next batch starts after it).
    last: Option<Vec<u8>>,
    batch: std::vec::IntoIter<Row>,
    done: bool,
    error: Option<TableError>,
}

impl TableRows<'_, '_> {
    /// The error that ended the iteration early, if any (the table was deleted meanwhile).
    pub fn error(&self) -> Option<&TableError> {
        self.error.as_ref()
    }
}

/// Rows per batch of [`TableRows`].
const BATCH: u32 = 256;

impl Iterator for TableRows<'_, '_> {
    type Item = Row;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((key, value)) = self.batch.next() {
                self.last = Some(key.clone());
                return Some((key, value));
            }
            if self.done {
                return None;
            }
            let (from, exclusive) = match &self.last {
                Some(last) => (last.as_slice(), true),
                None => (self.prefix.as_slice(), false),
            };
            match self
                .ctx
                .table_scan(self.table, from, exclusive, &self.prefix, BATCH)
            {
                Ok(rows) => {
                    self.done = rows.len() < BATCH as usize;
                    self.batch = rows.into_iter();
                }
                Err(e) => {
                    self.error = Some(e);
                    self.done = true;
                }
            }
        }
    }
}

/// Decodes `table_scan`'s output: (u32 LE length, bytes) twice per row.
fn decode_rows(mut bytes: &[u8]) -> Option<Vec<Row>> {
    fn take<'b>(bytes: &mut &'b [u8]) -> Option<&'b [u8]> {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (field, rest) = rest.split_at(len);
        *bytes = rest;
        Some(field)
    }
    let mut rows = Vec::new();
    while !bytes.is_empty() {
        let key = take(&mut bytes)?.to_vec();
        let value = take(&mut bytes)?.to_vec();
        rows.push((key, value));
    }
    Some(rows)
}

/// Calls the module's transform closure for the runtime; catches its panics.
unsafe extern "C" fn transform_trampoline<F>(
    user: *const c_void,
    key: Slice,
    value: Slice,
    out: *const Sink,
) -> i32
where
    F: Fn(&[u8], &[u8]) -> Result<Vec<u8>, String> + Sync,
{
    let put = |bytes: &[u8]| {
        if !out.is_null() {
            // SAFETY: the runtime's sink is valid for the call.
            unsafe { (*out).put(bytes) }
        }
    };
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `user` is the `&F` given to `table_transform`, alive for its whole call;
        // the slices are valid for this call.
        let (f, key, value) = unsafe { (&*(user as *const F), key.as_bytes(), value.as_bytes()) };
        f(key, value)
    }));
    match result {
        Ok(Ok(new)) => {
            put(&new);
            STATUS_OK
        }
        Ok(Err(why)) => {
            put(why.as_bytes());
            STATUS_ERROR
        }
        Err(_) => {
            put(b"the transform panicked");
            STATUS_ERROR
        }
    }
}

impl<'a> Context<'a> {
    /// Opens the node table called `name`, creating it (owned by this process) when
    /// `options.create` is set and no table has that name.
    pub fn table_open(&self, name: &str, options: TableOptions) -> Result<TableId, TableError> {
        let mut out = Vec::new();
        let sink = Sink::for_vec(&mut out);
        // SAFETY: the host table is valid for the callback; slices and sink outlive the call.
        let id = unsafe {
            (self.host.table_open)(
                self.host.ctx,
                Slice::new(name.as_bytes()),
                options.flags(),
                &sink,
            )
        };
        if id != 0 {
            return Ok(TableId(id));
        }
        let (status, text) = match out.split_first_chunk::<4>() {
            Some((code, text)) => (
                i32::from_le_bytes(*code),
                String::from_utf8_lossy(text).into_owned(),
            ),
            None => (table_status::BAD_ARG, "no answer".to_string()),
        };
        Err(match status {
            table_status::NO_TABLE => TableError::NoName(name.to_string()),
            table_status::EXISTS => TableError::Exists(name.to_string()),
            table_status::NO_PROC => TableError::NoProc(self.self_pid()),
            table_status::BAD_ARG => TableError::BadArg(text),
            other => TableError::Unknown(other),
        })
    }

    /// Inserts `key` with `value`, replacing any value it had.
    pub fn table_insert(&self, table: TableId, key: &[u8], value: &[u8]) -> Result<(), TableError> {
        // SAFETY: as in `table_open`.
        let rc = unsafe {
            (self.host.table_insert)(self.host.ctx, table.0, Slice::new(key), Slice::new(value))
        };
        status_result(rc, table)
    }

    /// The value of `key`, or None.
    pub fn table_lookup(&self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        let mut out = Vec::new();
        let sink = Sink::for_vec(&mut out);
        // SAFETY: as in `table_open`.
        let rc =
            unsafe { (self.host.table_lookup)(self.host.ctx, table.0, Slice::new(key), &sink) };
        match rc {
            table_status::NOT_FOUND => Ok(None),
            rc => status_result(rc, table).map(|()| Some(out)),
        }
    }

    /// Removes `key`; true if it was there.
    pub fn table_remove(&self, table: TableId, key: &[u8]) -> Result<bool, TableError> {
        // SAFETY: as in `table_open`.
        let rc = unsafe { (self.host.table_remove)(self.host.ctx, table.0, Slice::new(key)) };
        match rc {
            table_status::NOT_FOUND => Ok(false),
            rc => status_result(rc, table).map(|()| true),
        }
    }

    /// Adds `incr` to the counter at `key` (`default` when the key is absent) and returns the
    /// new value. A counter is stored as the decimal text of an i64 (what Redis's INCR reads
    /// and writes), so any value of that shape counts.
    pub fn table_update_counter(
        &self,
        table: TableId,
        key: &[u8],
        incr: i64,
        default: i64,
    ) -> Result<i64, TableError> {
        let mut result = 0i64;
        // SAFETY: as in `table_open`; `result` outlives the call.
        let rc = unsafe {
            (self.host.table_update_counter)(
                self.host.ctx,
                table.0,
                Slice::new(key),
                incr,
                default,
                &mut result,
            )
        };
        status_result(rc, table).map(|()| result)
    }

    /// Up to `limit` rows in key order whose key starts with `prefix`, from `from` on
    /// (after it when `exclusive`).
    pub fn table_scan(
        &self,
        table: TableId,
        from: &[u8],
        exclusive: bool,
        prefix: &[u8],
        limit: u32,
    ) -> Result<Vec<Row>, TableError> {
        let mut out = Vec::new();
        let sink = Sink::for_vec(&mut out);
        // SAFETY: as in `table_open`.
        let rc = unsafe {
            (self.host.table_scan)(
                self.host.ctx,
                table.0,
                Slice::new(from),
                u32::from(exclusive),
                Slice::new(prefix),
                limit,
                &sink,
            )
        };
        status_result(rc, table)?;
        decode_rows(&out).ok_or_else(|| TableError::Codec("malformed scan answer".into()))
    }

    /// Every row whose key starts with `prefix` (all rows with an empty prefix), in key
    /// order, fetched in batches.
    pub fn table_rows<'c>(&'c self, table: TableId, prefix: &[u8]) -> TableRows<'c, 'a> {
        TableRows {
            ctx: self,
            table,
            prefix: prefix.to_vec(),
            last: None,
            batch: Vec::new().into_iter(),
            done: false,
            error: None,
        }
    }

    /// Number of rows.
    pub fn table_size(&self, table: TableId) -> Result<u64, TableError> {
        let mut size = 0u64;
        // SAFETY: as in `table_open`; `size` outlives the call.
        let rc = unsafe { (self.host.table_size)(self.host.ctx, table.0, &mut size) };
        status_result(rc, table).map(|()| size)
    }

    /// Deletes the table (owner only).
    pub fn table_delete(&self, table: TableId) -> Result<(), TableError> {
        // SAFETY: as in `table_open`.
        let rc = unsafe { (self.host.table_delete)(self.host.ctx, table.0) };
        status_result(rc, table)
    }

    /// Names `heir` as the process that takes the table over when this process (its owner)
    /// exits, and the plain message (`Info::Message`, in the heir's `Info` type) it then
    /// gets. `None` removes the heir. If the heir is not alive when the owner exits, the
    /// table is deleted.
    pub fn table_set_heir<M: Serialize>(
        &self,
        table: TableId,
        heir: Option<Pid>,
        msg: &M,
    ) -> Result<(), TableError> {
        let bytes = codec::encode(msg).map_err(|e| TableError::Codec(e.0))?;
        let pid = heir.map_or(0, |p| p.0);
        // SAFETY: as in `table_open`.
        let rc =
            unsafe { (self.host.table_set_heir)(self.host.ctx, table.0, pid, Slice::new(&bytes)) };
        match rc {
            table_status::NO_PROC => Err(TableError::NoProc(heir.unwrap_or(Pid(0)))),
            rc => status_result(rc, table),
        }
    }

    /// Replaces every value of the table with `f(key, value)`: the explicit migration when
    /// the shape of a table's values changes (no code change does it by itself). The node
    /// runs `f` in parallel chunks of `chunk` rows (0: its default) while readers keep seeing
    /// the old values and writers wait, then swaps all new values in at once. All or
    /// nothing: if `f` fails (or panics) on any row, no value changes and the error names
    /// the first failure seen. Returns the number of rows transformed.
    pub fn table_transform<F>(&self, table: TableId, chunk: u32, f: F) -> Result<u64, TableError>
    where
        F: Fn(&[u8], &[u8]) -> Result<Vec<u8>, String> + Sync,
    {
        let mut out = Vec::new();
        let sink = Sink::for_vec(&mut out);
        // SAFETY: as in `table_open`; `f` outlives the call, which is the only place the
        // runtime uses the pointer.
        let rc = unsafe {
            (self.host.table_transform)(
                self.host.ctx,
                table.0,
                chunk,
                transform_trampoline::<F>,
                &f as *const F as *const c_void,
                &sink,
            )
        };
        match rc {
            table_status::FAILED => Err(TableError::Transform(
                String::from_utf8_lossy(&out).into_owned(),
            )),
            rc => {
                status_result(rc, table)?;
                let count = out.first_chunk::<8>().map_or(0, |b| u64::from_le_bytes(*b));
                Ok(count)
            }
        }
    }

    /// Inserts a typed key and value, both encoded with the module codec.
    pub fn table_put<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &self,
        table: TableId,
        key: &K,
        value: &V,
    ) -> Result<(), TableError> {
        let key = codec::encode(key).map_err(|e| TableError::Codec(e.0))?;
        let value = codec::encode(value).map_err(|e| TableError::Codec(e.0))?;
        self.table_insert(table, &key, &value)
    }

    /// Reads a typed value by typed key (both encoded with the module codec).
    pub fn table_get<K: Serialize + ?Sized, V: DeserializeOwned>(
        &self,
        table: TableId,
        key: &K,
    ) -> Result<Option<V>, TableError> {
        let key = codec::encode(key).map_err(|e| TableError::Codec(e.0))?;
        match self.table_lookup(table, &key)? {
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .map_err(|e| TableError::Codec(e.0)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decode_rows;

    #[test]
    fn scan_rows_decode_and_truncation_is_refused() {
        let mut bytes = Vec::new();
        for (k, v) in [(&b"a"[..], &b"1"[..]), (b"bb", b"")] {
            bytes.extend_from_slice(&(k.len() as u32).to_le_bytes());
            bytes.extend_from_slice(k);
            bytes.extend_from_slice(&(v.len() as u32).to_le_bytes());
            bytes.extend_from_slice(v);
        }
        assert_eq!(
            decode_rows(&bytes),
            Some(vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"bb".to_vec(), vec![])
            ])
        );
        assert_eq!(decode_rows(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_rows(&[1, 0, 0]), None);
    }
}
