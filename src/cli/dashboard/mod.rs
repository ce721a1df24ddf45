//! `relup dashboard` (issue 20): one web page on loopback, behind a random token printed at
//! start, that shows a node and runs the operator's actions through its control socket.
//!
//! - `http.rs`: the bounded std::net HTTP responder;
//! - `api.rs`: the JSON the page polls and the actions it posts;
//! - `page.html`: the page (inline CSS and JS, no framework, no CDN), embedded here.

mod api;
mod http;

use super::Failure;
use api::{Action, Api};
use http::{Response, read_request, write_response};
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The page, embedded in the binary.
const PAGE: &str = include_str!("page.html");
/// Connections served at once; more are answered 503 at once.
const MAX_CONNECTIONS: usize = 32;
/// Where the dashboard listens without `--listen`: loopback, a port the system picks.
const DEFAULT_LISTEN: &str = "127.0.0.1:0";

/// Why the dashboard cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// `--listen` is not an address.
    #[error("--listen {0:?} is not an address; expected e.g. 127.0.0.1:8080")]
    BadAddress(String),
    /// `--listen` is not loopback.
    #[error(
        "--listen {0} is not a loopback address: the dashboard serves this machine only (127.0.0.1 or [::1]); reach it from elsewhere through an SSH tunnel"
    )]
    NotLoopback(SocketAddr),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No random token could be made.
    #[error("cannot read /dev/urandom for the access token: {0}")]
    Random(std::io::Error),
}

/// A random token of 128 bits, in hex.
fn token() -> Result<String, DashboardError> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(DashboardError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares without stopping at the first difference (no timing hint about the token).
fn same(given: &str, token: &str) -> bool {
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The address to listen on, checked to be loopback.
fn listen_address(listen: Option<&str>) -> Result<SocketAddr, DashboardError> {
    let text = listen.unwrap_or(DEFAULT_LISTEN);
    let addr: SocketAddr = text
        .parse()
        .map_err(|_| DashboardError::BadAddress(text.to_string()))?;
    if !addr.ip().is_loopback() {
        return Err(DashboardError::NotLoopback(addr));
    }
    Ok(addr)
}

/// `relup dashboard`: serves until killed.
pub fn run(root: &Path, listen: Option<&str>, json: bool) -> Result<(), Failure> {
    let addr = listen_address(listen)?;
    let listener =
        TcpListener::bind(addr).map_err(|source| DashboardError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| DashboardError::Bind { addr, source })?;
    let token = token()?;
    let url = format!("http://{bound}/?token={token}");
    if json {
        super::output::print_json(&serde_json::json!({ "url": url, "root": root }));
    } else {
        // One write: a reader of the first line only (a script, the test) gets both lines
        // in the pipe before it goes away.
        print!(
            "dashboard of {}: {url}\n(loopback only; the token in the URL is the key: requests without it get 403)\n",
            root.display()
        );
    }
    // A script reads the URL from a pipe: it must not wait in a buffer.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let api = Arc::new(Api::new(root.to_path_buf()));
    let token: Arc<str> = token.into();
    let busy = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else {
            // Out of descriptors fails again at once: no spin.
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        };
        if busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            busy.fetch_sub(1, Ordering::SeqCst);
            write_response(&mut stream, &Response::text(503, "too many connections"));
            continue;
        }
        let (api, token, done) = (api.clone(), token.clone(), busy.clone());
        let spawned = std::thread::Builder::new()
            .name("relup-dashboard".into())
            .spawn(move || {
                serve(&api, &token, stream);
                done.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            busy.fetch_sub(1, Ordering::SeqCst);
        }
    }
    Ok(())
}

/// Answers one connection.
fn serve(api: &Arc<Api>, token: &str, mut stream: TcpStream) {
    let request = match read_request(&mut stream) {
        Ok(request) => request,
        Err(http::ReadError::Empty) => return,
        Err(e) => {
            write_response(&mut stream, &Response::text(e.status(), e.to_string()));
            return;
        }
    };
    let given = request
        .header("x-relup-token")
        .or_else(|| request.query_param("token"))
        .unwrap_or_default();
    let response = if !same(given, token) {
        Response::text(
            403,
            "forbidden: open the URL `relup dashboard` printed, with its token",
        )
    } else {
        route(api, &request)
    };
    write_response(&mut stream, &response);
}

fn route(api: &Arc<Api>, request: &http::Request) -> Response {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/") => Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: PAGE.as_bytes().to_vec(),
        },
        ("GET", "/api/state") => Response::json(200, &api.state()),
        ("POST", "/api/action") => {
            // A form of another site cannot set this header; the token is checked anyway.
            if request.header("x-relup-token").is_none() {
                return Response::text(403, "forbidden: actions need the X-Relup-Token header");
            }
            let action: Action = match serde_json::from_slice(&request.body) {
                Ok(action) => action,
                Err(e) => {
                    return Response::json(
                        400,
                        &serde_json::json!({ "error": format!("not an action: {e}") }),
                    );
                }
            };
            match api.start(action) {
                Ok(id) => Response::json(202, &serde_json::json!({ "id": id })),
                Err(error) => Response::json(400, &serde_json::json!({ "error": error })),
            }
        }
        (_, "/" | "/api/state" | "/api/action") => Response::text(405, "method not allowed"),
        _ => Response::text(404, "not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::{listen_address, same};

    #[test]
    fn only_loopback_is_served() {
        assert!(listen_address(None).is_ok());
        assert!(listen_address(Some("127.0.0.1:8080")).is_ok());
        assert!(listen_address(Some("[::1]:8080")).is_ok());
        assert!(listen_address(Some("0.0.0.0:8080")).is_err());
        assert!(listen_address(Some("192.168.1.2:80")).is_err());
        assert!(listen_address(Some("localhost")).is_err());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abcd", "abcd"));
        assert!(!same("abce", "abcd"));
        assert!(!same("abc", "abcd"));
        assert!(!same("", "abcd"));
    }
}
