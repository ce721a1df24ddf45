//! The metrics endpoint: a minimal HTTP/1.1 responder on a loopback `TcpListener` for one
//! resource, `GET /metrics`.
//!
//! Why not an HTTP crate: one GET of one page needs no router, no keep-alive, no TLS, and no
//! async runtime in the node; this is ~150 lines with the limits a public-facing server would
//! need anyway. Robustness: it binds loopback addresses only; each connection gets read and
//! write timeouts ([`IO_TIMEOUT`]); a request head over [`MAX_REQUEST`] bytes is refused with
//! 431; only `GET` (and `HEAD`) of `/metrics` are answered, anything else gets 404/405; every
//! response closes the connection. Connections are served one at a time on the endpoint's
//! thread: a stalled client holds the next scrape for at most [`IO_TIMEOUT`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a client may take to send its request or read the response.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read (request line and headers), in bytes.
pub const MAX_REQUEST: usize = 8 * 1024;

/// What renders the page for each scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address is not a loopback one.
    #[error(
        "metrics listen address {addr} (from {origin}) is not a loopback address: the \
         endpoint serves 127.0.0.1 or ::1 only (scrape it through a local agent or proxy)"
    )]
    NotLoopback {
        /// The address given.
        addr: SocketAddr,
        /// Where it came from (release.toml or the environment).
        origin: String,
    },
    /// The address does not parse.
    #[error(
        "metrics listen address {value:?} (from {origin}): expected IP:PORT such as 127.0.0.1:9568"
    )]
    BadAddress {
        /// The text given.
        value: String,
        /// Where it came from.
        origin: String,
    },
    /// The socket could not be bound or its thread started.
    #[error("metrics endpoint on {addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// A running metrics endpoint; dropping it stops it.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Serves `render`'s page at `http://addr/metrics`; `origin` names where `addr` came from
    /// (for errors). Port 0 picks a free port ([`MetricsServer::addr`] says which).
    pub fn bind(
        addr: SocketAddr,
        origin: &str,
        render: Render,
    ) -> Result<MetricsServer, MetricsError> {
        if !addr.ip().is_loopback() {
            return Err(MetricsError::NotLoopback {
                addr,
                origin: origin.to_string(),
            });
        }
        let listener =
            TcpListener::bind(addr).map_err(|source| MetricsError::Io { addr, source })?;
        MetricsServer::serve(listener, origin, render)
    }

    /// Serves `render`'s page on `listener`, a loopback socket already listening (one a
    /// handover passed on, say); `origin` names where its address came from.
    pub fn serve(
        listener: TcpListener,
        origin: &str,
        render: Render,
    ) -> Result<MetricsServer, MetricsError> {
        let addr = listener.local_addr().map_err(|source| MetricsError::Io {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            source,
        })?;
        if !addr.ip().is_loopback() {
            return Err(MetricsError::NotLoopback {
                addr,
                origin: origin.to_string(),
            });
        }
        let io = |source| MetricsError::Io { addr, source };
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("relup-metrics".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    // A failed accept (out of descriptors) is retried with the next one.
                    if let Ok(conn) = conn {
                        let _ = serve(conn, &render);
                    }
                }
            })
            .map_err(io)?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept; the thread then sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Parses `value` as the endpoint's address (`origin`: where it came from).
pub fn parse_listen(value: &str, origin: &str) -> Result<SocketAddr, MetricsError> {
    value
        .trim()
        .parse::<SocketAddr>()
        .map_err(|_| MetricsError::BadAddress {
            value: value.to_string(),
            origin: origin.to_string(),
        })
}

/// Answers one connection.
fn serve(mut conn: TcpStream, render: &Render) -> std::io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = match read_head(&mut conn)? {
        Some(head) => head,
        None => return respond(&mut conn, "431 Request Header Fields Too Large", "", false),
    };
    let mut parts = head.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => respond(&mut conn, "200 OK", &render(), method == "HEAD"),
        ("GET" | "HEAD", _) => respond(
            &mut conn,
            "404 Not Found",
            "not found: try /metrics\n",
            false,
        ),
        _ => respond(
            &mut conn,
            "405 Method Not Allowed",
            "GET /metrics only\n",
            false,
        ),
    }
}

/// Reads the request head (up to the blank line); its first line, or `None` when it is
/// longer than [`MAX_REQUEST`]. A client that closes early gives what it sent.
fn read_head(conn: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() > MAX_REQUEST {
            return Ok(None);
        }
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    Ok(Some(
        text.lines().next().unwrap_or("").trim_end().to_string(),
    ))
}

fn respond(conn: &mut TcpStream, status: &str, body: &str, head_only: bool) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    conn.write_all(out.as_bytes())?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.write_all(request).unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_the_page_refuses_the_rest_and_bounds_the_request() {
        let server = MetricsServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            "test",
            Arc::new(|| "relup_up 1\n".to_string()),
        )
        .unwrap();
        let addr = server.addr();
        let ok = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nrelup_up 1\n"), "{ok}");
        assert!(get(addr, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        // One byte over the limit, no end of head: all of it is read before the refusal.
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_REQUEST + 1, b'a');
        assert!(get(addr, &huge).starts_with("HTTP/1.1 431"));
        drop(server);
        assert!(
            TcpStream::connect(addr).is_err(),
            "still listening after drop"
        );
    }

    #[test]
    fn only_loopback_addresses_are_served() {
        let error = MetricsServer::bind(
            "0.0.0.0:0".parse().unwrap(),
            "release.toml",
            Arc::new(String::new),
        )
        .unwrap_err();
        assert!(matches!(error, MetricsError::NotLoopback { .. }), "{error}");
        assert!(parse_listen("localhost", "RELUP_METRICS_LISTEN").is_err());
    }
}
