//! Node-owned tables through real cdylib modules (fixture `tables` 1.0.0 and 2.0.0): contents
//! byte-identical across an upgrade, a downgrade and a rolled-back upgrade; an owner's crash
//! frees its table or hands it to its heir; readers never see a torn value, during writes or
//! during a value-shape transform; a transform that fails on one row changes nothing.

mod common;

use common::{fixtures, node};
use relup_runtime::tables::{Rows, TableError};
use relup_runtime::{
    CodeChange, Direction, ExitReason, Expect, LoadedModule, Node, Pid, SpawnOptions, TableId,
    UpgradeError,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

use relup_fixture_tables_api::{Args, Call, Reply, fill_value};

fn call(node: &Node, pid: Pid, request: &Call) -> Reply {
    node.call(pid, request, T).expect("the fixture answers")
}

fn load(node: &Node) -> (Arc<LoadedModule>, Arc<LoadedModule>) {
    // SAFETY: fixture libraries of this workspace's tests.
    let v1 = unsafe {
        node.code()
            .load_current(&fixtures().tables_v1, &Expect::default())
    }
    .expect("tables 1.0.0 loads");
    // SAFETY: as above.
    let v2 = unsafe { node.code().load(&fixtures().tables_v2, &Expect::default()) }
        .expect("tables 2.0.0 loads");
    (v1, v2)
}

fn spawn(node: &Node, table: Option<&str>, fill: u64) -> Pid {
    let args = Args {
        table: table.map(str::to_string),
        fill,
    };
    node.spawn("tables", &args, SpawnOptions::default())
        .expect("spawn")
}

fn open(node: &Node, pid: Pid, name: &str) -> u64 {
    let request = Call::Open {
        name: name.into(),
        create: true,
        exclusive: false,
        public: false,
    };
    match call(node, pid, &request) {
        Reply::Table(id) => id,
        other => panic!("open {name}: {other:?}"),
    }
}

fn change(module: &Arc<LoadedModule>, direction: Direction) -> CodeChange {
    let extra = relup_module::codec::encode(&()).expect("encode");
    CodeChange::new(module.clone(), direction, extra)
}

fn version(node: &Node, pid: Pid) -> String {
    match call(node, pid, &Call::Version) {
        Reply::Version(v) => v,
        other => panic!("{other:?}"),
    }
}

fn rows(node: &Node, id: u64) -> Rows {
    node.tables().rows(TableId(id)).expect("the table exists")
}

#[test]
fn contents_are_byte_identical_across_upgrade_downgrade_and_a_rolled_back_upgrade() {
    let (node, _logs) = node(2);
    let (v1, v2) = load(&node);
    let a = spawn(&node, Some("a"), 3000);
    let b = spawn(&node, Some("b"), 500);
    let idle = spawn(&node, None, 0);
    let (ta, tb) = (open(&node, a, "a"), open(&node, b, "b"));
    // Binary keys too: every byte value, an empty value, a long one.
    for (key, value) in [
        (vec![0u8, 255, 10, 13], vec![]),
        ((0..=255).collect::<Vec<u8>>(), vec![0u8; 70_000]),
    ] {
        let request = Call::Insert {
            table: ta,
            key,
            value,
        };
        assert_eq!(call(&node, a, &request), Reply::Ok);
    }
    let before = (rows(&node, ta), rows(&node, tb));
    assert_eq!(before.0.len(), 3002);
    assert_eq!(
        before.0.get(b"k000299".as_slice()),
        Some(&fill_value(299)),
        "the fixture filled the table"
    );
    let infos_before = node.tables().list();

    node.upgrade_module(&change(&v2, Direction::Up), T)
        .expect("upgrade");
    assert_eq!(version(&node, a), "2.0.0");
    assert_eq!(
        (rows(&node, ta), rows(&node, tb)),
        before,
        "after the upgrade"
    );
    assert_eq!(
        node.tables().list(),
        infos_before,
        "same ids, names, owners"
    );
    // The new code reads the same bytes through the ABI.
    let request = Call::Lookup {
        table: ta,
        key: b"k000299".to_vec(),
    };
    assert_eq!(
        call(&node, a, &request),
        Reply::Value(Some(fill_value(299)))
    );

    node.upgrade_module(&change(&v1, Direction::Down), T)
        .expect("downgrade");
    assert_eq!(version(&node, a), "1.0.0");
    assert_eq!(
        (rows(&node, ta), rows(&node, tb)),
        before,
        "after the downgrade"
    );

    // One process's code_change fails: the whole upgrade rolls back.
    assert_eq!(call(&node, idle, &Call::FailCodeChange(true)), Reply::Ok);
    let error = node
        .upgrade_module(&change(&v2, Direction::Up), T)
        .expect_err("the upgrade must fail");
    assert!(
        matches!(error, UpgradeError::CodeChange(_)),
        "unexpected error {error:?}"
    );
    for pid in [a, b, idle] {
        assert_eq!(version(&node, pid), "1.0.0", "rolled back");
    }
    assert_eq!(
        (rows(&node, ta), rows(&node, tb)),
        before,
        "after the rollback"
    );
    assert_eq!(node.tables().list(), infos_before);
    // And the tables still work for their owners.
    let request = Call::Counter {
        table: tb,
        key: b"hits".to_vec(),
        incr: 2,
        default: 40,
    };
    assert_eq!(call(&node, b, &request), Reply::Count(42));
    node.shutdown(T);
}

#[test]
fn the_api_through_a_module_scans_counts_and_checks_ownership() {
    let (node, _logs) = node(2);
    load(&node);
    let owner = spawn(&node, Some("t"), 0);
    let other = spawn(&node, None, 0);
    let t = open(&node, owner, "t");
    for key in ["user:1", "user:2", "user:10", "item:1", "zzz"] {
        let request = Call::Insert {
            table: t,
            key: key.into(),
            value: key.to_uppercase().into(),
        };
        assert_eq!(call(&node, owner, &request), Reply::Ok);
    }
    // Another process opens the table by name and reads it, in key order, by prefix.
    let seen = open(&node, other, "t");
    assert_eq!(seen, t, "open by name finds the same table");
    let scan = call(
        &node,
        other,
        &Call::Scan {
            table: t,
            prefix: b"user:".to_vec(),
        },
    );
    let expected: Vec<(Vec<u8>, Vec<u8>)> = ["user:1", "user:10", "user:2"]
        .iter()
        .map(|k| (k.as_bytes().to_vec(), k.to_uppercase().into_bytes()))
        .collect();
    assert_eq!(scan, Reply::Rows(expected));
    // More rows than one batch (256), all in order.
    for i in 0..700u32 {
        let request = Call::Insert {
            table: t,
            key: format!("n:{i:04}").into_bytes(),
            value: i.to_le_bytes().to_vec(),
        };
        assert_eq!(call(&node, owner, &request), Reply::Ok);
    }
    match call(
        &node,
        other,
        &Call::Scan {
            table: t,
            prefix: b"n:".to_vec(),
        },
    ) {
        Reply::Rows(rows) => {
            assert_eq!(rows.len(), 700);
            for (i, (key, value)) in rows.iter().enumerate() {
                assert_eq!(key, format!("n:{i:04}").as_bytes());
                assert_eq!(value, &(i as u32).to_le_bytes());
            }
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        call(&node, other, &Call::Size { table: t }),
        Reply::Size(705)
    );
    // Protected: the other process reads but neither writes nor deletes.
    let write = Call::Insert {
        table: t,
        key: b"x".to_vec(),
        value: b"y".to_vec(),
    };
    assert!(matches!(call(&node, other, &write), Reply::Error(e) if e.contains("not the owner")));
    assert!(matches!(
        call(&node, other, &Call::Delete { table: t }),
        Reply::Error(e) if e.contains("not the owner")
    ));
    // Counters are decimal text; a non-integer value is refused, not overwritten.
    let counter = |key: &str, incr| Call::Counter {
        table: t,
        key: key.into(),
        incr,
        default: 0,
    };
    assert_eq!(call(&node, owner, &counter("c", 5)), Reply::Count(5));
    assert_eq!(call(&node, owner, &counter("c", -7)), Reply::Count(-2));
    let lookup = |key: &str| Call::Lookup {
        table: t,
        key: key.into(),
    };
    assert_eq!(
        call(&node, other, &lookup("c")),
        Reply::Value(Some(b"-2".to_vec()))
    );
    assert!(
        matches!(call(&node, owner, &counter("zzz", 1)), Reply::Error(e) if e.contains("not an integer"))
    );
    assert_eq!(
        call(&node, other, &lookup("zzz")),
        Reply::Value(Some(b"ZZZ".to_vec()))
    );
    // Typed helpers round-trip.
    let typed = Call::Typed {
        table: t,
        key: ("k".into(), 7),
        value: vec!["a".into(), "b".into()],
    };
    assert_eq!(
        call(&node, owner, &typed),
        Reply::Typed(Some(vec!["a".into(), "b".into()]))
    );
    let remove = Call::Remove {
        table: t,
        key: b"zzz".to_vec(),
    };
    assert_eq!(call(&node, owner, &remove), Reply::Removed(true));
    assert_eq!(call(&node, owner, &remove), Reply::Removed(false));
    // Exclusive create of a taken name fails; a public table takes anyone's writes.
    let exclusive = Call::Open {
        name: "t".into(),
        create: true,
        exclusive: true,
        public: false,
    };
    assert!(matches!(call(&node, other, &exclusive), Reply::Error(e) if e.contains("exists")));
    let public = Call::Open {
        name: "pub".into(),
        create: true,
        exclusive: true,
        public: true,
    };
    let Reply::Table(p) = call(&node, owner, &public) else {
        panic!("public table")
    };
    let write = Call::Insert {
        table: p,
        key: b"x".to_vec(),
        value: b"y".to_vec(),
    };
    assert_eq!(call(&node, other, &write), Reply::Ok);
    // The owner deletes; the id is dead for everyone and the name is free.
    assert_eq!(call(&node, owner, &Call::Delete { table: t }), Reply::Ok);
    assert!(
        matches!(call(&node, other, &lookup("c")), Reply::Error(e) if e.contains("no such table"))
    );
    assert_ne!(open(&node, other, "t"), t, "a new table, a new id");
    node.shutdown(T);
}

fn crash(node: &Node, pid: Pid) {
    let watch = node.watch(pid).expect("alive");
    // The call fails: the process panics instead of answering.
    assert!(node.call::<_, Reply>(pid, &Call::Crash, T).is_err());
    let reason = watch.wait(Some(T)).expect("it exits");
    assert!(matches!(reason, ExitReason::Error(_)), "{reason:?}");
}

#[test]
fn an_owner_crash_frees_its_table() {
    let (node, _logs) = node(2);
    load(&node);
    let owner = spawn(&node, Some("mine"), 100);
    let reader = spawn(&node, None, 0);
    let t = open(&node, owner, "mine");
    assert_eq!(node.tables().size(TableId(t)), Ok(100));
    crash(&node, owner);
    // Freed by the time the exit is complete.
    assert_eq!(node.tables().whereis("mine"), None);
    assert_eq!(
        node.tables().size(TableId(t)),
        Err(TableError::NoTable(TableId(t)))
    );
    assert!(matches!(
        call(&node, reader, &Call::Size { table: t }),
        Reply::Error(e) if e.contains("no such table")
    ));
    assert!(node.tables().list().is_empty());
    node.shutdown(T);
}

#[test]
fn an_owner_crash_hands_its_table_to_its_heir_or_frees_it_when_the_heir_is_dead() {
    let (node, _logs) = node(2);
    load(&node);
    let owner = spawn(&node, Some("kept"), 50);
    let heir = spawn(&node, None, 0);
    let t = open(&node, owner, "kept");
    let before = rows(&node, t);
    let set_heir = Call::SetHeir {
        table: t,
        heir: Some(heir.0),
        note: "yours now".into(),
    };
    assert_eq!(call(&node, owner, &set_heir), Reply::Ok);
    assert_eq!(
        node.tables().info(TableId(t)).map(|i| i.heir),
        Ok(Some(heir))
    );
    crash(&node, owner);
    let info = node.tables().info(TableId(t)).expect("the table lives on");
    assert_eq!((info.owner, info.heir), (heir, None));
    assert_eq!(rows(&node, t), before, "contents untouched");
    // The heir got the owner's note before the exit completed: a later call sees it.
    assert_eq!(
        call(&node, heir, &Call::Notes),
        Reply::Notes(vec!["yours now".into()])
    );
    // It owns the table now: it writes to it.
    let write = Call::Insert {
        table: t,
        key: b"new".to_vec(),
        value: b"owner".to_vec(),
    };
    assert_eq!(call(&node, heir, &write), Reply::Ok);

    // An heir that died before the owner inherits nothing: the table goes.
    let next_heir = spawn(&node, None, 0);
    let set_heir = Call::SetHeir {
        table: t,
        heir: Some(next_heir.0),
        note: "never delivered".into(),
    };
    assert_eq!(call(&node, heir, &set_heir), Reply::Ok);
    crash(&node, next_heir);
    crash(&node, heir);
    assert_eq!(node.tables().whereis("kept"), None);
    // Naming a dead heir is refused at once.
    let owner = spawn(&node, Some("x"), 0);
    let x = open(&node, owner, "x");
    let dead = Call::SetHeir {
        table: x,
        heir: Some(next_heir.0),
        note: String::new(),
    };
    assert!(matches!(call(&node, owner, &dead), Reply::Error(e) if e.contains("no such process")));
    node.shutdown(T);
}

/// A value whose bytes are all `fill`, `len` long: any mix of two writes shows as two byte
/// values.
fn uniform(fill: u8, len: usize) -> Vec<u8> {
    vec![fill; len]
}

fn is_uniform(value: &[u8]) -> bool {
    value.iter().all(|b| Some(b) == value.first())
}

#[test]
fn readers_never_see_a_torn_value_during_writes_or_a_transform() {
    let (node, _logs) = node(2);
    load(&node);
    let owner = spawn(&node, None, 0);
    let module_reader = spawn(&node, None, 0);
    let public = Call::Open {
        name: "hot".into(),
        create: true,
        exclusive: true,
        public: true,
    };
    let Reply::Table(t) = call(&node, owner, &public) else {
        panic!("create")
    };
    let id = TableId(t);
    for i in 0..2000u64 {
        node.tables()
            .insert(None, id, &i.to_be_bytes(), &uniform(1, 64))
            .expect("insert");
    }
    node.tables()
        .insert(None, id, b"hot", &uniform(0, 4096))
        .expect("insert");
    let writing = Arc::new(AtomicBool::new(true));
    let reads = Arc::new(AtomicU64::new(0));
    std::thread::scope(|scope| {
        // Readers on the runtime API, checking the hot key and a scan of everything.
        for _ in 0..2 {
            let (node, writing, reads) = (node.clone(), writing.clone(), reads.clone());
            scope.spawn(move || {
                while writing.load(Ordering::Relaxed) {
                    let value = node.tables().lookup(id, b"hot").expect("lookup");
                    assert!(is_uniform(&value.expect("present")), "torn hot value");
                    node.tables()
                        .scan_with(id, b"", false, b"", usize::MAX, |_, v| {
                            assert!(is_uniform(v), "torn value in a scan")
                        })
                        .expect("scan");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // A reader through the module ABI (copies into the module's own buffer).
        let (node2, writing2) = (node.clone(), writing.clone());
        let module_reads = scope.spawn(move || {
            let mut torn = 0;
            while writing2.load(Ordering::Relaxed) {
                let check = Call::CheckReads {
                    table: t,
                    key: b"hot".to_vec(),
                    rounds: 200,
                };
                match call(&node2, module_reader, &check) {
                    Reply::Torn { torn: n, .. } => torn += n,
                    other => panic!("{other:?}"),
                }
            }
            torn
        });
        // The writer: the hot key rewritten with other bytes and lengths, then the whole
        // table transformed (every value's bytes shifted by one, lengths kept) while readers
        // run, several times.
        for round in 0..400u32 {
            let fill = (round % 250) as u8 + 2;
            let len = 1 + (round as usize * 97) % 8192;
            node.tables()
                .insert(None, id, b"hot", &uniform(fill, len))
                .expect("write");
            if round % 100 == 99 {
                let shift = |_: &[u8], v: &[u8]| Ok(v.iter().map(|b| b.wrapping_add(1)).collect());
                let count = node
                    .tables()
                    .transform(None, id, 64, 2, &shift)
                    .expect("transform");
                assert_eq!(count, 2001);
            }
        }
        // Keep going until every reader has read at least a few times during the writes.
        while reads.load(Ordering::Relaxed) < 10 {
            node.tables()
                .insert(None, id, b"hot", &uniform(9, 100))
                .expect("write");
            std::thread::yield_now();
        }
        writing.store(false, Ordering::Relaxed);
        assert_eq!(
            module_reads.join().expect("reader"),
            0,
            "torn reads in a module"
        );
    });
    // Four transforms shifted every bulk value (written as 1) to 5.
    assert_eq!(
        node.tables().lookup(id, &7u64.to_be_bytes()),
        Ok(Some(uniform(5, 64)))
    );
    node.shutdown(T);
}

#[test]
fn a_transform_that_fails_on_one_row_leaves_every_row_as_it_was() {
    let (node, _logs) = node(2);
    load(&node);
    let owner = spawn(&node, Some("shape"), 5000);
    let t = open(&node, owner, "shape");
    let before = rows(&node, t);
    let failing = Call::Transform {
        table: t,
        chunk: 100,
        suffix: b"|v2".to_vec(),
        fail_key: Some(b"k004321".to_vec()),
    };
    match call(&node, owner, &failing) {
        Reply::Error(e) => assert!(e.contains("row k004321 cannot be transformed"), "{e}"),
        other => panic!("the transform must fail: {other:?}"),
    }
    assert_eq!(rows(&node, t), before, "no row changed");
    let good = Call::Transform {
        table: t,
        chunk: 100,
        suffix: b"|v2".to_vec(),
        fail_key: None,
    };
    assert_eq!(call(&node, owner, &good), Reply::Transformed(5000));
    let after = rows(&node, t);
    assert_eq!(after.len(), before.len());
    for ((k0, v0), (k1, v1)) in before.iter().zip(after.iter()) {
        assert_eq!(k0, k1);
        assert_eq!(v1, &[v0.as_slice(), b"|v2"].concat());
    }
    // Only the owner transforms a protected table.
    let other = spawn(&node, None, 0);
    assert!(matches!(call(&node, other, &good), Reply::Error(e) if e.contains("not the owner")));
    node.shutdown(T);
}
