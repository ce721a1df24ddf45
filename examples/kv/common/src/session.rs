//! One client connection's input: bytes that do not make a whole request yet wait here (in
//! the server's state, so they survive an upgrade), and whole requests are handed to the
//! server's command handler in order. Pipelined requests in one chunk are all handled, and
//! their replies leave in one write.

use crate::resp::{self, MAX_BULK};
use serde::{Deserialize, Serialize};

/// Most bytes one connection may leave waiting for the rest of a request; past it the
/// connection gets a protocol error and is closed.
pub const MAX_PENDING: usize = 2 * MAX_BULK;

/// Whether the connection stays open after a batch of requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Keep it.
    Continue,
    /// Send the replies, then close it (QUIT, protocol error).
    Close,
}

/// One connection's unparsed input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Bytes received that do not make a whole request yet.
    #[serde(with = "serde_bytes")]
    pending: Vec<u8>,
}

impl Session {
    /// Bytes waiting for the rest of their request.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds received bytes and runs `exec` on every whole request, in order, with replies
    /// appended to `out`. A malformed request gets `-ERR Protocol error` and closes.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        mut exec: impl FnMut(&[&[u8]], &mut Vec<u8>) -> After,
    ) -> After {
        let owned;
        let buf: &[u8] = if self.pending.is_empty() {
            bytes
        } else {
            self.pending.extend_from_slice(bytes);
            owned = std::mem::take(&mut self.pending);
            &owned
        };
        let mut pos = 0;
        loop {
            match resp::parse(&buf[pos..]) {
                Ok(Some((args, used))) => {
                    pos += used;
                    if args.is_empty() {
                        continue;
                    }
                    if exec(&args, out) == After::Close {
                        return After::Close;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    resp::error(out, &format!("ERR Protocol error: {e}"));
                    return After::Close;
                }
            }
        }
        let rest = &buf[pos..];
        if rest.len() > MAX_PENDING {
            resp::error(out, "ERR Protocol error: request too large");
            return After::Close;
        }
        self.pending = rest.to_vec();
        After::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_names(session: &mut Session, bytes: &[u8], seen: &mut Vec<String>) -> After {
        let mut out = Vec::new();
        session.feed(bytes, &mut out, |args, _| {
            seen.push(String::from_utf8_lossy(args[0]).into_owned());
            if args[0] == b"QUIT" {
                After::Close
            } else {
                After::Continue
            }
        })
    }

    #[test]
    fn requests_split_anywhere_and_pipelined_are_handled_once_in_order() {
        let stream = b"*1\r\n$4\r\nPING\r\nGET a\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n";
        for split in 0..stream.len() {
            let mut session = Session::default();
            let mut seen = Vec::new();
            echo_names(&mut session, &stream[..split], &mut seen);
            echo_names(&mut session, &stream[split..], &mut seen);
            assert_eq!(seen, ["PING", "GET", "GET"], "split at {split}");
            assert_eq!(session.pending(), 0);
        }
    }

    #[test]
    fn quit_and_protocol_errors_close() {
        let mut session = Session::default();
        let mut seen = Vec::new();
        assert_eq!(
            echo_names(&mut session, b"QUIT\r\nPING\r\n", &mut seen),
            After::Close
        );
        assert_eq!(seen, ["QUIT"]);
        let mut out = Vec::new();
        let after = Session::default().feed(b"*1\r\n:x\r\n", &mut out, |_, _| After::Continue);
        assert_eq!(after, After::Close);
        assert!(out.starts_with(b"-ERR Protocol error"));
    }
}
