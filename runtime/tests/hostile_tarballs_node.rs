//! Hostile tarballs handed to a running node (the release handler the control socket drives:
//! `relup unpack`, and `relup upgrade` of a tarball dropped in `releases/<vsn>/`): each is
//! refused with an error naming the tarball and what was wrong, nothing is written anywhere
//! in the test's directory, RELEASES is unchanged, and the node goes on running the same
//! processes, then upgrades normally from a good tarball. (The unpacker's own cases, with
//! their exact messages: `release_package.rs` and `unpack_bomb.rs`.)

mod common;

use common::{appup_v2, deploy_pair, fixtures, node, release_dir};
use flate2::Compression;
use flate2::write::GzEncoder;
use relup_fixture_counter_api::{Call, Reply};
use relup_runtime::handler::ReleaseHandler;
use relup_runtime::install::InstallOptions;
use relup_runtime::release::{PackOptions, pack_with};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// Removes the test's directory when the test ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every path under `dir` with its size (the tarball being tried aside).
fn snapshot(dir: &Path, skip: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if e.path() != skip {
                out.push((e.path(), if meta.is_dir() { 0 } else { meta.len() }));
            }
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The entries of a good tarball: (path, bytes).
fn entries(tarball: &Path) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(tarball).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (path, bytes)
        })
        .collect()
}

/// A tarball of `files` plus one extra raw entry (`kind`, `name`, `link`, `data`).
fn hostile(
    out: &Path,
    files: &[(String, Vec<u8>)],
    extra: Option<(tar::EntryType, &str, Option<&str>, &[u8])>,
) {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let mut append = |kind: tar::EntryType, name: &str, link: Option<&str>, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if let Some(link) = link {
            h.set_link_name(link).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    for (path, bytes) in files {
        append(tar::EntryType::Regular, path, None, bytes);
    }
    if let Some((kind, name, link, data)) = extra {
        append(kind, name, link, data);
    }
    std::fs::write(out, b.into_inner().unwrap().finish().unwrap()).unwrap();
}

#[test]
fn hostile_tarballs_leave_a_running_node_untouched() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hostile-tar-node-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let _cleanup = RemoveOnDrop(base.clone());
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
    let (root, good) = deploy_pair(&base, &r1, &r2);
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node.clone(), root.clone()).unwrap();
    node.call::<_, Reply>("c1", &Call::Add(40), T).unwrap();
    let pids = (node.whereis("c1").unwrap(), node.whereis("c2").unwrap());

    let files = entries(&good);
    // A valid tarball of another release (`other` 0.2.0): packed properly, wrong root.
    let r_other = release_dir(
        &base.join("src-other"),
        "0.2.0",
        &f.counter_v2,
        "2.0.0",
        None,
    );
    let manifest = std::fs::read_to_string(r_other.join("release.toml")).unwrap();
    std::fs::write(
        r_other.join("release.toml"),
        manifest.replacen("name = \"demo\"", "name = \"other\"", 1),
    )
    .unwrap();
    let other_name =
        entries(&pack_with(&r_other, &base.join("out-other"), PackOptions::default()).unwrap());
    let mut tampered = files.clone();
    tampered
        .iter_mut()
        .find(|(p, _)| p == "lib/libcounter.so")
        .unwrap()
        .1
        .push(0);
    let without_lib: Vec<_> = files
        .iter()
        .filter(|(p, _)| p != "lib/libcounter.so")
        .cloned()
        .collect();
    type Extra<'a> = Option<(tar::EntryType, &'a str, Option<&'a str>, &'a [u8])>;
    type Files = [(String, Vec<u8>)];
    let cases: Vec<(&str, &Files, Extra, &str)> = vec![
        (
            "dotdot",
            &files,
            Some((tar::EntryType::Regular, "../../../x", None, b"x")),
            "`..`",
        ),
        (
            "absolute",
            &files,
            Some((tar::EntryType::Regular, "/tmp/x", None, b"x")),
            "absolute path",
        ),
        (
            "symlink",
            &files,
            Some((tar::EntryType::Symlink, "lib/l", Some("/etc/passwd"), b"")),
            "symbolic link",
        ),
        (
            "hardlink",
            &files,
            Some((tar::EntryType::Link, "lib/h", Some("/etc/passwd"), b"")),
            "hard link",
        ),
        (
            "device",
            &files,
            Some((tar::EntryType::Block, "lib/sda", None, b"")),
            "device file",
        ),
        (
            "duplicate",
            &files,
            Some((tar::EntryType::Regular, "release.toml", None, b"x")),
            "duplicate entry",
        ),
        ("checksum", &tampered, None, "as the MANIFEST says"),
        ("missing", &without_lib, None, "missing from the archive"),
        ("other-name", &other_name, None, "`other`"),
    ];
    for (name, files, extra, needle) in cases {
        let tarball = base.join(format!("{name}.tar.gz"));
        hostile(&tarball, files, extra);
        let before = snapshot(&base, &tarball);
        let err = handler.unpack(&tarball, false).unwrap_err().to_string();
        assert!(err.contains(needle), "{name}: {err}");
        assert!(
            err.contains(&tarball.display().to_string()),
            "{name}: {err}"
        );
        assert_eq!(
            snapshot(&base, &tarball),
            before,
            "{name}: something was written"
        );
        // Dropped in place and upgraded to: refused too, the directory left as it was.
        let dir = root.release_dir(&semver::Version::new(0, 2, 0));
        std::fs::create_dir_all(&dir).unwrap();
        let dropped = dir.join("demo-0.2.0.tar.gz");
        std::fs::copy(&tarball, &dropped).unwrap();
        let before = snapshot(&base, &tarball);
        let err = handler
            .install(
                &semver::Version::new(0, 2, 0),
                &InstallOptions::default(),
                true,
                &mut |_| {},
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{name} in place: {err}");
        assert_eq!(snapshot(&base, &tarball), before, "{name} in place");
        std::fs::remove_dir_all(&dir).unwrap();
        // The node did not notice.
        assert_eq!(
            (node.whereis("c1").unwrap(), node.whereis("c2").unwrap()),
            pids
        );
        assert_eq!(
            node.call::<_, Reply>("c1", &Call::Get, T).unwrap(),
            Reply::Count(41)
        );
        assert_eq!(handler.running().release.version.to_string(), "0.1.0");
    }
    // And it upgrades from the good tarball, state migrated.
    handler.unpack(&good, false).unwrap();
    handler
        .install(
            &semver::Version::new(0, 2, 0),
            &InstallOptions::default(),
            true,
            &mut |_| {},
        )
        .unwrap();
    match node.call::<_, Reply>("c1", &Call::Describe, T).unwrap() {
        Reply::Description { version, count, .. } => {
            assert_eq!((version.as_str(), count), ("2.0.0", 41))
        }
        other => panic!("{other:?}"),
    }
    handler.stop(T);
    node.shutdown(T);
}
