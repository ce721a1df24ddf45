//! The dashboard's HTTP: one request per connection, read with bounds (head size, body size,
//! one deadline for the whole request), answered with `Connection: close`.
//!
//! This is all the dashboard needs from HTTP (a page, a JSON endpoint polled every second,
//! a POST per action, from one operator's browser on loopback), so a std::net responder of a
//! hundred lines stands in for a server crate.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body (an action is a small JSON object).
pub const MAX_BODY: usize = 16 * 1024;
/// How long a client may take to send its whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write of the response may stall.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string (after `?`), raw.
    pub query: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of query parameter `name` (percent-decoding is not needed for the token, a
    /// hex string; other values are not read from the query).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// Why a request could not be read; the text goes back as a 400 (or 408, 413).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The client sent nothing at all (a probe, a closed keep-alive).
    #[error("no request")]
    Empty,
    /// Too slow.
    #[error("no complete request within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    /// Head or body too large.
    #[error("{what} larger than {limit} bytes")]
    TooLarge {
        /// `request head` or `request body`.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Not HTTP as expected.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The connection failed.
    #[error("cannot read the request: {0}")]
    Io(std::io::Error),
}

impl ReadError {
    /// The HTTP status answering it.
    pub fn status(&self) -> u16 {
        match self {
            ReadError::Timeout => 408,
            ReadError::TooLarge { .. } => 413,
            _ => 400,
        }
    }
}

/// Reads from `stream` into `buf` until `until`, however slowly the bytes come.
fn read_some(stream: &mut TcpStream, buf: &mut [u8], until: Instant) -> Result<usize, ReadError> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ReadError::Timeout);
    }
    stream.set_read_timeout(Some(left)).map_err(ReadError::Io)?;
    match stream.read(buf) {
        Ok(n) => Ok(n),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(ReadError::Timeout)
        }
        Err(e) => Err(ReadError::Io(e)),
    }
}

/// Reads one request from `stream` within [`REQUEST_TIMEOUT`].
pub fn read_request(stream: &mut TcpStream) -> Result<Request, ReadError> {
    let until = Instant::now() + REQUEST_TIMEOUT;
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if data.len() > MAX_HEAD {
            return Err(ReadError::TooLarge {
                what: "request head",
                limit: MAX_HEAD,
            });
        }
        let n = read_some(stream, &mut chunk, until)?;
        if n == 0 {
            return Err(if data.is_empty() {
                ReadError::Empty
            } else {
                ReadError::Malformed("the connection closed inside the request head".into())
            });
        }
        data.extend_from_slice(&chunk[..n]);
    };
    if head_end > MAX_HEAD {
        return Err(ReadError::TooLarge {
            what: "request head",
            limit: MAX_HEAD,
        });
    }
    let head = std::str::from_utf8(&data[..head_end])
        .map_err(|_| ReadError::Malformed("the request head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed(format!(
            "request line {request_line:?}, expected `METHOD /path HTTP/1.1`"
        )));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Malformed(format!(
            "version {version:?}, expected HTTP/1.x"
        )));
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Malformed(format!("header line {line:?}")));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
    };
    if request.header("transfer-encoding").is_some() {
        return Err(ReadError::Malformed(
            "chunked bodies are not taken; send Content-Length".into(),
        ));
    }
    let length = match request.header("content-length") {
        None => 0,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| ReadError::Malformed(format!("Content-Length {text:?}")))?,
    };
    if length > MAX_BODY {
        return Err(ReadError::TooLarge {
            what: "request body",
            limit: MAX_BODY,
        });
    }
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let n = read_some(stream, &mut chunk, until)?;
        if n == 0 {
            return Err(ReadError::Malformed(
                "the body is shorter than Content-Length".into(),
            ));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    request.body = body;
    Ok(request)
}

/// A response.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The content type.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }

    /// A plain text response.
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: text.into().into_bytes(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// What the page may load and run: its own inline script and style, requests to this
/// server only; no frames, no forms posted elsewhere.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Writes `response` and closes the connection (errors are the client's problem).
pub fn write_response(stream: &mut TcpStream, response: &Response) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nContent-Security-Policy: {CSP}\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(&response.body))
        .and_then(|()| stream.flush());
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if response.status >= 400 {
        // A request refused before it was read whole (too large) leaves bytes unread:
        // closing on them would reset the connection and could lose the answer. Read a
        // bounded amount for a moment first.
        let until = Instant::now() + LINGER;
        let (mut chunk, mut left) = ([0u8; 4096], MAX_LINGER_BYTES);
        while left > 0 && matches!(read_some(stream, &mut chunk, until), Ok(n) if n > 0) {
            left = left.saturating_sub(chunk.len());
        }
    }
}

/// How long an error answer waits for the client to stop sending before closing.
const LINGER: Duration = Duration::from_secs(1);
/// How much of a refused request is read and thrown away before closing.
const MAX_LINGER_BYTES: usize = 256 * 1024;
