//! The node logs through `tracing` (issue 20): a subscriber of the embedder's own (here a
//! small recording Layer on a registry, installed as the global default) receives one span
//! per upgrade phase with the release versions and process counts, the install's outcome,
//! and each module `ctx.log` line as an event with the module, its version and the pid; all
//! from a real unpack, a real failed-and-rolled-back install and a real upgrade of real
//! cdylibs on a release root.

mod common;

use common::{appup_v2, deploy_pair, fixtures, node, release_dir_with};
use relup_fixture_counter_api::{Call, Reply};
use relup_runtime::handler::{HandlerError, ReleaseHandler, UpgradeOptions};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

const T: Duration = Duration::from_secs(10);

/// Field name → value, as text.
type Fields = BTreeMap<String, String>;

#[derive(Default)]
struct FieldText(Fields);

impl Visit for FieldText {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

/// A span seen: name, target, fields (with later records).
#[derive(Clone, Debug)]
struct SpanSeen {
    name: &'static str,
    target: String,
    fields: Fields,
}

/// An event seen: target, fields, and the names of the spans it happened in (outermost
/// first).
#[derive(Clone, Debug)]
struct EventSeen {
    target: String,
    fields: Fields,
    scope: Vec<&'static str>,
}

#[derive(Default)]
struct Seen {
    spans: Vec<SpanSeen>,
    /// Live span id → index in `spans` (ids are reused after a close).
    live: HashMap<u64, usize>,
    events: Vec<EventSeen>,
}

/// The recording Layer.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Seen>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        let mut fields = FieldText::default();
        attrs.record(&mut fields);
        let mut seen = self.0.lock().unwrap();
        seen.spans.push(SpanSeen {
            name: attrs.metadata().name(),
            target: attrs.metadata().target().to_string(),
            fields: fields.0,
        });
        let index = seen.spans.len() - 1;
        seen.live.insert(id.into_u64(), index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut fields = FieldText::default();
        values.record(&mut fields);
        let mut seen = self.0.lock().unwrap();
        if let Some(&index) = seen.live.get(&id.into_u64()) {
            seen.spans[index].fields.extend(fields.0);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = FieldText::default();
        event.record(&mut fields);
        let scope = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().map(|s| s.name()).collect())
            .unwrap_or_default();
        self.0.lock().unwrap().events.push(EventSeen {
            target: event.metadata().target().to_string(),
            fields: fields.0,
            scope,
        });
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        self.0.lock().unwrap().live.remove(&id.into_u64());
    }
}

impl Recorder {
    /// Spans of the upgrade target named `name`.
    fn phases(&self, name: &str) -> Vec<SpanSeen> {
        let seen = self.0.lock().unwrap();
        seen.spans
            .iter()
            .filter(|s| s.target == "relup::upgrade" && s.name == name)
            .cloned()
            .collect()
    }

    fn events(&self, target: &str) -> Vec<EventSeen> {
        let seen = self.0.lock().unwrap();
        seen.events
            .iter()
            .filter(|e| e.target == target)
            .cloned()
            .collect()
    }
}

fn v(text: &str) -> semver::Version {
    semver::Version::parse(text).unwrap()
}

fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields.get(name).map_or("", String::as_str)
}

/// The one span of `phase` that went from 0.1.0 to 0.2.0 and touched the two counters.
fn assert_phase(recorder: &Recorder, phase: &str, processes: Option<&str>) {
    let spans = recorder.phases(phase);
    let found = spans.iter().any(|s| {
        field(&s.fields, "from") == "0.1.0"
            && field(&s.fields, "to") == "0.2.0"
            && processes.is_none_or(|p| field(&s.fields, "processes") == p)
    });
    assert!(
        found,
        "no {phase} span from 0.1.0 to 0.2.0 with processes={processes:?}; {phase} spans: {spans:#?}"
    );
}

#[test]
fn an_upgrade_reaches_the_embedders_subscriber_as_phase_spans_and_module_events() {
    let recorder = Recorder::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(recorder.clone()))
        .expect("no other subscriber in this test binary");

    let base =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tracing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let f = fixtures();
    // code_change refuses the counter whose count is 5 (c1 is made 5 for the failing try).
    let appup = appup_v2(r#"{ update = "counter", extra = "fail_count=5" }"#);
    let src = base.join("src");
    let r1 = release_dir_with(&src, "0.1.0", &f.counter_v1, "1.0.0", None, "");
    let r2 = release_dir_with(
        &src,
        "0.2.0",
        &f.counter_v2,
        "2.0.0",
        Some(&appup),
        "[probation]\nseconds = 1\nhealth_interval_ms = 100\n",
    );
    let (root, tarball) = deploy_pair(&base, &r1, &r2);
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node.clone(), root).unwrap();

    handler.unpack(&tarball, false).unwrap();
    let unpacks = recorder.phases("unpack");
    assert!(
        unpacks
            .iter()
            .any(|s| field(&s.fields, "from") == "0.1.0" && field(&s.fields, "to") == "0.2.0"),
        "{unpacks:#?}"
    );
    let verifies = recorder.phases("verify");
    assert!(
        verifies.iter().any(|s| field(&s.fields, "to") == "0.2.0"),
        "{verifies:#?}"
    );

    // A module's ctx.log line: an event with the module, its version and the pid.
    let c1 = node.whereis("c1").expect("c1 runs");
    let say = |line: &str| {
        let reply: Reply = node.call("c1", &Call::Log(line.to_string()), T).unwrap();
        assert_eq!(reply, Reply::Ok);
    };
    say("hello from 1.0.0");
    let module_event = |text: &str| {
        recorder
            .events("relup::module")
            .into_iter()
            .find(|e| field(&e.fields, "message") == text)
            .unwrap_or_else(|| panic!("no module event {text:?}"))
    };
    let before = module_event("hello from 1.0.0");
    assert_eq!(field(&before.fields, "module"), "counter");
    assert_eq!(field(&before.fields, "version"), "1.0.0");
    assert_eq!(field(&before.fields, "pid"), c1.to_string());
    assert_eq!(field(&before.fields, "name"), "c1");

    // A hop that fails at code_change (c1 at 5) is rolled back: a rollback span.
    let _: Reply = node.call("c1", &Call::Add(4), T).unwrap();
    let failing = UpgradeOptions {
        skip_check: true,
        probation: Some(Duration::ZERO),
        ..UpgradeOptions::default()
    };
    let error = handler
        .upgrade(&v("0.2.0"), &failing, &mut |_| {})
        .unwrap_err();
    assert!(matches!(error, HandlerError::Install { .. }), "{error}");
    assert_phase(&recorder, "rollback", None);

    // Then the real upgrade: check, load, suspend, code_change, resume, commit, probation.
    let _: Reply = node.call("c1", &Call::Add(1), T).unwrap();
    let report = handler
        .upgrade(&v("0.2.0"), &UpgradeOptions::default(), &mut |_| {})
        .unwrap();
    assert!(report.permanent, "{report:?}");
    assert_phase(&recorder, "check", Some("2"));
    assert_phase(&recorder, "load", None);
    assert_phase(&recorder, "suspend", Some("2"));
    assert_phase(&recorder, "code_change", Some("2"));
    assert_phase(&recorder, "resume", Some("2"));
    assert_phase(&recorder, "commit", Some("2"));
    assert_phase(&recorder, "probation", None);
    let suspend = recorder.phases("suspend");
    assert!(
        suspend
            .iter()
            .all(|s| field(&s.fields, "module") == "counter"),
        "{suspend:#?}"
    );

    // Each install's outcome is an event.
    let outcomes: Vec<String> = recorder
        .events("relup::upgrade")
        .iter()
        .filter_map(|e| e.fields.get("outcome").cloned())
        .collect();
    assert_eq!(outcomes, ["rolled_back", "ok"]);

    say("hello from 2.0.0");
    let after = module_event("hello from 2.0.0");
    assert_eq!(field(&after.fields, "version"), "2.0.0");
    assert_eq!(field(&after.fields, "pid"), c1.to_string());
    assert!(after.scope.is_empty(), "{after:?}");

    handler.stop(T);
    node.shutdown(T);
}
