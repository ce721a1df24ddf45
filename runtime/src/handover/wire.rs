//! The handover channel: a Unix stream socket between the old node and the new one, carrying
//! length-prefixed msgpack frames ([`Msg`]) and, after an image, the image's descriptors
//! passed with `SCM_RIGHTS` in batches.

use super::image::NodeImage;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Descriptors passed by one `sendmsg` (the kernel takes at most 253).
const FDS_PER_MESSAGE: usize = 200;

/// The largest frame either side reads (an image carries every state and table row).
const MAX_FRAME: u64 = 16 << 30;

/// One message of the handover protocol (see [`super`] for the order).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Msg {
    /// New → old: the new node runs and waits for the image.
    Hello {
        /// Its pid.
        pid: u32,
    },
    /// Old → new: everything to restore; `fds` descriptors follow.
    Image {
        /// The image.
        image: Box<NodeImage>,
        /// How many descriptors follow the frame.
        fds: usize,
    },
    /// New → old: restored (booted, states in, sockets adopted) and held; waiting for
    /// [`Msg::Commit`].
    Ready {
        /// Processes restored with their states.
        restored: usize,
        /// Microseconds from the image's arrival to this message.
        micros: u64,
    },
    /// New → old: it cannot take over; it exits without touching anything.
    Failed {
        /// Why.
        reason: String,
    },
    /// Old → new: take over now (the old node serves no more).
    Commit,
    /// New → old: it serves the root now.
    Taken,
    /// Old → new, after the take-over: a message from the old node's host threads.
    Forward {
        /// Matches the reply of a call.
        id: u64,
        /// The target (pids are the same in both nodes).
        pid: u64,
        /// Call, cast or plain message.
        kind: super::forward::Kind,
        /// The encoded message.
        payload: serde_bytes::ByteBuf,
    },
    /// New → old: the reply of a forwarded call, or why it failed.
    Reply {
        /// The call's id.
        id: u64,
        /// The reply's bytes, or the error.
        result: Result<serde_bytes::ByteBuf, String>,
    },
}

/// Writes one frame; returns its length.
pub(crate) fn send(stream: &mut UnixStream, msg: &Msg) -> io::Result<u64> {
    let bytes = rmp_serde::to_vec_named(msg).map_err(|e| io::Error::other(e.to_string()))?;
    stream.write_all(&(bytes.len() as u64).to_le_bytes())?;
    stream.write_all(&bytes)?;
    stream.flush()?;
    Ok(bytes.len() as u64)
}

/// Reads one frame (an end of stream is `UnexpectedEof`).
pub(crate) fn recv(stream: &mut UnixStream) -> io::Result<Msg> {
    let mut len = [0u8; 8];
    stream.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a handover frame of {len} bytes (at most {MAX_FRAME})"),
        ));
    }
    let mut bytes = vec![0u8; len as usize];
    stream.read_exact(&mut bytes)?;
    rmp_serde::from_slice(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a handover frame that does not decode: {e}"),
        )
    })
}

/// Control-message buffer, aligned for `cmsghdr`.
fn control_buffer(fds: usize) -> (Vec<u64>, usize) {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    let space = unsafe { libc::CMSG_SPACE((fds * size_of::<RawFd>()) as u32) } as usize;
    (vec![0u64; space.div_ceil(8)], space)
}

/// Passes `fds` (duplicates arrive at the peer), in batches with one byte each.
pub(crate) fn send_fds(stream: &UnixStream, fds: &[RawFd]) -> io::Result<()> {
    for chunk in fds.chunks(FDS_PER_MESSAGE) {
        let byte = [chunk.len() as u8];
        let mut iov = libc::iovec {
            iov_base: byte.as_ptr() as *mut libc::c_void,
            iov_len: 1,
        };
        let (mut control, space) = control_buffer(chunk.len());
        // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call,
        // and the control buffer has CMSG_SPACE bytes for the descriptors written into it.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(chunk) as u32) as _;
            std::ptr::copy_nonoverlapping(
                chunk.as_ptr(),
                libc::CMSG_DATA(cmsg).cast::<RawFd>(),
                chunk.len(),
            );
            loop {
                let sent = libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
                if sent == 1 {
                    break;
                }
                let error = io::Error::last_os_error();
                if sent < 0 && error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(if sent < 0 {
                    error
                } else {
                    io::Error::other("sendmsg sent no byte")
                });
            }
        }
    }
    Ok(())
}

/// Receives `count` descriptors sent by [`send_fds`] (close-on-exec set).
pub(crate) fn recv_fds(stream: &UnixStream, count: usize) -> io::Result<Vec<OwnedFd>> {
    let mut out: Vec<OwnedFd> = Vec::with_capacity(count);
    while out.len() < count {
        let mut byte = [0u8];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let (mut control, space) = control_buffer(FDS_PER_MESSAGE);
        // SAFETY: as in send_fds; the kernel writes at most `space` bytes of control data,
        // and only descriptors it reports (cmsg_len) are read, each owned from then on.
        let got = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let n = loop {
                let n = libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
                if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break n;
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let mut got = 0usize;
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    let fds = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                    for i in 0..data / size_of::<RawFd>() {
                        out.push(OwnedFd::from_raw_fd(fds.add(i).read_unaligned()));
                        got += 1;
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            if msg.msg_flags & libc::MSG_CTRUNC != 0 {
                return Err(io::Error::other(
                    "descriptors were cut off in passing (out of descriptors?)",
                ));
            }
            got
        };
        if got != usize::from(byte[0]) {
            return Err(io::Error::other(format!(
                "a batch said {} descriptors and carried {got}",
                byte[0]
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_many_descriptors_cross_a_socket_pair() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let files: Vec<std::fs::File> = (0..450).map(|_| tempfile_like()).collect();
        let raw: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
        let sender = std::thread::spawn(move || {
            send(&mut a, &Msg::Hello { pid: 7 }).unwrap();
            send_fds(&a, &raw).unwrap();
            send(&mut a, &Msg::Commit).unwrap();
            drop(files);
        });
        assert!(matches!(recv(&mut b).unwrap(), Msg::Hello { pid: 7 }));
        let fds = recv_fds(&b, 450).unwrap();
        assert_eq!(fds.len(), 450);
        assert!(matches!(recv(&mut b).unwrap(), Msg::Commit));
        sender.join().unwrap();
        // Each received descriptor is a working duplicate.
        for fd in &fds {
            // SAFETY: fstat on a descriptor we own.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
        }
    }

    fn tempfile_like() -> std::fs::File {
        std::fs::File::open("/dev/null").unwrap()
    }
}
