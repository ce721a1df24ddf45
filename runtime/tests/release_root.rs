//! The release root layout, atomic writes, and `releases/RELEASES`: load/save, invariant
//! errors with file and line, status transitions.

use relup_appup::ReleaseStatus;
use relup_runtime::release::{
    ReleaseEntry, ReleaseRoot, Releases, ReleasesError, StatusError, write_atomic,
};
use semver::Version;
use std::fs;
use std::os::unix::fs::PermissionsExt;

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn entry(vsn: &str, status: ReleaseStatus) -> ReleaseEntry {
    ReleaseEntry {
        version: v(vsn),
        status,
        unpacked_at: 100,
        installed_at: None,
        permanent_at: None,
    }
}

fn dir_names(dir: &std::path::Path) -> Vec<String> {
    let mut n: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn create_makes_every_directory_and_run_is_private() {
    let tmp = tempfile::tempdir().unwrap();
    let root = ReleaseRoot::create(tmp.path().join("r")).unwrap();
    for d in ["bin", "releases", "config", "log", "run"] {
        assert!(root.path.join(d).is_dir(), "{d}");
    }
    let mode = fs::metadata(root.run_dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(root.releases_file(), root.path.join("releases/RELEASES"));
    assert_eq!(
        root.release_tarball("ticker", &v("0.2.0")),
        root.path.join("releases/0.2.0/ticker-0.2.0.tar.gz")
    );
    assert_eq!(root.control_socket(), root.path.join("run/control.sock"));
    assert_eq!(root.upgrade_log(), root.path.join("log/upgrade.log"));
    assert_eq!(root.config_new(), root.path.join("config/config.toml.new"));
    assert_eq!(root.launcher("ticker"), root.path.join("bin/ticker"));

    // open: an existing root gets its missing directories back; a missing root is an error.
    fs::remove_dir(root.log_dir()).unwrap();
    fs::set_permissions(root.run_dir(), fs::Permissions::from_mode(0o755)).unwrap();
    let again = ReleaseRoot::open(&root.path).unwrap();
    assert!(again.log_dir().is_dir());
    let mode = fs::metadata(root.run_dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let err = ReleaseRoot::open(tmp.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn write_atomic_replaces_and_leaves_no_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("config.toml");
    write_atomic(&f, b"a = 1\n").unwrap();
    write_atomic(&f, b"a = 2\n").unwrap();
    assert_eq!(fs::read_to_string(&f).unwrap(), "a = 2\n");
    assert_eq!(dir_names(tmp.path()), vec!["config.toml"]);
    let err = write_atomic(&tmp.path().join("nodir/x"), b"").unwrap_err();
    assert!(err.to_string().contains("nodir"), "{err}");
}

#[test]
fn releases_save_load_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let root = ReleaseRoot::create(tmp.path()).unwrap();
    assert_eq!(Releases::load(&root).unwrap(), Releases::default());
    for vsn in ["0.1.0", "0.2.0", "0.3.0"] {
        fs::create_dir(root.release_dir(&v(vsn))).unwrap();
    }
    let mut r = Releases {
        name: Some("ticker".into()),
        releases: vec![
            entry("0.1.0", ReleaseStatus::Old),
            entry("0.2.0", ReleaseStatus::Permanent),
            entry("0.3.0", ReleaseStatus::Current),
        ],
    };
    r.releases[2].installed_at = Some(200);
    r.save(&root).unwrap();
    assert_eq!(Releases::load(&root).unwrap(), r);
    let text = fs::read_to_string(root.releases_file()).unwrap();
    assert!(text.contains("status = \"permanent\""), "{text}");
    assert!(text.contains("name = \"ticker\""), "{text}");
    assert_eq!(
        dir_names(&root.releases_dir()),
        ["0.1.0", "0.2.0", "0.3.0", "RELEASES"]
    );
}

#[test]
fn releases_load_errors_name_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let root = ReleaseRoot::create(tmp.path()).unwrap();
    fs::create_dir(root.release_dir(&v("0.1.0"))).unwrap();
    fs::create_dir(root.release_dir(&v("0.2.0"))).unwrap();
    let file = root.releases_file();
    let cases = [
        (
            "[[release]]\nversion = \"0.1.0\"\nstatus = \"running\"\nunpacked_at = 1\n",
            "RELEASES:3:",
            "running",
        ),
        ("[[release]\n", "RELEASES:1:", "expected"),
        (
            "[[release]]\nversion = \"0.1.0\"\nstatus = \"current\"\nunpacked_at = 1\n\n[[release]]\nversion = \"0.2.0\"\nstatus = \"current\"\nunpacked_at = 1\n",
            "RELEASES:7:",
            "at most one current release",
        ),
        (
            "[[release]]\nversion = \"0.1.0\"\nstatus = \"permanent\"\nunpacked_at = 1\n\n[[release]]\nversion = \"0.2.0\"\nstatus = \"permanent\"\nunpacked_at = 1\n",
            "RELEASES:7:",
            "at most one permanent release",
        ),
        (
            "[[release]]\nversion = \"0.1.0\"\nstatus = \"old\"\nunpacked_at = 1\n\n[[release]]\nversion = \"0.1.0\"\nstatus = \"unpacked\"\nunpacked_at = 1\n",
            "RELEASES:7:",
            "listed twice",
        ),
        (
            "[[release]]\nversion = \"0.1.0\"\nstatus = \"old\"\nunpacked_at = 1\n\n[[release]]\nversion = \"0.9.0\"\nstatus = \"unpacked\"\nunpacked_at = 1\n",
            "RELEASES:7:",
            "has no directory",
        ),
        (
            "[[release]]\nversion = \"0.1.0\"\nstatus = \"old\"\nunpacked_at = 1\nextra = 2\n",
            "RELEASES:",
            "extra",
        ),
    ];
    for (text, at, what) in cases {
        fs::write(&file, text).unwrap();
        let err = Releases::load(&root).unwrap_err().to_string();
        assert!(err.contains(at), "{err} should contain {at}");
        assert!(err.contains(what), "{err} should contain {what}");
        assert!(err.contains(&*file.to_string_lossy()), "{err}");
    }
}

#[test]
fn save_refuses_broken_invariants_and_keeps_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = ReleaseRoot::create(tmp.path()).unwrap();
    fs::create_dir(root.release_dir(&v("0.1.0"))).unwrap();
    let good = Releases {
        name: Some("ticker".into()),
        releases: vec![entry("0.1.0", ReleaseStatus::Permanent)],
    };
    good.save(&root).unwrap();
    let before = fs::read(root.releases_file()).unwrap();

    let mut two = good.clone();
    two.releases.push(entry("0.1.0", ReleaseStatus::Old));
    let err = two.save(&root).unwrap_err();
    assert!(matches!(err, ReleasesError::Invariant { .. }), "{err}");

    let mut nodir = good.clone();
    nodir.releases.push(entry("0.2.0", ReleaseStatus::Unpacked));
    let err = nodir.save(&root).unwrap_err().to_string();
    assert!(
        err.contains("0.2.0") && err.contains("no directory"),
        "{err}"
    );

    assert_eq!(fs::read(root.releases_file()).unwrap(), before);
    assert_eq!(dir_names(&root.releases_dir()), ["0.1.0", "RELEASES"]);
}

#[test]
fn status_transitions() {
    let mut r = Releases::default();
    r.add_unpacked(&v("0.1.0"), 1).unwrap();
    assert_eq!(
        r.add_unpacked(&v("0.1.0"), 2),
        Err(StatusError::AlreadyKnown {
            version: v("0.1.0"),
            status: ReleaseStatus::Unpacked
        })
    );
    // make_permanent needs current.
    let err = r.make_permanent(&v("0.1.0"), 2).unwrap_err();
    assert!(err.to_string().contains("unpacked"), "{err}");
    r.set_current(&v("0.1.0"), 3).unwrap();
    r.make_permanent(&v("0.1.0"), 4).unwrap();
    assert_eq!(r.status(&v("0.1.0")), Some(ReleaseStatus::Permanent));
    assert_eq!(r.running().unwrap().version, v("0.1.0"));

    r.add_unpacked(&v("0.2.0"), 5).unwrap();
    r.set_current(&v("0.2.0"), 6).unwrap();
    assert_eq!(r.status(&v("0.2.0")), Some(ReleaseStatus::Current));
    assert_eq!(r.running().unwrap().version, v("0.2.0"));
    assert_eq!(r.permanent().unwrap().version, v("0.1.0"));

    // Another install replaces the current one, which goes back to unpacked.
    r.add_unpacked(&v("0.3.0"), 7).unwrap();
    r.set_current(&v("0.3.0"), 8).unwrap();
    assert_eq!(r.status(&v("0.2.0")), Some(ReleaseStatus::Unpacked));
    // Going back to the permanent release: no current any more.
    r.set_current(&v("0.1.0"), 9).unwrap();
    assert_eq!(r.status(&v("0.3.0")), Some(ReleaseStatus::Unpacked));
    assert_eq!(r.status(&v("0.1.0")), Some(ReleaseStatus::Permanent));

    r.set_current(&v("0.3.0"), 10).unwrap();
    r.make_permanent(&v("0.3.0"), 11).unwrap();
    assert_eq!(r.status(&v("0.1.0")), Some(ReleaseStatus::Old));
    assert_eq!(r.status(&v("0.3.0")), Some(ReleaseStatus::Permanent));
    assert_eq!(r.get(&v("0.3.0")).unwrap().permanent_at, Some(11));
    assert!(r.check().is_ok());

    // remove: never permanent or current; unknown is an error.
    assert!(matches!(
        r.remove(&v("0.3.0")),
        Err(StatusError::BadStatus { .. })
    ));
    r.set_current(&v("0.2.0"), 12).unwrap();
    assert!(matches!(
        r.remove(&v("0.2.0")),
        Err(StatusError::BadStatus { .. })
    ));
    let err = r.remove(&v("9.9.9")).unwrap_err().to_string();
    assert!(
        err.contains("9.9.9") && err.contains("0.1.0 (old)"),
        "{err}"
    );
    assert_eq!(r.remove(&v("0.1.0")).unwrap().version, v("0.1.0"));
    assert_eq!(r.releases.len(), 2);
}
