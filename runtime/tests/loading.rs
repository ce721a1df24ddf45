//! Loading module libraries: every bad library becomes a clear error (never a crash), two
//! versions run side by side, the same file loaded twice gives two distinct images, and old
//! versions are soft-purged once no process runs them.

mod common;

use common::{fixtures, node};
use relup_fixture_counter_api::{Args, Call, Reply};
use relup_runtime::{Expect, LoadError, Origin, SpawnOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("loading-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("lib.so")
}

fn describe(node: &relup_runtime::Node, pid: relup_runtime::Pid) -> (String, i64, i64) {
    match node.call::<_, Reply>(pid, &Call::Describe, T).unwrap() {
        Reply::Description {
            version,
            count,
            bonus,
            ..
        } => (version, count, bonus),
        other => panic!("{other:?}"),
    }
}

#[test]
fn not_a_relup_module() {
    let (node, _) = node(2);
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let err = unsafe {
        node.code()
            .load(&fixtures().not_a_module, &Expect::default())
    }
    .unwrap_err();
    assert!(matches!(err, LoadError::NotAModule { .. }), "{err}");
    assert!(err.to_string().contains("relup_module_descriptor"), "{err}");
    node.shutdown(T);
}

#[test]
fn abi_version_it_does_not_speak() {
    let (node, _) = node(2);
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let err = unsafe { node.code().load(&fixtures().bad_abi, &Expect::default()) }.unwrap_err();
    match &err {
        LoadError::AbiVersion {
            found, supported, ..
        } => {
            assert_eq!(*found, 999);
            assert_eq!(*supported, relup_module::abi::ABI_VERSION);
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("999"), "{err}");
    node.shutdown(T);
}

#[test]
fn truncated_library() {
    let (node, _) = node(2);
    let bytes = std::fs::read(&fixtures().counter_v1).unwrap();
    let path = scratch("truncated");
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let err = unsafe { node.code().load(&path, &Expect::default()) }.unwrap_err();
    assert!(matches!(err, LoadError::NotALibrary { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    let path = scratch("tiny");
    std::fs::write(&path, &bytes[..20]).unwrap();
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let err = unsafe { node.code().load(&path, &Expect::default()) }.unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    node.shutdown(T);
}

#[test]
fn corrupt_library() {
    let (node, _) = node(2);
    // Not ELF at all.
    let path = scratch("garbage");
    let garbage: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let err = unsafe { node.code().load(&path, &Expect::default()) }.unwrap_err();
    assert!(err.to_string().contains("not an ELF file"), "{err}");
    // A valid ELF header over zeroed program headers: dlopen itself refuses it.
    let mut bytes = std::fs::read(&fixtures().counter_v1).unwrap();
    for b in &mut bytes[64..4096] {
        *b = 0;
    }
    let path = scratch("zeroed");
    std::fs::write(&path, &bytes).unwrap();
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let err = unsafe { node.code().load(&path, &Expect::default()) }.unwrap_err();
    assert!(
        matches!(err, LoadError::Open { .. } | LoadError::NotALibrary { .. }),
        "{err}"
    );
    // A file that does not exist.
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let err = unsafe {
        node.code()
            .load(Path::new("/nonexistent/lib.so"), &Expect::default())
    }
    .unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }), "{err}");
    node.shutdown(T);
}

#[test]
fn wrong_architecture() {
    let (node, _) = node(2);
    let mut bytes = std::fs::read(&fixtures().counter_v1).unwrap();
    // e_machine (offset 18): claim AArch64 on x86_64, or x86_64 elsewhere.
    let other: u16 = if cfg!(target_arch = "x86_64") {
        183
    } else {
        62
    };
    bytes[18..20].copy_from_slice(&other.to_le_bytes());
    let path = scratch("arch");
    std::fs::write(&path, &bytes).unwrap();
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let err = unsafe { node.code().load(&path, &Expect::default()) }.unwrap_err();
    assert!(err.to_string().contains("built for"), "{err}");
    // A 32-bit class byte.
    let mut bytes = std::fs::read(&fixtures().counter_v1).unwrap();
    bytes[4] = 1;
    std::fs::write(&path, &bytes).unwrap();
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let err = unsafe { node.code().load(&path, &Expect::default()) }.unwrap_err();
    assert!(err.to_string().contains("32-bit"), "{err}");
    node.shutdown(T);
}

#[test]
fn name_and_version_are_checked() {
    let (node, _) = node(2);
    let expect = Expect {
        name: Some("ticker".into()),
        version: None,
    };
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let err = unsafe { node.code().load(&fixtures().counter_v1, &expect) }.unwrap_err();
    assert!(matches!(err, LoadError::NameMismatch { .. }), "{err}");
    let expect = Expect {
        name: Some("counter".into()),
        version: Some(semver::Version::new(2, 0, 0)),
    };
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let err = unsafe { node.code().load(&fixtures().counter_v1, &expect) }.unwrap_err();
    assert!(err.to_string().contains("expected version 2.0.0"), "{err}");
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let ok = unsafe { node.code().load(&fixtures().counter_v2, &expect) }.unwrap();
    assert_eq!(ok.version(), &semver::Version::new(2, 0, 0));
    node.shutdown(T);
}

#[test]
fn two_versions_side_by_side() {
    let (node, _) = node(2);
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let v1 = unsafe {
        node.code()
            .load_current(&fixtures().counter_v1, &Expect::default())
    }
    .unwrap();
    let old = node
        .spawn(
            "counter",
            &Args {
                start: 1,
                ..Args::default()
            },
            SpawnOptions::default(),
        )
        .unwrap();
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let v2 = unsafe {
        node.code()
            .load_current(&fixtures().counter_v2, &Expect::default())
    }
    .unwrap();
    let new = node
        .spawn(
            "counter",
            &Args {
                start: 2,
                ..Args::default()
            },
            SpawnOptions::default(),
        )
        .unwrap();
    // An explicit version can still be started.
    let pinned = node
        .spawn(
            v1.clone(),
            &Args {
                start: 3,
                ..Args::default()
            },
            SpawnOptions::default(),
        )
        .unwrap();
    assert_eq!(describe(&node, old).0, "1.0.0");
    assert_eq!(describe(&node, new).0, "2.0.0");
    assert_eq!(describe(&node, pinned).0, "1.0.0");
    let versions = node.code().modules();
    assert_eq!(versions[0].current, Some(v2.version().clone()));
    assert_eq!(versions[0].old, vec![v1.version().clone()]);
    // The old version stays while processes run it.
    drop(v1);
    assert_eq!(node.code().soft_purge("counter"), 1);
    for pid in [old, pinned] {
        let watch = node.watch(pid).unwrap();
        node.exit(pid, relup_runtime::ExitReason::Shutdown);
        watch.wait(Some(T)).unwrap();
    }
    assert_eq!(
        node.code().soft_purge("counter"),
        0,
        "no process runs 1.0.0 any more"
    );
    assert!(node.code().modules()[0].old.is_empty());
    let stats = node.code().stats();
    assert_eq!(stats.images_mapped, 2);
    assert_eq!(
        stats.images_retired, 1,
        "the purged image stays mapped and is counted"
    );
    node.shutdown(T);
}

#[test]
fn the_same_file_loaded_twice_gives_two_distinct_images() {
    let (node, _) = node(2);
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let a = unsafe { node.code().load(&fixtures().counter_v1, &Expect::default()) }.unwrap();
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let b = unsafe { node.code().load(&fixtures().counter_v1, &Expect::default()) }.unwrap();
    assert_ne!(a.serial(), b.serial());
    let copy = |m: &relup_runtime::LoadedModule| match m.origin() {
        Origin::Library { copy, .. } => copy.clone(),
        Origin::Native => panic!("not a library"),
    };
    assert_ne!(copy(&a), copy(&b), "each load opens its own copy");
    assert_ne!(
        a.image_address(),
        b.image_address(),
        "two images, not one cached handle"
    );
    let pa = node
        .spawn(
            a.clone(),
            &Args {
                start: 10,
                ..Args::default()
            },
            SpawnOptions::default(),
        )
        .unwrap();
    let pb = node
        .spawn(
            b.clone(),
            &Args {
                start: 20,
                ..Args::default()
            },
            SpawnOptions::default(),
        )
        .unwrap();
    assert_eq!(describe(&node, pa).1, 10);
    assert_eq!(describe(&node, pb).1, 20);
    node.shutdown(T);
}
