//! Soak: upgrade/downgrade cycles of a real release root (0.1.0 counter 1.0.0 <-> 0.2.0
//! counter 2.0.0, state migrated each way) under continuous message load from several
//! senders, with per-sender sequence numbers checked at the end (nothing lost, nothing
//! reordered), and the resident memory of the process sampled after every cycle.
//!
//! `RELUP_SOAK_CYCLES` cycles (default 20; RELIABILITY.md has the 1,000-cycle figures:
//! `RELUP_SOAK_CYCLES=1000 cargo test --release -p relup-runtime --test soak -- --nocapture`).
//!
//! Memory: the code server never unmaps a library (DESIGN.md §4b) but reuses the image of
//! bytes it has already mapped (by sha256), so cycling between two releases maps two images
//! in all and the RSS must flatten after the first cycles. The second test measures the other
//! case, every upgrade bringing a new build: each one maps an image for good, and the RSS
//! grows by what the image touches, no more than its file size.

mod common;

use common::{appup_v2, deploy_pair, fixtures, node, release_dir};
use relup_fixture_counter_api::{Call, Cast, Reply};
use relup_runtime::handler::ReleaseHandler;
use relup_runtime::install::InstallOptions;
use relup_runtime::release::{ReleaseRoot, unpack};
use relup_runtime::{CodeChange, Direction, Expect};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// Senders per target process.
const SENDERS: u64 = 3;

/// The two tests measure the memory of the one process they share: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The system allocator, counting the bytes this binary (the runtime and the test; not the
/// module libraries, which have their own) holds live: a leak shows up here exactly, where
/// the RSS also moves with the allocator's page use.
struct Counting;

static LIVE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counted.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Resident memory of this process in KiB (`VmRSS`).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn v(text: &str) -> semver::Version {
    semver::Version::parse(text).unwrap()
}

/// Removes a test's directory when the test ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn soak_base() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("soak-{}", std::process::id()))
}

fn root() -> ReleaseRoot {
    let base = soak_base();
    let _ = std::fs::remove_dir_all(&base);
    let f = fixtures();
    let appup = appup_v2("{ update = \"counter\" }");
    let r1 = release_dir(&base.join("src"), "0.1.0", &f.counter_v1, "1.0.0", None);
    let r2 = release_dir(
        &base.join("src"),
        "0.2.0",
        &f.counter_v2,
        "2.0.0",
        Some(&appup),
    );
    let (root, t2) = deploy_pair(&base, &r1, &r2);
    unpack(&root, &t2).unwrap();
    root
}

/// Least-squares slope of `ys` over their index, per step.
fn slope(ys: &[u64]) -> f64 {
    let n = ys.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = ys.iter().sum::<u64>() as f64 / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, &y) in ys.iter().enumerate() {
        let dx = i as f64 - mean_x;
        num += dx * (y as f64 - mean_y);
        den += dx * dx;
    }
    if den == 0.0 { 0.0 } else { num / den }
}

#[test]
fn upgrade_downgrade_cycles_under_load_lose_and_reorder_nothing_and_memory_flattens() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cycles: usize = std::env::var("RELUP_SOAK_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(20);
    let root = root();
    let _cleanup = RemoveOnDrop(soak_base());
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node.clone(), root.clone()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Each sender casts numbered messages to one child, and every 256 makes a call to it,
    // which returns once the child handled everything before (so mailboxes stay bounded).
    let senders: Vec<_> = ["c1", "c2"]
        .iter()
        .flat_map(|target| (0..SENDERS).map(move |i| (*target, i)))
        .map(|(target, i)| {
            let (node, stop) = (node.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    node.cast(target, &Cast::Record { sender: i, seq }).unwrap();
                    if seq.is_multiple_of(256) {
                        node.call::<_, Reply>(target, &Call::Get, T).unwrap();
                    }
                }
                (target, seq)
            })
        })
        .collect();
    let mut rss = Vec::with_capacity(cycles + 1);
    rss.push(rss_kib());
    let started = Instant::now();
    for cycle in 0..cycles {
        for target in ["0.2.0", "0.1.0"] {
            handler
                .install(&v(target), &InstallOptions::default(), false, &mut |_| {})
                .unwrap_or_else(|e| panic!("cycle {cycle}, to {target}: {e}"));
        }
        rss.push(rss_kib());
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut sent = std::collections::BTreeMap::<&str, u64>::new();
    for s in senders {
        let (target, seq) = s.join().unwrap();
        *sent.entry(target).or_default() += seq;
    }
    for (target, sent) in &sent {
        match node
            .call::<_, Reply>(*target, &Call::OrderReport, T)
            .unwrap()
        {
            Reply::Order {
                received,
                out_of_order,
            } => {
                eprintln!(
                    "{target}: {sent} sent, {received} received, {out_of_order} out of order"
                );
                assert_eq!(received, *sent, "{target}: every message delivered once");
                assert_eq!(out_of_order, 0, "{target}: per-sender order kept");
            }
            other => panic!("{other:?}"),
        }
    }
    let stats = node.code().stats();
    eprintln!(
        "{cycles} cycles ({} installs) in {:.1} s; {} messages; code: {stats:?}",
        cycles * 2,
        elapsed.as_secs_f64(),
        sent.values().sum::<u64>()
    );
    // Exactly the two releases' images: fewer would mean one was never loaded, more that a
    // downgrade or a later cycle mapped a known build again instead of reusing it.
    assert_eq!(stats.images_mapped, 2, "images reused: {stats:?}");
    // Memory: what the first cycles add (two images, allocator arenas), then the slope of
    // the later half, which must be flat (well under one image's size per cycle).
    let half = &rss[rss.len() / 2..];
    let per_cycle = slope(half);
    eprintln!(
        "RSS: start {} KiB, after cycle 1 {} KiB, after cycle {} {} KiB, at the end {} KiB, \
         max {} KiB; later-half slope {per_cycle:.1} KiB/cycle",
        rss[0],
        rss[1],
        cycles / 2,
        rss[cycles / 2],
        rss[cycles],
        rss.iter().max().unwrap()
    );
    if let Ok(path) = std::env::var("RELUP_SOAK_RSS_CSV") {
        let csv: String = rss
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{i},{r}\n"))
            .collect();
        std::fs::write(path, format!("cycle,rss_kib\n{csv}")).unwrap();
    }
    assert!(
        per_cycle < 64.0,
        "RSS keeps growing: {per_cycle:.1} KiB per cycle over the later half: {half:?}"
    );
    // Quiet cycles (no message load, so no mailbox contents in the count): the bytes the
    // runtime holds live must come back to the same figure cycle after cycle, or an install
    // leaks.
    let quiet = |n: usize| {
        let mut live = Vec::with_capacity(n);
        for _ in 0..n {
            for target in ["0.2.0", "0.1.0"] {
                handler
                    .install(&v(target), &InstallOptions::default(), false, &mut |_| {})
                    .unwrap();
            }
            live.push(LIVE.load(Ordering::Relaxed).max(0) as u64);
        }
        live
    };
    let warm = quiet(5);
    let live = quiet(40);
    let leak = slope(&live);
    eprintln!(
        "live heap bytes over 40 quiet cycles: {} -> {} (slope {leak:.0} bytes/cycle; after \
         warm-up {:?})",
        live[0],
        live[live.len() - 1],
        warm
    );
    assert!(
        leak < 512.0,
        "installs leak {leak:.0} bytes per cycle: {live:?}"
    );
    handler.stop(T);
    node.shutdown(T);
}

#[test]
fn every_new_build_maps_an_image_for_good_and_costs_at_most_its_size() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Each upgrade brings a build the node has not seen (a copy of the library with bytes
    // appended, so another sha256): the code server maps it and cannot unmap it later.
    let builds: u64 = std::env::var("RELUP_SOAK_BUILDS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(6);
    let f = fixtures();
    let (node, _) = common::node_with_counter(2);
    let pids: Vec<_> = (0..4)
        .map(|i| {
            node.spawn(
                "counter",
                &relup_fixture_counter_api::Args {
                    start: i,
                    ..Default::default()
                },
                relup_runtime::SpawnOptions::default(),
            )
            .unwrap()
        })
        .collect();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("builds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveOnDrop(dir.clone());
    let before_stats = node.code().stats();
    let mut samples = vec![(rss_kib(), before_stats.bytes_mapped)];
    for b in 0..builds {
        let (lib, direction) = if b % 2 == 0 {
            (&f.counter_v2, Direction::Up)
        } else {
            (&f.counter_v1, Direction::Down)
        };
        let mut bytes = std::fs::read(lib).unwrap();
        bytes.extend_from_slice(format!("build {b}").as_bytes());
        let path = dir.join(format!("build-{b}.so"));
        std::fs::write(&path, &bytes).unwrap();
        let sha = common::sha256(&path);
        // SAFETY: a fixture library of this workspace's tests, with bytes appended.
        let module = unsafe { node.code().load_verified(&path, &Expect::default(), &sha) }.unwrap();
        let change = CodeChange::new(module, direction, relup_module::codec::encode(&()).unwrap());
        node.upgrade_module(&change, T).unwrap();
        for pid in &pids {
            node.call::<_, Reply>(*pid, &Call::Get, T).unwrap();
        }
        samples.push((rss_kib(), node.code().stats().bytes_mapped));
    }
    let stats = node.code().stats();
    assert_eq!(stats.images_mapped - before_stats.images_mapped, builds);
    let (rss0, bytes0) = samples[0];
    let (rss1, bytes1) = samples[samples.len() - 1];
    let per_image_rss = (rss1.saturating_sub(rss0)) as f64 / builds as f64;
    let per_image_file = (bytes1 - bytes0) as f64 / builds as f64 / 1024.0;
    eprintln!(
        "{builds} new builds: RSS {rss0} -> {rss1} KiB ({per_image_rss:.0} KiB per build), \
         file bytes mapped {per_image_file:.0} KiB per build; {stats:?}"
    );
    // An image costs what it touches: never more than the file plus a little bookkeeping.
    assert!(
        per_image_rss <= per_image_file + 256.0,
        "{per_image_rss:.0} KiB of RSS per {per_image_file:.0} KiB image"
    );
    node.shutdown(T);
}
