//! Shared builders for the tests: release.toml texts from short descriptions.
#![allow(dead_code)]

use relup_appup::*;

/// A module: name and one hex digit repeated as its sha256.
pub type M<'a> = (&'a str, char);

/// release.toml text for release `ticker` `version` with one application `ticker` of the same
/// version, the given modules, and one worker child per entry of `children` (id, module).
pub fn release_text(version: &str, modules: &[M<'_>], children: &[(&str, &str)]) -> String {
    release_text_apps(version, &[("ticker", version, modules, children)])
}

/// One application: (name, version, modules, children as (id, module)).
pub type App<'a> = (&'a str, &'a str, &'a [M<'a>], &'a [(&'a str, &'a str)]);

/// Several applications.
pub fn release_text_apps(version: &str, apps: &[App<'_>]) -> String {
    let mut s = format!("name = \"ticker\"\nversion = \"{version}\"\n");
    for (name, av, modules, children) in apps {
        s.push_str(&format!(
            "\n[[applications]]\nname = \"{name}\"\nversion = \"{av}\"\n"
        ));
        for (m, c) in modules.iter() {
            s.push_str(&format!(
                "[[applications.modules]]\nname = \"{m}\"\nfile = \"lib/lib{m}.so\"\nsha256 = \"{}\"\n",
                c.to_string().repeat(64)
            ));
        }
        if !children.is_empty() {
            s.push_str(
                "[applications.supervisor]\nstrategy = \"one_for_one\"\nintensity = 3\nperiod_secs = 5\n",
            );
            for (id, m) in children.iter() {
                s.push_str(&format!(
                    "[[applications.supervisor.children]]\nid = \"{id}\"\nmodule = \"{m}\"\n"
                ));
            }
        }
    }
    s
}

pub fn release(version: &str, modules: &[M<'_>], children: &[(&str, &str)]) -> Release {
    match Release::parse(&release_text(version, modules, children), "release.toml") {
        Ok(r) => r,
        Err(e) => panic!("fixture release {version}: {e}"),
    }
}

pub fn appup(text: &str) -> Appup {
    match Appup::parse(text, "appup.toml") {
        Ok(a) => a,
        Err(e) => panic!("fixture appup: {e}"),
    }
}

pub fn known(release: &Release, status: ReleaseStatus, appups: Vec<Appup>) -> KnownRelease {
    KnownRelease {
        release: release.clone(),
        status,
        appups,
    }
}
