//! Packing, unpacking (including hostile tarballs), deploy, remove and known_releases, on
//! real files and real tarballs.

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use relup_appup::ReleaseStatus;
use relup_runtime::release::{
    Limits, MANIFEST, Manifest, PackError, ReleaseRoot, Releases, UnpackError, deploy,
    known_releases, pack, remove, sha256_hex, unpack, unpack_in_place, unpack_with,
};
use semver::Version;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

/// A release directory `<parent>/<name>-<vsn>` with one module (fake library bytes), an
/// appup (for versions after 0.1.0) and a default config.
fn release_dir(parent: &Path, name: &str, vsn: &str) -> PathBuf {
    let dir = parent.join(format!("{name}-{vsn}-src"));
    fs::create_dir_all(dir.join("lib")).unwrap();
    fs::write(
        dir.join("release.toml"),
        format!(
            r#"name = "{name}"
version = "{vsn}"

[[applications]]
name = "ticker"
version = "{vsn}"

[[applications.modules]]
name = "ticker_server"
file = "lib/libticker_server.so"
sha256 = "{ZERO}"
"#
        ),
    )
    .unwrap();
    fs::write(
        dir.join("lib/libticker_server.so"),
        format!("\x7fELF fake library {vsn}"),
    )
    .unwrap();
    fs::write(
        dir.join("config.toml"),
        "[ticker.ticker_server]\ninterval_ms = 1000\n",
    )
    .unwrap();
    if vsn != "0.1.0" {
        fs::create_dir_all(dir.join("appup")).unwrap();
        fs::write(
            dir.join("appup/ticker.toml"),
            format!(
                r#"application = "ticker"
version = "{vsn}"

[[up]]
from = "0.1.0"
instructions = [ {{ load_module = "ticker_server" }} ]

[[down]]
to = "0.1.0"
instructions = [ {{ load_module = "ticker_server" }} ]
"#
            ),
        )
        .unwrap();
    }
    dir
}

/// Packs `name` `vsn` into `out`.
fn tarball(tmp: &Path, name: &str, vsn: &str) -> PathBuf {
    let src = release_dir(tmp, name, vsn);
    pack(&src, &tmp.join("out")).unwrap()
}

/// The entries of a tarball: path, bytes, mode.
fn entries(tarball: &Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut a = tar::Archive::new(GzDecoder::new(fs::File::open(tarball).unwrap()));
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let mode = e.header().mode().unwrap();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (path, bytes, mode)
        })
        .collect()
}

/// A raw archive entry for hostile tarballs; the path is written verbatim.
struct Raw {
    path: String,
    kind: tar::EntryType,
    data: Vec<u8>,
    link: Option<String>,
}

fn file(path: &str, data: &[u8]) -> Raw {
    Raw {
        path: path.into(),
        kind: tar::EntryType::Regular,
        data: data.to_vec(),
        link: None,
    }
}

fn write_raw(path: &Path, raws: &[Raw]) {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for r in raws {
        let mut h = tar::Header::new_gnu();
        let name = r.path.as_bytes();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(r.kind);
        h.set_size(r.data.len() as u64);
        h.set_mode(0o644);
        if let Some(l) = &r.link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, r.data.as_slice()).unwrap();
    }
    fs::write(path, b.into_inner().unwrap().finish().unwrap()).unwrap();
}

/// The good tarball's entries as raw entries, to tamper with.
fn raws_of(tarball: &Path) -> Vec<Raw> {
    entries(tarball)
        .into_iter()
        .map(|(p, d, _)| file(&p, &d))
        .collect()
}

/// Rewrites the MANIFEST of `raws` so it matches the other entries again.
fn fix_manifest(raws: &mut [Raw]) {
    let m_idx = raws.iter().position(|r| r.path == MANIFEST).unwrap();
    let mut m = Manifest::parse(std::str::from_utf8(&raws[m_idx].data).unwrap()).unwrap();
    for f in &mut m.files {
        let r = raws.iter().find(|r| r.path == f.path).unwrap();
        f.sha256 = sha256_hex(&r.data);
        f.size = r.data.len() as u64;
    }
    raws[m_idx].data = m.to_toml().into_bytes();
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn pack_fills_sha256_and_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let src = release_dir(tmp.path(), "ticker", "0.2.0");
    let a = pack(&src, &tmp.path().join("a")).unwrap();
    let b = pack(&src, &tmp.path().join("b")).unwrap();
    assert_eq!(a.file_name().unwrap(), "ticker-0.2.0.tar.gz");
    assert_eq!(
        fs::read(&a).unwrap(),
        fs::read(&b).unwrap(),
        "packing twice differs"
    );

    let es = entries(&a);
    let paths: Vec<&str> = es.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "MANIFEST",
            "appup/ticker.toml",
            "bin/ticker",
            "config.toml",
            "lib/libticker_server.so",
            "release.toml"
        ]
    );
    let lib = fs::read(src.join("lib/libticker_server.so")).unwrap();
    let rel = String::from_utf8(es[5].1.clone()).unwrap();
    assert!(rel.contains(&sha256_hex(&lib)), "{rel}");
    assert_eq!(es[2].2 & 0o777, 0o755);
    let manifest = Manifest::parse(std::str::from_utf8(&es[0].1).unwrap()).unwrap();
    assert_eq!(manifest.name, "ticker");
    assert_eq!(manifest.files.len(), 5);
    for f in &manifest.files {
        let (_, data, _) = es.iter().find(|(p, _, _)| *p == f.path).unwrap();
        assert_eq!(f.sha256, sha256_hex(data));
        assert_eq!(f.size, data.len() as u64);
    }
}

#[test]
fn pack_refuses_mismatched_sha256_and_missing_library() {
    let tmp = tempfile::tempdir().unwrap();
    let src = release_dir(tmp.path(), "ticker", "0.2.0");
    let text = fs::read_to_string(src.join("release.toml")).unwrap();
    fs::write(
        src.join("release.toml"),
        text.replace(ZERO, &"ab".repeat(32)),
    )
    .unwrap();
    let err = pack(&src, &tmp.path().join("out")).unwrap_err();
    assert!(matches!(err, PackError::Sha256Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("ticker_server"), "{err}");

    fs::write(src.join("release.toml"), &text).unwrap();
    fs::remove_file(src.join("lib/libticker_server.so")).unwrap();
    let err = pack(&src, &tmp.path().join("out")).unwrap_err();
    assert!(matches!(err, PackError::MissingLibrary { .. }), "{err}");

    fs::write(
        src.join("release.toml"),
        text.replace("lib/libticker_server.so", "../evil.so"),
    )
    .unwrap();
    let err = pack(&src, &tmp.path().join("out")).unwrap_err();
    assert!(matches!(err, PackError::BadPath { .. }), "{err}");
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn deploy_then_unpack_round_trip_and_known_releases() {
    let tmp = tempfile::tempdir().unwrap();
    let t1 = tarball(tmp.path(), "ticker", "0.1.0");
    let t2 = tarball(tmp.path(), "ticker", "0.2.0");
    let root_path = tmp.path().join("root");

    let first = deploy(&t1, &root_path).unwrap();
    let root = ReleaseRoot::open(&root_path).unwrap();
    assert_eq!(first.dir, root.release_dir(&v("0.1.0")));
    let r = Releases::load(&root).unwrap();
    assert_eq!(r.name.as_deref(), Some("ticker"));
    assert_eq!(r.status(&v("0.1.0")), Some(ReleaseStatus::Permanent));
    assert_eq!(r.running().unwrap().version, v("0.1.0"));
    let launcher = fs::read_to_string(root.launcher("ticker")).unwrap();
    // It names the root literally, runs the permanent release's executable when it has
    // one, else relup from PATH (launchers_run_relup_with_the_root runs it).
    assert!(launcher.starts_with("#!/bin/sh\n"), "{launcher}");
    assert!(launcher.contains("\nROOT='/"), "{launcher}");
    assert!(
        launcher.ends_with("exec relup --root \"$ROOT\" \"$@\"\n"),
        "{launcher}"
    );
    let mode = fs::metadata(root.launcher("ticker"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
    // The release's config.toml values, under the header (this release declares no key,
    // so the value is listed as set but not declared).
    let live = fs::read_to_string(root.config_file()).unwrap();
    assert!(live.starts_with("# Operator-set configuration"), "{live}");
    assert!(
        live.ends_with("[ticker.ticker_server]\ninterval_ms = 1000\n"),
        "{live}"
    );

    // Deploying again into a non-empty root is refused.
    let err = deploy(&t1, &root_path).unwrap_err();
    assert!(matches!(err, UnpackError::NotEmpty { .. }), "{err}");

    let second = unpack(&root, &t2).unwrap();
    assert_eq!(second.release.version, v("0.2.0"));
    assert_eq!(second.appups.len(), 1);
    let dir = root.release_dir(&v("0.2.0"));
    assert_eq!(
        names(&dir),
        [
            "MANIFEST",
            "appup",
            "bin",
            "config.toml",
            "lib",
            "release.toml"
        ]
    );
    assert_eq!(
        fs::read(dir.join("lib/libticker_server.so")).unwrap(),
        b"\x7fELF fake library 0.2.0"
    );
    let r = Releases::load(&root).unwrap();
    assert_eq!(r.status(&v("0.2.0")), Some(ReleaseStatus::Unpacked));
    assert!(r.get(&v("0.2.0")).unwrap().unpacked_at > 0);
    assert_eq!(names(&root.releases_dir()), ["0.1.0", "0.2.0", "RELEASES"]);

    let known = known_releases(&root).unwrap();
    assert_eq!(known.len(), 2);
    assert_eq!(known[0].status, ReleaseStatus::Permanent);
    assert_eq!(known[1].appups.len(), 1);
    let plan = relup_appup::plan(&known[0].release, &known[1].release, &known).unwrap();
    assert!(!plan.to_string().is_empty());
}

#[test]
fn unpack_in_place_keeps_the_tarball() {
    let tmp = tempfile::tempdir().unwrap();
    let t1 = tarball(tmp.path(), "ticker", "0.1.0");
    let t2 = tarball(tmp.path(), "ticker", "0.2.0");
    let root_path = tmp.path().join("root");
    deploy(&t1, &root_path).unwrap();
    let root = ReleaseRoot::open(&root_path).unwrap();
    let dir = root.release_dir(&v("0.2.0"));
    fs::create_dir(&dir).unwrap();
    fs::copy(&t2, root.release_tarball("ticker", &v("0.2.0"))).unwrap();
    unpack_in_place(&root, &v("0.2.0")).unwrap();
    assert!(names(&dir).contains(&"ticker-0.2.0.tar.gz".to_string()));
    assert!(dir.join("release.toml").is_file());
    assert_eq!(
        Releases::load(&root).unwrap().status(&v("0.2.0")),
        Some(ReleaseStatus::Unpacked)
    );

    // A tarball of another version dropped in the wrong directory is refused, and the
    // directory stays as it was.
    let t3 = tarball(tmp.path(), "ticker", "0.3.0");
    let wrong = root.release_dir(&v("0.4.0"));
    fs::create_dir(&wrong).unwrap();
    fs::copy(&t3, wrong.join("ticker-0.4.0.tar.gz")).unwrap();
    let err = unpack_in_place(&root, &v("0.4.0")).unwrap_err().to_string();
    assert!(err.contains("holds release 0.3.0"), "{err}");
    assert_eq!(names(&wrong), ["ticker-0.4.0.tar.gz"]);
    assert!(
        !names(&root.releases_dir())
            .iter()
            .any(|n| n.starts_with('.'))
    );
}

#[test]
fn remove_refuses_permanent_and_current() {
    let tmp = tempfile::tempdir().unwrap();
    let t1 = tarball(tmp.path(), "ticker", "0.1.0");
    let t2 = tarball(tmp.path(), "ticker", "0.2.0");
    let t3 = tarball(tmp.path(), "ticker", "0.3.0");
    let root_path = tmp.path().join("root");
    deploy(&t1, &root_path).unwrap();
    let root = ReleaseRoot::open(&root_path).unwrap();
    unpack(&root, &t2).unwrap();
    unpack(&root, &t3).unwrap();
    let mut r = Releases::load(&root).unwrap();
    r.set_current(&v("0.2.0"), 1).unwrap();
    r.save(&root).unwrap();

    let err = remove(&root, &v("0.1.0"), None).unwrap_err().to_string();
    assert!(err.contains("permanent"), "{err}");
    let err = remove(&root, &v("0.2.0"), None).unwrap_err().to_string();
    assert!(err.contains("current"), "{err}");
    let err = remove(&root, &v("0.9.0"), None).unwrap_err().to_string();
    assert!(err.contains("not known"), "{err}");
    assert_eq!(
        names(&root.releases_dir()),
        ["0.1.0", "0.2.0", "0.3.0", "RELEASES"]
    );

    remove(&root, &v("0.3.0"), None).unwrap();
    assert_eq!(names(&root.releases_dir()), ["0.1.0", "0.2.0", "RELEASES"]);
    assert_eq!(Releases::load(&root).unwrap().status(&v("0.3.0")), None);
}

/// A root with 0.1.0 deployed, the good 0.2.0 tarball, and a place for hostile ones.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    root: ReleaseRoot,
    good: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let t1 = tarball(&dir, "ticker", "0.1.0");
    let good = tarball(&dir, "ticker", "0.2.0");
    deploy(&t1, &dir.join("root")).unwrap();
    let root = ReleaseRoot::open(dir.join("root")).unwrap();
    Setup {
        _tmp: tmp,
        dir,
        root,
        good,
    }
}

impl Setup {
    /// Unpacks `raws` (as a tarball) with `limits`; asserts it is refused with a message
    /// containing every `needle`, that RELEASES and releases/ are unchanged and that no
    /// temporary directory is left.
    fn refused_with(&self, raws: &[Raw], limits: Limits, needles: &[&str]) -> UnpackError {
        let t = self.dir.join("hostile.tar.gz");
        write_raw(&t, raws);
        self.refused(&t, limits, needles)
    }

    fn refused(&self, t: &Path, limits: Limits, needles: &[&str]) -> UnpackError {
        let before = fs::read(self.root.releases_file()).unwrap();
        let dirs = names(&self.root.releases_dir());
        let err = unpack_with(&self.root, t, limits).unwrap_err();
        let msg = err.to_string();
        eprintln!("refused: {msg}");
        assert!(
            msg.contains(&*t.to_string_lossy()),
            "{msg} should name the tarball"
        );
        for n in needles {
            assert!(msg.contains(n), "{msg} should contain {n}");
        }
        assert_eq!(fs::read(self.root.releases_file()).unwrap(), before);
        assert_eq!(names(&self.root.releases_dir()), dirs, "after: {msg}");
        err
    }
}

#[test]
fn hostile_paths_and_entry_types_are_refused() {
    let s = setup();
    let outside = s.dir.join("evil");
    let cases: Vec<(Raw, &[&str])> = vec![
        (file("../evil", b"x"), &["`../evil`", "`..`"]),
        (file("lib/../../evil", b"x"), &["`..`"]),
        (
            file(&outside.to_string_lossy(), b"x"),
            &["absolute path", "a relative path"],
        ),
        (
            Raw {
                path: "lib/link.so".into(),
                kind: tar::EntryType::Symlink,
                data: vec![],
                link: Some("/etc/passwd".into()),
            },
            &["lib/link.so", "symbolic link", "regular files only"],
        ),
        (
            Raw {
                path: "lib/hard.so".into(),
                kind: tar::EntryType::Link,
                data: vec![],
                link: Some("release.toml".into()),
            },
            &["hard link"],
        ),
        (
            Raw {
                path: "lib/dev".into(),
                kind: tar::EntryType::Char,
                data: vec![],
                link: None,
            },
            &["device file"],
        ),
        (
            Raw {
                path: "lib/dev".into(),
                kind: tar::EntryType::Block,
                data: vec![],
                link: None,
            },
            &["device file"],
        ),
        (
            Raw {
                path: "lib/fifo".into(),
                kind: tar::EntryType::Fifo,
                data: vec![],
                link: None,
            },
            &["fifo"],
        ),
    ];
    for (bad, needles) in cases {
        // The bad entry first, and last (after good files were written to the temp dir).
        let mut raws = vec![Raw {
            path: bad.path.clone(),
            kind: bad.kind,
            data: bad.data.clone(),
            link: bad.link.clone(),
        }];
        raws.extend(raws_of(&s.good));
        s.refused_with(&raws, Limits::default(), needles);
        let mut raws = raws_of(&s.good);
        raws.push(bad);
        s.refused_with(&raws, Limits::default(), needles);
    }
    assert!(!outside.exists());
    assert!(!s.root.releases_dir().join("evil").exists());
    assert!(!s.root.path.join("evil").exists());
}

#[test]
fn size_and_count_caps_are_enforced() {
    let s = setup();
    let raws = raws_of(&s.good);
    let small_entry = Limits {
        max_entry: 16,
        ..Limits::default()
    };
    s.refused_with(&raws, small_entry, &["at most 16 bytes per file"]);
    let small_total = Limits {
        max_total: 200,
        ..Limits::default()
    };
    s.refused_with(&raws, small_total, &["at most 200 bytes in all"]);
    let few = Limits {
        max_entries: 3,
        ..Limits::default()
    };
    s.refused_with(&raws, few, &["at most 3 entries"]);
    // A gzip bomb-ish entry: 300 MiB of zeros is over the default per-entry cap.
    let mut raws = raws_of(&s.good);
    raws.push(file("lib/big.so", &vec![0u8; 300 << 20]));
    s.refused_with(&raws, Limits::default(), &["lib/big.so", "bytes per file"]);
}

#[test]
fn manifest_mismatches_are_refused() {
    let s = setup();
    let lib = "lib/libticker_server.so";

    // Wrong sha256: the library changed, the MANIFEST did not.
    let mut raws = raws_of(&s.good);
    raws.iter_mut().find(|r| r.path == lib).unwrap().data = b"tampered".to_vec();
    s.refused_with(&raws, Limits::default(), &[lib, "as the MANIFEST says"]);

    // The library changed and the MANIFEST was fixed up, but release.toml's sha256 was not.
    fix_manifest(&mut raws);
    s.refused_with(&raws, Limits::default(), &[lib, "as release.toml says"]);

    // The MANIFEST lists a file the archive lacks.
    let mut raws = raws_of(&s.good);
    raws.retain(|r| r.path != "config.toml");
    s.refused_with(
        &raws,
        Limits::default(),
        &["config.toml", "missing from the archive"],
    );

    // An extra file the MANIFEST does not list.
    let mut raws = raws_of(&s.good);
    raws.push(file("lib/extra.so", b"extra"));
    s.refused_with(&raws, Limits::default(), &["lib/extra.so", "not listed"]);

    // Duplicate entries.
    let mut raws = raws_of(&s.good);
    raws.push(file("release.toml", b"name = \"other\"\n"));
    s.refused_with(
        &raws,
        Limits::default(),
        &["release.toml", "duplicate entry"],
    );

    // No MANIFEST at all.
    let mut raws = raws_of(&s.good);
    raws.retain(|r| r.path != MANIFEST);
    s.refused_with(&raws, Limits::default(), &["no MANIFEST"]);

    // Not a tarball.
    let t = s.dir.join("junk.tar.gz");
    fs::write(&t, b"not gzip").unwrap();
    s.refused(&t, Limits::default(), &["gzip-compressed tar"]);
}

#[test]
fn other_name_and_known_version_are_refused() {
    let s = setup();
    let other = tarball(&s.dir, "other", "0.3.0");
    s.refused(&other, Limits::default(), &["`other`", "`ticker`"]);

    let again = tarball(&s.dir, "ticker", "0.1.0");
    let err = s.refused(
        &again,
        Limits::default(),
        &["0.1.0", "already known", "permanent"],
    );
    assert!(matches!(err, UnpackError::AlreadyKnown { .. }), "{err}");
    let r = Releases::load(&s.root).unwrap();
    assert_eq!(r.status(&v("0.1.0")), Some(ReleaseStatus::Permanent));

    // Still works after all those refusals.
    unpack(&s.root, &s.good).unwrap();
}

#[test]
fn pack_takes_a_top_level_appup_and_refreshes_sha256_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let src = release_dir(tmp.path(), "ticker", "0.2.0");
    fs::rename(src.join("appup/ticker.toml"), src.join("appup.toml")).unwrap();
    fs::remove_dir(src.join("appup")).unwrap();
    fs::remove_file(src.join("config.toml")).unwrap();
    let text = fs::read_to_string(src.join("release.toml")).unwrap();
    fs::write(
        src.join("release.toml"),
        text.replace(ZERO, &"ab".repeat(32)),
    )
    .unwrap();
    assert!(pack(&src, &tmp.path().join("out")).is_err());
    let t = relup_runtime::release::pack_with(
        &src,
        &tmp.path().join("out"),
        relup_runtime::release::PackOptions {
            refresh_sha256: true,
        },
    )
    .unwrap();
    let paths: Vec<String> = entries(&t).into_iter().map(|(p, _, _)| p).collect();
    assert_eq!(
        paths,
        [
            "MANIFEST",
            "appup/ticker.toml",
            "bin/ticker",
            "lib/libticker_server.so",
            "release.toml"
        ]
    );
    // Unpacks into a fresh root; the release has no config.toml, so config/config.toml
    // sets nothing (every declared key, if any, is a commented default).
    let root_path = tmp.path().join("root");
    deploy(&t, &root_path).unwrap();
    let root = ReleaseRoot::open(&root_path).unwrap();
    let live = fs::read_to_string(root.config_file()).unwrap();
    assert!(
        live.lines()
            .all(|l| l.is_empty() || l.starts_with('#') || l.starts_with('[')),
        "{live}"
    );
    assert_eq!(known_releases(&root).unwrap()[0].appups.len(), 1);
}

#[test]
fn launchers_run_relup_with_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let t1 = tarball(tmp.path(), "ticker", "0.1.0");
    let root_path = tmp.path().join("my root's dir");
    deploy(&t1, &root_path).unwrap();
    let root = ReleaseRoot::open(&root_path).unwrap();
    // A fake `relup` on PATH that prints its arguments one a line.
    let fake = tmp.path().join("fakebin");
    fs::create_dir(&fake).unwrap();
    fs::write(
        fake.join("relup"),
        "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n",
    )
    .unwrap();
    fs::set_permissions(fake.join("relup"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", fake.display());
    let abs = fs::canonicalize(&root_path).unwrap();
    let expected = format!("--root\n{}\nstatus\nx y\n", abs.display());
    // The installed launcher names the root literally.
    let out = std::process::Command::new(root.launcher("ticker"))
        .args(["status", "x y"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    // The packaged launcher finds the root from where it is installed (<root>/bin/<name>).
    let packaged = root.release_dir(&v("0.1.0")).join("bin/ticker");
    let copy = root.bin_dir().join("ticker2");
    fs::copy(&packaged, &copy).unwrap();
    let out = std::process::Command::new(&copy)
        .args(["status", "x y"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn tarballs_with_dot_slash_and_directory_entries_are_accepted() {
    let s = setup();
    let mut raws: Vec<Raw> = Vec::new();
    for dir in ["./", "./lib/", "./appup/", "./bin/"] {
        raws.push(Raw {
            path: dir.into(),
            kind: tar::EntryType::Directory,
            data: vec![],
            link: None,
        });
    }
    for mut r in raws_of(&s.good) {
        r.path = format!("./{}", r.path);
        raws.push(r);
    }
    let t = s.dir.join("gnu.tar.gz");
    write_raw(&t, &raws);
    let u = unpack(&s.root, &t).unwrap();
    assert_eq!(u.release.version, v("0.2.0"));
    assert!(u.dir.join("lib/libticker_server.so").is_file());
}

/// A PAX record `"<len> <key>=<value>\n"` (the length counts itself).
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// A PAX header entry with `records`.
fn pax(records: &[(&str, &str)]) -> Raw {
    Raw {
        path: "././@PaxHeader".into(),
        kind: tar::EntryType::XHeader,
        data: records.iter().flat_map(|(k, v)| pax_record(k, v)).collect(),
        link: None,
    }
}

/// A GNU long-name entry naming the next entry `name`.
fn long_name(name: &str) -> Raw {
    let mut data = name.as_bytes().to_vec();
    data.push(0);
    Raw {
        path: "././@LongLink".into(),
        kind: tar::EntryType::GNULongName,
        data,
        link: None,
    }
}

/// Every path under `dir` with its size, sorted (the hostile tarball being tried aside): a
/// snapshot to prove nothing was written.
fn snapshot(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            if rel != "hostile.tar.gz" {
                out.push((rel, if meta.is_dir() { 0 } else { meta.len() }));
            }
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn long_names_and_pax_headers_cannot_smuggle_paths_or_sizes() {
    let s = setup();
    let before = snapshot(&s.dir);
    let with = |extra: Vec<Raw>| {
        let mut raws = raws_of(&s.good);
        raws.extend(extra);
        raws
    };
    // Traversal and absolute paths hidden in a GNU long name or a PAX path.
    for name in ["../../evil", "lib/../../../evil", "/tmp/relup-evil"] {
        let hidden = vec![long_name(name), file("innocent", b"x")];
        s.refused_with(&with(hidden), Limits::default(), &[name]);
        let hidden = vec![pax(&[("path", name)]), file("innocent", b"x")];
        s.refused_with(&with(hidden), Limits::default(), &[name]);
    }
    // A PAX size record (another reader would see a different archive), a PAX link path.
    for key in ["size", "linkpath"] {
        let raws = with(vec![pax(&[(key, "10")]), file("innocent", b"x")]);
        s.refused_with(&raws, Limits::default(), &[&format!("PAX `{key}` record")]);
    }
    // Two long names for one entry; a long name at the very end.
    let raws = with(vec![long_name("a"), pax(&[("path", "b")]), file("c", b"x")]);
    s.refused_with(&raws, Limits::default(), &["second long name"]);
    let raws = with(vec![long_name("lib/dangling.so")]);
    s.refused_with(&raws, Limits::default(), &["describes no entry"]);
    // A directory carrying data (it would only be skipped), a file under a file.
    let raws = with(vec![Raw {
        path: "lib/data-dir".into(),
        kind: tar::EntryType::Directory,
        data: vec![0; 4096],
        link: None,
    }]);
    s.refused_with(
        &raws,
        Limits::default(),
        &["a directory with 4096 bytes of data"],
    );
    let raws = with(vec![file("release.toml/inside", b"x")]);
    s.refused_with(&raws, Limits::default(), &["release.toml/inside"]);
    // A long name over the metadata cap.
    let raws = with(vec![long_name(&"d/".repeat(40_000)), file("x", b"x")]);
    s.refused_with(&raws, Limits::default(), &["GNU long name of 80001 bytes"]);
    assert_eq!(
        snapshot(&s.dir),
        before,
        "nothing written outside the temp dir"
    );
}

#[test]
fn the_total_cap_counts_bytes_read_not_bytes_declared() {
    let s = setup();
    // Three 100-byte files whose headers declare 0 bytes, behind PAX size records in the
    // archive a lenient reader would honour: each file passes a check made on the declared
    // size only. Raw reading refuses the size record; and a header that understates its data
    // is caught by the running total.
    let mut raws = raws_of(&s.good);
    for i in 0..3 {
        raws.push(pax(&[("size", "100")]));
        raws.push(file(&format!("lib/extra{i}.so"), b""));
    }
    s.refused_with(&raws, Limits::default(), &["PAX `size` record"]);
    let mut raws = raws_of(&s.good);
    raws.push(file("lib/big.so", &[7u8; 300]));
    let total: u64 = raws.iter().map(|r| r.data.len() as u64).sum();
    let limits = Limits {
        max_total: total - 1,
        ..Limits::default()
    };
    s.refused_with(&raws, limits, &["bytes in all"]);
}

#[test]
fn a_release_with_a_long_file_name_still_unpacks() {
    // relup's own packer writes GNU long-name entries for paths over 100 bytes.
    let tmp = tempfile::tempdir().unwrap();
    let src = release_dir(tmp.path(), "ticker", "0.1.0");
    // The module library at a path over 100 bytes.
    let deep = format!("lib/{}/libticker_server.so", "n".repeat(150));
    fs::create_dir_all(src.join(&deep).parent().unwrap()).unwrap();
    fs::rename(src.join("lib/libticker_server.so"), src.join(&deep)).unwrap();
    let text = fs::read_to_string(src.join("release.toml")).unwrap();
    fs::write(
        src.join("release.toml"),
        text.replace("lib/libticker_server.so", &deep),
    )
    .unwrap();
    let t = pack(&src, &tmp.path().join("out")).unwrap();
    let root = tmp.path().join("root");
    let u = deploy(&t, &root).unwrap();
    let listed: Vec<&str> = u.manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert!(listed.contains(&deep.as_str()), "{listed:?}");
    assert!(
        fs::read(u.dir.join(&deep))
            .unwrap()
            .starts_with(b"\x7fELF fake library")
    );
    assert!(u.manifest.files.iter().any(|f| f.path == deep));
}

#[test]
fn a_hostile_tarball_dropped_in_place_is_refused_and_left_as_it_was() {
    let s = setup();
    let dir = s.root.release_dir(&v("0.2.0"));
    fs::create_dir_all(&dir).unwrap();
    let dropped = dir.join("ticker-0.2.0.tar.gz");
    let mut raws = raws_of(&s.good);
    raws.push(file("../../../evil", b"x"));
    write_raw(&dropped, &raws);
    let releases = fs::read(s.root.releases_file()).unwrap();
    let before = snapshot(&s.dir);
    let err = unpack_in_place(&s.root, &v("0.2.0"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`..`"), "{err}");
    assert_eq!(snapshot(&s.dir), before, "{err}");
    assert_eq!(fs::read(s.root.releases_file()).unwrap(), releases);
    // Another release's tarball dropped under 0.2.0 is refused too.
    fs::copy(tarball(&s.dir, "ticker", "0.3.0"), &dropped).unwrap();
    let before = snapshot(&s.dir);
    let err = unpack_in_place(&s.root, &v("0.2.0"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds release 0.3.0"), "{err}");
    assert_eq!(snapshot(&s.dir), before, "{err}");
}

#[test]
fn crash_recovery_repairs_only_what_an_interrupted_operation_left() {
    // (The crash harness, tests/crash.rs, kills real nodes at each step; this is what
    // recovery must leave alone.)
    let s = setup();
    let releases = s.root.releases_dir();
    // A tarball the operator dropped in place: no MANIFEST, untouched.
    let dropped = releases.join("0.2.0");
    fs::create_dir_all(&dropped).unwrap();
    fs::copy(&s.good, dropped.join("ticker-0.2.0.tar.gz")).unwrap();
    // An unpack that was renamed into place but not recorded and does not verify against its
    // MANIFEST: removed, with a line saying why (one that verifies is listed again, see
    // operator_faults.rs); a stale temp file of an atomic write: removed.
    let orphan = releases.join("0.3.0");
    fs::create_dir_all(&orphan).unwrap();
    fs::write(orphan.join(MANIFEST), "name = \"ticker\"\n").unwrap();
    fs::write(releases.join(".RELEASES.tmp-1-2-3"), "half").unwrap();
    let done = relup_runtime::release::recover(&s.root).unwrap();
    assert_eq!(done.len(), 3, "{done:?}");
    assert!(done[0].contains("does not verify"), "{done:?}");
    assert!(!orphan.exists() && dropped.join("ticker-0.2.0.tar.gz").is_file());
    assert_eq!(names(&releases), ["0.1.0", "0.2.0", "RELEASES"]);
    assert!(relup_runtime::release::recover(&s.root).unwrap().is_empty());
    // With RELEASES unreadable, nothing says what is listed: no directory is touched.
    fs::create_dir_all(&orphan).unwrap();
    fs::write(orphan.join(MANIFEST), "name = \"ticker\"\n").unwrap();
    fs::write(s.root.releases_file(), "not toml [").unwrap();
    assert!(relup_runtime::release::recover(&s.root).unwrap().is_empty());
    assert!(orphan.join(MANIFEST).is_file());
}
