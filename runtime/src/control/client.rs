//! The `relup` side of the control socket.
//!
//! A client waits for each line of the node's answer at most its timeout (none unless
//! [`Client::with_timeout`] sets one): a node stopped with SIGSTOP, or one too busy to answer,
//! makes the request fail with [`ClientError::Timeout`] instead of hanging the caller forever.
//! [`Client::request_patiently`] lets the caller decide, at each silent timeout, whether to
//! wait another one (a long install may be silent for its whole probation).

use super::protocol::{Event, Request};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why talking to the node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No node listens on the socket.
    #[error("the node is not running (no answer on {path}: {source})")]
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        source: std::io::Error,
    },
    /// The connection broke.
    #[error("lost the connection to the node: {0}")]
    Io(#[from] std::io::Error),
    /// The node sent something that is not an event.
    #[error("the node sent a malformed response line: {0}")]
    Malformed(String),
    /// The connection closed before a final event.
    #[error("the node closed the connection before answering")]
    NoAnswer,
    /// The node reset the connection before a final event: it dropped the request (it could
    /// not start a thread for it, or it crashed), which may or may not have been carried out.
    #[error("the node dropped the request before answering ({source})")]
    Dropped {
        /// The reset.
        source: std::io::Error,
    },
    /// The node sent nothing for longer than the client's timeout.
    #[error(
        "the node sent nothing for {:.1} s (is it stopped with SIGSTOP, or overloaded?)",
        silent.as_secs_f64()
    )]
    Timeout {
        /// How long the node was silent when the client gave up.
        silent: Duration,
    },
}

/// A connection to a node's control socket.
pub struct Client {
    stream: UnixStream,
}

/// `error`, or [`ClientError::Dropped`] when it is the node resetting the connection.
fn broken(error: std::io::Error) -> ClientError {
    match error.kind() {
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => {
            ClientError::Dropped { source: error }
        }
        _ => ClientError::Io(error),
    }
}

/// Whether an I/O error is a socket timeout.
fn timed_out(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::NotRunning {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Client { stream })
    }

    /// Waits at most `timeout` for each line of the answer (and for the request to be
    /// written); `None` waits forever, as a new client does.
    pub fn with_timeout(self, timeout: Option<Duration>) -> Result<Client, ClientError> {
        // A zero timeout is refused by the socket: it means "forever" here too.
        let timeout = timeout.filter(|t| !t.is_zero());
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)?;
        Ok(self)
    }

    /// Sends `request` and hands every event to `on_event` until the final one, which is
    /// returned. A silence longer than the timeout is [`ClientError::Timeout`].
    pub fn request(
        self,
        request: &Request,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Event, ClientError> {
        self.request_patiently(request, on_event, &mut |_| false)
    }

    /// As [`Client::request`], but each time the node stays silent for the timeout,
    /// `keep_waiting` is asked (with how long the node has been silent) whether to wait
    /// another timeout; when it says no the request fails with [`ClientError::Timeout`].
    pub fn request_patiently(
        mut self,
        request: &Request,
        on_event: &mut dyn FnMut(&Event),
        keep_waiting: &mut dyn FnMut(Duration) -> bool,
    ) -> Result<Event, ClientError> {
        let mut line =
            serde_json::to_string(request).map_err(|e| ClientError::Malformed(e.to_string()))?;
        line.push('\n');
        // A node that refuses the client answers and closes at once, possibly before the
        // request is written: its answer is still worth reading.
        let written = self.stream.write_all(line.as_bytes());
        let mut reader = BufReader::new(self.stream);
        let mut line = Vec::new();
        let mut last_heard = Instant::now();
        loop {
            // A line cut by a timeout stays in `line` and is completed by the next read.
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if timed_out(&e) => {
                    let silent = last_heard.elapsed();
                    if keep_waiting(silent) {
                        continue;
                    }
                    return Err(ClientError::Timeout { silent });
                }
                // A reset while reading is the node dropping the request, whatever the write
                // said.
                Err(e) => return Err(broken(e)),
            }
            // A line without its newline (the end of the stream) is still parsed.
            last_heard = Instant::now();
            let event: Event = serde_json::from_slice(&line).map_err(|e| {
                ClientError::Malformed(format!("{e}: {}", String::from_utf8_lossy(&line).trim()))
            })?;
            line.clear();
            if event.is_final() {
                return Ok(event);
            }
            on_event(&event);
        }
        match written {
            Err(e) if timed_out(&e) => Err(ClientError::Timeout {
                silent: last_heard.elapsed(),
            }),
            Err(e) => Err(broken(e)),
            Ok(()) => Err(ClientError::NoAnswer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    /// A fake node on a socket in a temporary directory: `serve` gets the accepted stream.
    fn node(serve: impl FnOnce(UnixStream) + Send + 'static) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 64];
            let _ = stream.read(&mut request);
            serve(stream);
        });
        (dir, path)
    }

    #[test]
    fn a_silent_node_times_out_unless_the_caller_keeps_waiting() {
        // Silent until the client has given up: a plain request times out.
        let (gave_up_tx, gave_up_rx) = crossbeam_channel::bounded::<()>(1);
        let (_dir, path) = node(move |stream| {
            let _ = gave_up_rx.recv();
            drop(stream);
        });
        let client = Client::connect(&path)
            .unwrap()
            .with_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let e = client.request(&Request::Status, &mut |_| {}).unwrap_err();
        let _ = gave_up_tx.send(());
        assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("SIGSTOP"), "{e}");

        // A node that sends half a line, stays silent past the timeout, then the rest: the
        // caller keeps waiting and gets the whole event.
        let (silent_tx, silent_rx) = crossbeam_channel::unbounded::<Duration>();
        let (_dir, path) = node(move |mut stream| {
            stream.write_all(b"{\"event\":\"note\",\"te").unwrap();
            // Twice silent past the timeout.
            for _ in 0..2 {
                let _ = silent_rx.recv();
            }
            stream
                .write_all(b"xt\":\"hello\"}\n{\"event\":\"done\",\"result\":7}\n")
                .unwrap();
        });
        let client = Client::connect(&path)
            .unwrap()
            .with_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut notes = Vec::new();
        let mut asked = 0;
        let last = client
            .request_patiently(
                &Request::Status,
                &mut |e| notes.push(e.clone()),
                &mut |silent| {
                    asked += 1;
                    let _ = silent_tx.send(silent);
                    true
                },
            )
            .unwrap();
        assert!(asked >= 2, "asked {asked} times");
        assert_eq!(
            notes,
            vec![Event::Note {
                text: "hello".into()
            }]
        );
        assert_eq!(
            last,
            Event::Done {
                result: serde_json::json!(7)
            }
        );
    }

    #[test]
    fn a_node_that_resets_the_connection_dropped_the_request() {
        // Closing with the request unread resets the connection (the node could not start a
        // thread for it): the client says the node dropped it, not "lost the connection".
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let client = Client::connect(&path)
            .unwrap()
            .with_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let node = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // One byte of the request: the rest stays unread.
            let mut byte = [0u8; 1];
            let _ = stream.read(&mut byte);
            drop(stream);
        });
        let e = client.request(&Request::Status, &mut |_| {}).unwrap_err();
        node.join().unwrap();
        assert!(matches!(e, ClientError::Dropped { .. }), "{e:?}");
        assert!(e.to_string().contains("dropped the request"), "{e}");
    }
}
