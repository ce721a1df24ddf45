use relup_appup::*;

const REL: &str = r#"
name = "ticker"
version = "0.2.0"
[probation]
seconds = 30
max_crashes = 3
[[applications]]
name = "ticker"
version = "0.2.0"
[[applications.modules]]
name = "ticker_server"
file = "lib/libticker_server.so"
sha256 = "1111111111111111111111111111111111111111111111111111111111111111"
version = "0.2.0"
[applications.supervisor]
strategy = "one_for_one"
intensity = 3
period_secs = 5
[[applications.supervisor.children]]
id = "ticker"
module = "ticker_server"
args = { interval = 5 }
restart = "permanent"
shutdown_ms = 5000
[[applications.config]]
module = "ticker_server"
key = "interval_ms"
type = "integer"
default = 1000
range = [10, 60000]
"#;

const APPUP: &str = r#"
application = "ticker"
version = "0.2.0"
[[up]]
from = "0.1.0"
instructions = [
  { update = "ticker_server", extra = { a = 1 }, timeout_ms = 5000, purge = "soft", depends_on = [] },
]
[[down]]
to = ">=0.1.0, <0.2.0"
instructions = [ { update = "ticker_server", extra = {} } ]
"#;

#[test]
fn smoke() {
    let r = Release::parse(REL, "release.toml").unwrap();
    assert_eq!(r.applications[0].modules[0].name, "ticker_server");
    let a = Appup::parse(APPUP, "appup.toml").unwrap();
    let text = a.to_toml();
    println!("{text}");
    let b = Appup::parse(&text, "appup.toml").unwrap();
    assert_eq!(a, b);
    let e = Appup::parse("application = \"x\"\nversion = \"0.1\"\n", "bad.toml").unwrap_err();
    println!("{e}");
    let e = Appup::parse("application = \"x\"\nversion = \"0.1.0\"\n[[up]]\nfrom = \"0.0.1\"\ninstructions = [{ updte = \"m\" }]", "bad.toml").unwrap_err();
    println!("{e}");
    let e = Release::parse("name = 3", "r.toml").unwrap_err();
    println!("{e}");
}
