//! The node's log file: the tracing subscriber `relup start` installs, writing every event to
//! standard error (which `relup start` points at `log/node.log`) in the node's line format.
//!
//! - A node or module line with a process: `<RFC 3339 time> [level] <name> <pid>: text`
//!   (`<name>` only when the process is registered), as before tracing;
//! - any other event: `<RFC 3339 time> [level] <spans>: text key=value...`, where `<spans>`
//!   are the phases it happened in (`commit{from=0.1.0 to=0.2.0 processes=1}`).
//!
//! Info and above. An embedder that installs its own subscriber first keeps it: this one is
//! only installed when none is set.

use relup_runtime::install::rfc3339;
use std::fmt::{self, Write as _};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the node-log subscriber as the global default unless one is set already; true
/// when it did.
pub fn install() -> bool {
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(Level::INFO)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .event_format(NodeLineFormat)
        .finish();
    tracing::subscriber::set_global_default(subscriber).is_ok()
}

/// The line format of `log/node.log` (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeLineFormat;

/// An event's fields: the message, the process, and the rest as `key=value`.
#[derive(Default)]
struct LineFields {
    message: String,
    pid: Option<String>,
    name: Option<String>,
    rest: String,
}

impl Visit for LineFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "name" => self.name = Some(value.to_string()),
            "pid" => self.pid = Some(value.to_string()),
            "message" => self.message = value.to_string(),
            other => {
                let _ = write!(self.rest, " {other}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "pid" => self.pid = Some(format!("{value:?}")),
            "name" => self.name = Some(format!("{value:?}")),
            other => {
                let _ = write!(self.rest, " {other}={value:?}");
            }
        }
    }
}

impl<S, N> FormatEvent<S, N> for NodeLineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = LineFields::default();
        event.record(&mut fields);
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        let at = rfc3339(std::time::SystemTime::now());
        write!(writer, "{at} [{level}] ")?;
        let target = event.metadata().target();
        let process_line = target == relup_runtime::trace::NODE_TARGET
            || target == relup_runtime::trace::MODULE_TARGET;
        if process_line {
            // The node's format before tracing: the module and version stay in the event's
            // fields for subscribers that want them, not in the file's lines.
            match (&fields.name, &fields.pid) {
                (Some(name), Some(pid)) => write!(writer, "{name} {pid}: ")?,
                (None, Some(pid)) => write!(writer, "{pid}: ")?,
                _ => {}
            }
            return writeln!(writer, "{}", fields.message);
        }
        if let Some(scope) = ctx.event_scope() {
            let mut first = true;
            for span in scope.from_root() {
                if !first {
                    writer.write_char(':')?;
                }
                first = false;
                write!(writer, "{}", span.name())?;
                let ext = span.extensions();
                if let Some(formatted) = ext.get::<FormattedFields<N>>()
                    && !formatted.is_empty()
                {
                    write!(writer, "{{{formatted}}}")?;
                }
            }
            if !first {
                writer.write_str(": ")?;
            }
        }
        writeln!(writer, "{}{}", fields.message, fields.rest)
    }
}
