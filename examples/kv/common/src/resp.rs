//! RESP, the Redis protocol: parsing requests (multibulk `*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`
//! and inline `PING\r\n`) and encoding replies.
//!
//! The parser never panics on input: every malformed or oversize request is a
//! [`ProtoError`], which the server answers with `-ERR Protocol error: ...` and then closes the
//! connection, as Redis does.

use std::fmt;

/// Longest argument (bulk string) accepted.
pub const MAX_BULK: usize = 16 * 1024 * 1024;
/// Most arguments in one request.
pub const MAX_ARGS: usize = 1024 * 1024;
/// Longest inline request line, and longest `*<n>` / `$<n>` header line.
pub const MAX_INLINE: usize = 64 * 1024;

/// A malformed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtoError {
    /// `*<n>` with a bad or too large n.
    MultibulkLength,
    /// `$<n>` with a bad or too large n.
    BulkLength,
    /// Something else where `$` was expected.
    ExpectedDollar(u8),
    /// A bulk string not followed by CRLF.
    ExpectedCrlf,
    /// An inline request or header line longer than [`MAX_INLINE`].
    TooBig,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::MultibulkLength => f.write_str("invalid multibulk length"),
            ProtoError::BulkLength => f.write_str("invalid bulk length"),
            ProtoError::ExpectedDollar(got) => {
                write!(
                    f,
                    "expected '$', got '{}'",
                    char::from(*got).escape_default()
                )
            }
            ProtoError::ExpectedCrlf => f.write_str("expected CRLF after a bulk string"),
            ProtoError::TooBig => f.write_str("too big inline request"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// One parsed request: its arguments, borrowed from the input, and how many bytes it took.
pub type Parsed<'a> = (Vec<&'a [u8]>, usize);

/// Parses one request from the start of `buf`. `Ok(None)`: incomplete, wait for more bytes.
/// An empty argument list (a blank inline line, `*0`) is a request to skip.
pub fn parse(buf: &[u8]) -> Result<Option<Parsed<'_>>, ProtoError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf),
        Some(_) => parse_inline(buf),
    }
}

/// Position of the `\r\n` that ends the line starting at `from`, if there is one.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    rest.windows(2).position(|w| w == b"\r\n").map(|i| from + i)
}

/// A strict decimal integer: optional `-`, digits, no overflow.
pub fn parse_int(digits: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(digits).ok()?;
    if text.is_empty() || text.starts_with('+') || (text.len() > 1 && text.starts_with("-0")) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    text.parse().ok()
}

/// A header line `<c><n>\r\n` at `at`: the number and where the next line starts.
fn header(buf: &[u8], at: usize, bad: ProtoError) -> Result<Option<(i64, usize)>, ProtoError> {
    match line_end(buf, at + 1) {
        None if buf.len() - at > MAX_INLINE => Err(ProtoError::TooBig),
        None => Ok(None),
        Some(end) => parse_int(&buf[at + 1..end])
            .map(|n| Some((n, end + 2)))
            .ok_or(bad),
    }
}

fn parse_multibulk(buf: &[u8]) -> Result<Option<Parsed<'_>>, ProtoError> {
    let Some((count, mut pos)) = header(buf, 0, ProtoError::MultibulkLength)? else {
        return Ok(None);
    };
    if count <= 0 {
        return Ok(Some((Vec::new(), pos)));
    }
    let count = usize::try_from(count).map_err(|_| ProtoError::MultibulkLength)?;
    if count > MAX_ARGS {
        return Err(ProtoError::MultibulkLength);
    }
    let mut args = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        match buf.get(pos) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(other) => return Err(ProtoError::ExpectedDollar(*other)),
        }
        let Some((len, start)) = header(buf, pos, ProtoError::BulkLength)? else {
            return Ok(None);
        };
        let len = usize::try_from(len).map_err(|_| ProtoError::BulkLength)?;
        if len > MAX_BULK {
            return Err(ProtoError::BulkLength);
        }
        let end = start + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtoError::ExpectedCrlf);
        }
        args.push(&buf[start..end]);
        pos = end + 2;
    }
    Ok(Some((args, pos)))
}

fn parse_inline(buf: &[u8]) -> Result<Option<Parsed<'_>>, ProtoError> {
    let Some(newline) = buf.iter().position(|b| *b == b'\n') else {
        return if buf.len() > MAX_INLINE {
            Err(ProtoError::TooBig)
        } else {
            Ok(None)
        };
    };
    if newline > MAX_INLINE {
        return Err(ProtoError::TooBig);
    }
    let line = buf[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..newline]);
    let args = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|a| !a.is_empty())
        .collect();
    Ok(Some((args, newline + 1)))
}

/// `+text\r\n`.
pub fn simple(out: &mut Vec<u8>, text: &str) {
    out.push(b'+');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `-text\r\n` (line breaks in `text` become spaces).
pub fn error(out: &mut Vec<u8>, text: &str) {
    out.push(b'-');
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// `:n\r\n`.
pub fn int(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `$len\r\nbytes\r\n`.
pub fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// The null bulk string `$-1\r\n` (GET of a missing key).
pub fn nil(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// `*n\r\n`, followed by n replies.
pub fn array(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(buf: &[u8]) -> (Vec<String>, usize) {
        let (args, used) = parse(buf).unwrap().unwrap();
        (
            args.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
            used,
        )
    }

    #[test]
    fn multibulk_and_inline_requests() {
        let req = b"*3\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$3\r\nxxx\r\nrest";
        assert_eq!(
            args(req),
            (vec!["SET".into(), "key:1".into(), "xxx".into()], 33)
        );
        assert_eq!(args(b"PING\r\n"), (vec!["PING".into()], 6));
        assert_eq!(args(b"  get   k \n"), (vec!["get".into(), "k".into()], 11));
        assert_eq!(args(b"\r\n"), (vec![], 2));
        assert_eq!(args(b"*0\r\n"), (vec![], 4));
        assert_eq!(args(b"*1\r\n$0\r\n\r\n"), (vec![String::new()], 10));
    }

    #[test]
    fn every_prefix_of_a_request_is_incomplete_not_an_error() {
        let req = b"*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n";
        for cut in 0..req.len() {
            assert_eq!(parse(&req[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse(req).unwrap().is_some());
        assert_eq!(parse(b"PIN"), Ok(None));
    }

    #[test]
    fn malformed_requests_are_errors() {
        assert_eq!(parse(b"*x\r\n"), Err(ProtoError::MultibulkLength));
        assert_eq!(parse(b"*99999999\r\n"), Err(ProtoError::MultibulkLength));
        assert_eq!(
            parse(b"*1\r\n:1\r\n"),
            Err(ProtoError::ExpectedDollar(b':'))
        );
        assert_eq!(parse(b"*1\r\n$-1\r\n"), Err(ProtoError::BulkLength));
        assert_eq!(parse(b"*1\r\n$999999999\r\n"), Err(ProtoError::BulkLength));
        assert_eq!(parse(b"*1\r\n$1\r\nab\r\n"), Err(ProtoError::ExpectedCrlf));
        assert_eq!(parse(&vec![b'a'; MAX_INLINE + 1]), Err(ProtoError::TooBig));
        let mut long_header = b"*".to_vec();
        long_header.extend(vec![b'1'; MAX_INLINE + 1]);
        assert_eq!(parse(&long_header), Err(ProtoError::TooBig));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every byte string from a small alphabet up to length 6.
        let alphabet = [b'*', b'$', b'1', b'2', b'-', b'\r', b'\n', b'a'];
        let mut buf = Vec::new();
        fn walk(buf: &mut Vec<u8>, alphabet: &[u8], depth: usize) {
            let _ = parse(buf);
            if depth == 0 {
                return;
            }
            for b in alphabet {
                buf.push(*b);
                walk(buf, alphabet, depth - 1);
                buf.pop();
            }
        }
        walk(&mut buf, &alphabet, 6);
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_int(b"42"), Some(42));
        assert_eq!(parse_int(b"-7"), Some(-7));
        assert_eq!(parse_int(b"0"), Some(0));
        for bad in [
            &b""[..],
            b"+1",
            b"01",
            b"-0",
            b"1.5",
            b" 1",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn replies() {
        let mut out = Vec::new();
        simple(&mut out, "OK");
        error(&mut out, "ERR bad\r\nthing");
        int(&mut out, -3);
        bulk(&mut out, b"hi");
        nil(&mut out);
        array(&mut out, 2);
        assert_eq!(
            out,
            b"+OK\r\n-ERR bad  thing\r\n:-3\r\n$2\r\nhi\r\n$-1\r\n*2\r\n".to_vec()
        );
    }
}
