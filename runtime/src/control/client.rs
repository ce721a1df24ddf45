//! The `relup` side of the control socket.

use super::protocol::{Event, Request};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

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
}

/// A connection to a node's control socket.
pub struct Client {
    stream: UnixStream,
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

    /// Sends `request` and hands every event to `on_event` until the final one, which is
    /// returned.
    pub fn request(
        mut self,
        request: &Request,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Event, ClientError> {
        let mut line =
            serde_json::to_string(request).map_err(|e| ClientError::Malformed(e.to_string()))?;
        line.push('\n');
        // A node that refuses the client answers and closes at once, possibly before the
        // request is written: its answer is still worth reading.
        let written = self.stream.write_all(line.as_bytes());
        let reader = BufReader::new(self.stream);
        for line in reader.lines() {
            let line = match line {
                Ok(line) => line,
                Err(e) => return Err(written.err().unwrap_or(e).into()),
            };
            let event: Event = serde_json::from_str(&line)
                .map_err(|e| ClientError::Malformed(format!("{e}: {line}")))?;
            if event.is_final() {
                return Ok(event);
            }
            on_event(&event);
        }
        written?;
        Err(ClientError::NoAnswer)
    }
}
