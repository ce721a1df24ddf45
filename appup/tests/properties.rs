//! Property tests over random release histories: each release of one application `ticker`
//! picks modules (with random sha256s) and which of them processes run; each release's appup
//! upgrades from a random subset of the earlier releases (generated, then written to text and
//! parsed back, as a user would keep it).
mod common;
use common::*;
use proptest::prelude::*;
use proptest::strategy::Strategy;
use relup_appup::*;
use std::collections::{BTreeMap, VecDeque};

const POOL: [&str; 5] = ["m0", "m1", "m2", "m3", "m4"];

#[derive(Debug, Clone)]
struct Spec {
    /// Per release: per pool module, None = absent, Some((sha digit, run by a child)).
    releases: Vec<Vec<Option<(char, bool)>>>,
    /// Per release i: for each j < i, whether i's appup covers j.
    edges: Vec<Vec<bool>>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (2usize..=5).prop_flat_map(|n| {
        let module = proptest::option::weighted(
            0.8,
            (prop::sample::select(vec!['a', 'b', 'c']), any::<bool>()),
        );
        let rel = prop::collection::vec(module, POOL.len());
        let releases = prop::collection::vec(rel, n);
        let edges = (0..n)
            .map(|i| prop::collection::vec(prop::bool::weighted(0.5), i))
            .collect::<Vec<_>>();
        (releases, edges).prop_map(|(releases, edges)| Spec { releases, edges })
    })
}

fn version(i: usize) -> String {
    format!("0.{}.0", i + 1)
}

fn build(spec: &Spec) -> (Vec<Release>, Vec<KnownRelease>) {
    let releases: Vec<Release> = spec
        .releases
        .iter()
        .enumerate()
        .map(|(i, mods)| {
            let present: Vec<(&str, char)> = POOL
                .iter()
                .zip(mods)
                .filter_map(|(n, m)| m.map(|(c, _)| (*n, c)))
                .collect();
            let children: Vec<(String, &str)> = POOL
                .iter()
                .zip(mods)
                .filter_map(|(n, m)| m.filter(|(_, run)| *run).map(|_| (format!("w_{n}"), *n)))
                .collect();
            let children: Vec<(&str, &str)> =
                children.iter().map(|(a, b)| (a.as_str(), *b)).collect();
            release(&version(i), &present, &children)
        })
        .collect();
    let known = releases
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut appup: Option<Appup> = None;
            for (j, on) in spec.edges[i].iter().enumerate() {
                if !on {
                    continue;
                }
                let Some(g) = generate_app(&releases[j], r, "ticker") else {
                    continue;
                };
                match &mut appup {
                    None => appup = Some(g),
                    Some(a) => {
                        a.up.extend(g.up);
                        a.down.extend(g.down);
                    }
                }
            }
            let appups = appup
                .map(|a| {
                    let text = a.to_toml();
                    let back =
                        Appup::parse(&text, &a.file).unwrap_or_else(|e| panic!("{e}\n{text}"));
                    assert_eq!(back, a);
                    vec![back]
                })
                .unwrap_or_default();
            known(
                r,
                if i == 0 {
                    ReleaseStatus::Current
                } else {
                    ReleaseStatus::Unpacked
                },
                appups,
            )
        })
        .collect();
    (releases, known)
}

/// Shortest hop count by BFS over the edges as the spec defines them (independent of the
/// planner's search).
fn shortest(spec: &Spec, from: usize, to: usize) -> Option<usize> {
    let n = spec.releases.len();
    let edge = |a: usize, b: usize| {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        a != b && spec.edges[hi][lo]
    };
    let mut dist = vec![usize::MAX; n];
    dist[from] = 0;
    let mut q = VecDeque::from([from]);
    while let Some(v) = q.pop_front() {
        for w in 0..n {
            if edge(v, w) && dist[w] == usize::MAX {
                dist[w] = dist[v] + 1;
                q.push_back(w);
            }
        }
    }
    (dist[to] != usize::MAX).then_some(dist[to])
}

fn modules(r: &Release) -> BTreeMap<String, String> {
    r.applications
        .iter()
        .flat_map(|a| a.modules.iter().map(|m| (m.name.clone(), m.sha256.clone())))
        .collect()
}

/// Applies a plan's steps to a module set (name -> sha256), checking per-hop invariants.
fn run(
    plan: &Plan,
    start: &BTreeMap<String, String>,
    releases: &[Release],
) -> BTreeMap<String, String> {
    let mut set = start.clone();
    for hop in &plan.hops {
        let from = releases
            .iter()
            .find(|r| r.version == hop.from)
            .map(modules)
            .unwrap_or_default();
        let to_rel = releases.iter().find(|r| r.version == hop.to);
        let to = to_rel.map(modules).unwrap_or_default();
        assert_eq!(set, from, "hop starts from its release's modules");
        let ponr = hop
            .steps
            .iter()
            .position(|s| matches!(s, Step::PointOfNoReturn));
        let Some(ponr) = ponr else {
            panic!("hop without point_of_no_return")
        };
        let mut suspended: Vec<&str> = Vec::new();
        for (i, s) in hop.steps.iter().enumerate() {
            match s {
                Step::Load { module, sha256, .. } => {
                    assert!(i > ponr);
                    let checked = hop.steps[..ponr].iter().any(|c| matches!(c,
                        Step::LoadObjectCode { module: m, sha256: h, .. } if m == module && h == sha256));
                    assert!(
                        checked,
                        "load of {module} not checked before point_of_no_return"
                    );
                    set.insert(module.clone(), sha256.clone());
                }
                Step::Remove { module } => {
                    set.remove(module);
                }
                Step::Suspend { module, .. } => suspended.push(module),
                Step::Resume { module } => {
                    let at = suspended.iter().position(|m| m == module);
                    let Some(at) = at else {
                        panic!("resume of {module} never suspended")
                    };
                    suspended.remove(at);
                }
                Step::LoadObjectCode { .. } => {
                    assert!(i < ponr, "object code after point_of_no_return")
                }
                Step::RestartNode => set = to.clone(),
                _ => {}
            }
        }
        assert!(
            suspended.is_empty(),
            "suspended and never resumed: {suspended:?}"
        );
        // Every changed module is covered by a load (or a remove).
        for (m, sha) in &to {
            if from.get(m) != Some(sha) {
                assert!(hop.steps.iter().any(|s| matches!(s, Step::Load { module, sha256, .. } if module == m && sha256 == sha)),
                    "changed module {m} not loaded");
            }
        }
        assert_eq!(set, to, "hop ends in its release's modules");
    }
    set
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn plans_follow_the_shortest_chain_and_round_trip(spec in spec(), a in 0usize..5, b in 0usize..5) {
        let (releases, known) = build(&spec);
        let n = releases.len();
        let (a, b) = (a % n, b % n);
        prop_assume!(a != b);
        let result = plan(&releases[a], &releases[b], &known);
        match (shortest(&spec, a, b), result) {
            (None, Err(PlanError::NoPath { .. })) => {}
            (Some(len), Ok(up)) => {
                prop_assert_eq!(up.hops.len(), len, "chain is the shortest");
                prop_assert_eq!(up.chain.len(), len + 1);
                let start = modules(&releases[a]);
                let end = run(&up, &start, &releases);
                prop_assert_eq!(&end, &modules(&releases[b]));
                let down = plan(&releases[b], &releases[a], &known);
                let down = match down { Ok(d) => d, Err(e) => panic!("reverse plan failed: {e}") };
                let back = run(&down, &end, &releases);
                prop_assert_eq!(back, start, "up then down returns to the original modules");
                // The plan survives the control socket (serde) and prints.
                let text = toml::to_string(&up).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let again: Plan = toml::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&again, &up);
                prop_assert!(!up.to_string().is_empty());
            }
            (expected, got) => panic!("expected shortest {expected:?}, got {got:?}"),
        }
    }

    #[test]
    fn generated_appups_validate_both_ways(spec in spec()) {
        let (releases, _) = build(&spec);
        for w in releases.windows(2) {
            for g in generate(&w[0], &w[1]) {
                if let Err(e) = validate(&g, &w[0], &w[1]) {
                    panic!("{e}\n{}", g.to_toml());
                }
            }
        }
    }
}

/// Seeds for the mutation test: the fuzz corpus files, read once (the corpora hold hundreds).
fn seeds(target: &str) -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<(String, Vec<Vec<u8>>)>> = std::sync::OnceLock::new();
    let all = SEEDS.get_or_init(|| {
        ["appup_toml", "release_toml"]
            .iter()
            .map(|target| {
                let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../fuzz/corpus")
                    .join(target);
                let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .filter_map(|e| std::fs::read(e.path()).ok())
                            .collect()
                    })
                    .unwrap_or_default();
                out.retain(|s| s.len() < 4096);
                out.sort();
                (target.to_string(), out)
            })
            .collect()
    });
    all.iter()
        .find(|(t, _)| t == target)
        .map_or(&[][..], |(_, s)| s.as_slice())
}

fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for &(at, kind, byte) in edits {
        let at = if v.is_empty() { 0 } else { at % (v.len() + 1) };
        match kind % 3 {
            0 => v.insert(at, byte),
            1 if at < v.len() => {
                v.remove(at);
            }
            _ if at < v.len() => v[at] = byte,
            _ => v.push(byte),
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// A cheap stand-in for fuzzing on stable: mutated corpus files never make a parser panic.
    #[test]
    fn mutated_inputs_never_panic(pick in any::<usize>(), edits in prop::collection::vec((any::<usize>(), any::<u8>(), prop::sample::select(b"[]{}=\",.\n #0aZ_-\\".to_vec())), 1..8)) {
        for (target, f) in [("appup_toml", relup_appup::fuzz::appup as fn(&[u8])), ("release_toml", relup_appup::fuzz::release)] {
            let s = seeds(target);
            if s.is_empty() { continue; }
            let seed = &s[pick % s.len()];
            f(&mutate(seed, &edits));
        }
    }
}
