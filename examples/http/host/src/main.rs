//! `relup-http`: the http example's host, the service's own binary.
//!
//! `relup-http serve --root R [--listen ADDR]` runs a relup node on the release root `R` (as
//! `relup start --foreground` does: boot of the permanent release, control socket, scheduled
//! upgrades, config watcher, signals) and, beside it, an axum HTTP server on tokio. Every
//! HTTP request crosses into relup at one place, [`bridge`]: it becomes an [`HttpRequest`],
//! a blocking `Node::call` to the process registered as `todos` runs on tokio's blocking pool
//! (`spawn_blocking`), and the [`HttpResponse`] the module answers is written back. Routing,
//! parsing and state live in the `todo_server` cdylib module, so `relup --root R upgrade
//! 0.2.0` changes them while the HTTP server keeps every connection open; requests that arrive
//! during the install wait in the process's mailbox and are answered by the new code.
//!
//! Any other command line is the whole `relup` command line (`relup::cli::main_with_beside`):
//! `relup-http --root R upgrade 0.2.0` works as `relup --root R upgrade 0.2.0` does, and
//! `relup-http --root R start` (in the background, or `--foreground`) runs the node with the
//! HTTP server beside it, listening on `RELUP_HTTP_LISTEN` (default 127.0.0.1:8080). Both
//! ways the HTTP server stops first when a stop is asked for (requests in flight finish on the
//! running node), then the node.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use relup::runtime::service::{Beside, Natives, RunningService, Service};
use relup_example_http_api::{HttpRequest, HttpResponse, SERVER_NAME};
use relup_runtime::Node;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a request waits for `todo_server` (an install suspends it for milliseconds).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the HTTP server listens by default (`serve --listen`, or `RELUP_HTTP_LISTEN` for
/// `start`).
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// How long a stop waits for the HTTP server to finish the requests in flight.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// How long a stopping server keeps answering on its open connections, each response saying
/// `connection: close`, before it closes those that stayed idle: a busy keep-alive client
/// (wrk) then sees its connection end after a response, never under a request it just sent.
/// After a handover (`relup restart`) the requests are answered by the node that took over.
const HTTP_LINGER: Duration = Duration::from_millis(500);

const USAGE: &str = "usage: relup-http serve [--root ROOT] [--listen ADDR]   (ROOT defaults to \
                     RELUP_ROOT, ADDR to 127.0.0.1:8080; port 0 picks a free one)\n       \
                     relup-http <relup command>...";

/// The options of `serve`.
struct Serve {
    root: PathBuf,
    listen: String,
}

fn parse_serve(args: &[OsString]) -> Result<Serve, String> {
    let mut root = std::env::var_os("RELUP_ROOT").map(PathBuf::from);
    let mut listen = DEFAULT_LISTEN.to_string();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.to_str() {
            Some("--root") => root = Some(PathBuf::from(value("--root")?)),
            Some("--listen") => {
                listen = value("--listen")?
                    .into_string()
                    .map_err(|a| format!("--listen {a:?} is not UTF-8"))?;
            }
            _ => return Err(format!("unexpected argument {arg:?}\n{USAGE}")),
        }
    }
    let root = root.ok_or_else(|| format!("no release root: --root or RELUP_ROOT\n{USAGE}"))?;
    Ok(Serve { root, listen })
}

/// Runs the node and the HTTP server until `relup stop`, SIGTERM or SIGINT.
fn serve(options: Serve) -> Result<(), String> {
    Service::new(&options.root)
        .run_beside(http_beside(options.listen))
        .map(|_| ())
        .map_err(|e| format!("cannot run a node on {}: {e}", options.root.display()))
}

/// The HTTP server, run beside the node once it serves (on the node's thread, after the stop
/// signals are blocked: tokio's threads inherit that). Prints `http listening on ADDR`.
fn http_beside(listen: String) -> Beside {
    Box::new(move |running: &RunningService| {
        let server = HttpServer::start(running, &listen)?;
        println!("http listening on {}", server.addr);
        Ok(Box::new(server))
    })
}

/// The running HTTP server; dropping it stops it gracefully (no new connection, requests in
/// flight answered, for at most [`HTTP_DRAIN`]).
struct HttpServer {
    addr: std::net::SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
    /// Set when it stops: every response says `connection: close`.
    closing: Arc<AtomicBool>,
}

/// What every request reaches: the node, and whether the server is closing.
#[derive(Clone)]
struct Bridge {
    node: Node,
    closing: Arc<AtomicBool>,
}

impl HttpServer {
    fn start(running: &RunningService, listen: &str) -> Result<HttpServer, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_io()
            .build()
            .map_err(|e| format!("cannot start tokio: {e}"))?;
        // Through the node, so that `relup restart` (a handover to a new node process) passes
        // the listening socket on: the address never stops accepting.
        let listener = running
            .listener("http", listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let listener = {
            let _in_runtime = runtime.enter();
            tokio::net::TcpListener::from_std(listener)
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?
        };
        let addr = listener
            .local_addr()
            .map_err(|e| format!("no local address: {e}"))?;
        let closing = Arc::new(AtomicBool::new(false));
        let app = Router::new().fallback(bridge).with_state(Bridge {
            node: running.node().clone(),
            closing: closing.clone(),
        });
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let (finished, done) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let stopped = async {
                let _ = stop.await;
            };
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
            let _ = finished.send(());
        });
        Ok(HttpServer {
            addr,
            runtime: Some(runtime),
            shutdown: Some(shutdown),
            done,
            closing,
        })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        std::thread::sleep(HTTP_LINGER);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = self.done.recv_timeout(HTTP_DRAIN);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Where the async world meets relup's processes: every HTTP request, whatever its method and
/// path, becomes one call to `todo_server`, made on tokio's blocking pool so that no runtime
/// thread waits on the node.
async fn bridge(State(bridge): State<Bridge>, method: Method, uri: Uri, body: Bytes) -> Response {
    let mut response = answer(bridge.node, method, uri, body).await;
    if bridge.closing.load(Ordering::SeqCst) {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// One request's answer from `todo_server`.
async fn answer(node: Node, method: Method, uri: Uri, body: Bytes) -> Response {
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return reply(HttpResponse::error(400, "the body is not UTF-8"));
    };
    let request = HttpRequest {
        method: method.as_str().to_string(),
        path: uri.path().to_string(),
        body,
    };
    let answer = tokio::task::spawn_blocking(move || {
        node.call::<_, HttpResponse>(SERVER_NAME, &request, CALL_TIMEOUT)
    })
    .await;
    match answer {
        Ok(Ok(response)) => reply(response),
        Ok(Err(e)) => reply(HttpResponse::error(
            503,
            &format!("{SERVER_NAME} did not answer: {e}"),
        )),
        Err(e) => reply(HttpResponse::error(500, &format!("the call failed: {e}"))),
    }
}

fn reply(response: HttpResponse) -> Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        response.body,
    )
        .into_response()
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "serve") {
        match parse_serve(&args[2..]).and_then(serve) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("relup-http: {e}");
                ExitCode::FAILURE
            }
        }
    } else {
        let listen = std::env::var("RELUP_HTTP_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.into());
        relup::cli::main_with_beside(Natives::new(), Some(http_beside(listen)))
    }
}
