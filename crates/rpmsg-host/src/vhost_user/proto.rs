//! The vhost-user wire format and the socket I/O: messages with their file descriptors.
//!
//! A message is a 12-byte little-endian header `{u32 request; u32 flags; u32 size}` and `size`
//! payload bytes; file descriptors travel as `SCM_RIGHTS` with the header's bytes. Flags: bits
//! 0-1 the version (1), bit 2 REPLY, bit 3 NEED_REPLY.

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendFlags, recvmsg,
};
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

/// Front-end requests (the numbers of the vhost-user specification).
pub(crate) mod req {
    pub(crate) const GET_FEATURES: u32 = 1;
    pub(crate) const SET_FEATURES: u32 = 2;
    pub(crate) const SET_OWNER: u32 = 3;
    pub(crate) const SET_MEM_TABLE: u32 = 5;
    pub(crate) const SET_VRING_NUM: u32 = 8;
    pub(crate) const SET_VRING_ADDR: u32 = 9;
    pub(crate) const SET_VRING_BASE: u32 = 10;
    pub(crate) const SET_VRING_KICK: u32 = 12;
    pub(crate) const SET_VRING_CALL: u32 = 13;
    pub(crate) const GET_PROTOCOL_FEATURES: u32 = 15;
    pub(crate) const SET_PROTOCOL_FEATURES: u32 = 16;
    pub(crate) const SET_VRING_ENABLE: u32 = 18;
    pub(crate) const SET_SLAVE_REQ_FD: u32 = 21;
    pub(crate) const GET_CONFIG: u32 = 24;
    pub(crate) const SET_CONFIG: u32 = 25;
    pub(crate) const VRING_KICK: u32 = 35;

    /// The request's name, for messages.
    pub(crate) fn name(r: u32) -> &'static str {
        match r {
            GET_FEATURES => "GET_FEATURES",
            SET_FEATURES => "SET_FEATURES",
            SET_OWNER => "SET_OWNER",
            4 => "RESET_OWNER",
            SET_MEM_TABLE => "SET_MEM_TABLE",
            6 => "SET_LOG_BASE",
            7 => "SET_LOG_FD",
            SET_VRING_NUM => "SET_VRING_NUM",
            SET_VRING_ADDR => "SET_VRING_ADDR",
            SET_VRING_BASE => "SET_VRING_BASE",
            11 => "GET_VRING_BASE",
            SET_VRING_KICK => "SET_VRING_KICK",
            SET_VRING_CALL => "SET_VRING_CALL",
            14 => "SET_VRING_ERR",
            GET_PROTOCOL_FEATURES => "GET_PROTOCOL_FEATURES",
            SET_PROTOCOL_FEATURES => "SET_PROTOCOL_FEATURES",
            17 => "GET_QUEUE_NUM",
            SET_VRING_ENABLE => "SET_VRING_ENABLE",
            SET_SLAVE_REQ_FD => "SET_SLAVE_REQ_FD",
            22 => "IOTLB_MSG",
            23 => "SET_VRING_ENDIAN",
            GET_CONFIG => "GET_CONFIG",
            SET_CONFIG => "SET_CONFIG",
            VRING_KICK => "VRING_KICK",
            _ => "unknown request",
        }
    }
}

/// Back-end to front-end request on the slave channel: signal a used buffer (in-band call).
pub(crate) const SLAVE_VRING_CALL: u32 = 4;

/// Header flags: the version field.
pub(crate) const VERSION_MASK: u32 = 0x3;
/// Header flags: this is a reply.
pub(crate) const FLAG_REPLY: u32 = 0x4;
/// Header flags: the sender wants an acknowledgement (REPLY_ACK).
pub(crate) const FLAG_NEED_REPLY: u32 = 0x8;
/// The only flags a reply may carry (virtio_uml refuses anything else with `-EPROTO`).
pub(crate) const REPLY_FLAGS: u32 = 0x1 | FLAG_REPLY;

/// Header bytes.
pub(crate) const HDR_LEN: usize = 12;
/// Largest payload accepted (the largest legitimate one, `SET_MEM_TABLE` with eight regions,
/// is 264 bytes; `GET_CONFIG` 268).
pub(crate) const MAX_PAYLOAD: usize = 4096;
/// Most file descriptors one message may carry.
pub(crate) const MAX_FDS: usize = 8;

/// One message as received.
#[derive(Debug)]
pub(crate) struct Msg {
    pub(crate) request: u32,
    pub(crate) flags: u32,
    pub(crate) payload: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Msg {
    pub(crate) fn need_reply(&self) -> bool {
        self.flags & FLAG_NEED_REPLY != 0
    }

    pub(crate) fn u32_at(&self, at: usize) -> u32 {
        self.payload
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    }

    pub(crate) fn u64_at(&self, at: usize) -> u64 {
        self.payload
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    }
}

/// Why no message came.
#[derive(Debug)]
pub(crate) enum RecvError {
    /// The front-end closed the connection between messages.
    Closed,
    /// The connection failed (`ECONNRESET`, ...).
    Reset(io::Error),
    /// A broken message: truncated, too large, wrong version, lost descriptors.
    Malformed(String),
}

/// Receives into `buf` until it is full or the peer closes; every descriptor that comes with
/// the bytes goes to `fds`. Returns the bytes received.
fn recv_exact(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> Result<usize, RecvError> {
    let mut got = 0;
    while got < buf.len() {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        let r = recvmsg(
            sock,
            &mut [IoSliceMut::new(rest)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        );
        let m = match r {
            Ok(m) => m,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => {
                return Err(RecvError::Malformed(format!(
                    "message stalled after {got} of {} bytes",
                    buf.len()
                )));
            }
            Err(e) => return Err(RecvError::Reset(e.into())),
        };
        for c in control.drain() {
            if let RecvAncillaryMessage::ScmRights(it) = c {
                fds.extend(it);
            }
        }
        if m.flags.contains(ReturnFlags::CTRUNC) {
            return Err(RecvError::Malformed(format!(
                "more than {MAX_FDS} file descriptors in one message"
            )));
        }
        if m.bytes == 0 {
            break;
        }
        got += m.bytes;
    }
    Ok(got)
}

/// Receives one whole message.
pub(crate) fn recv_msg(sock: BorrowedFd<'_>) -> Result<Msg, RecvError> {
    let mut fds = Vec::new();
    let mut hdr = [0u8; HDR_LEN];
    match recv_exact(sock, &mut hdr, &mut fds)? {
        0 => return Err(RecvError::Closed),
        HDR_LEN => {}
        n => {
            return Err(RecvError::Malformed(format!(
                "connection closed inside a message header ({n} of 12 bytes)"
            )));
        }
    }
    let word = |i: usize| u32::from_le_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
    let (request, flags, size) = (word(0), word(4), word(8));
    if flags & VERSION_MASK != 1 {
        return Err(RecvError::Malformed(format!(
            "{} (request {request}) has flags {flags:#x}: version {} instead of 1",
            req::name(request),
            flags & VERSION_MASK
        )));
    }
    if flags & FLAG_REPLY != 0 {
        return Err(RecvError::Malformed(format!(
            "{} (request {request}) is flagged as a reply (flags {flags:#x})",
            req::name(request)
        )));
    }
    let size = size as usize;
    if size > MAX_PAYLOAD {
        return Err(RecvError::Malformed(format!(
            "{} (request {request}) announces {size} payload bytes (at most {MAX_PAYLOAD})",
            req::name(request)
        )));
    }
    let mut payload = vec![0u8; size];
    let n = recv_exact(sock, &mut payload, &mut fds)?;
    if n != size {
        return Err(RecvError::Malformed(format!(
            "connection closed inside {} (request {request}): {n} of {size} payload bytes",
            req::name(request)
        )));
    }
    Ok(Msg {
        request,
        flags,
        payload,
        fds,
    })
}

/// Sends one message (no descriptors), all of it.
pub(crate) fn send_msg(
    sock: BorrowedFd<'_>,
    request: u32,
    flags: u32,
    payload: &[u8],
) -> io::Result<()> {
    let size = u32::try_from(payload.len()).map_err(|_| io::Error::other("payload too large"))?;
    let mut bytes = Vec::with_capacity(HDR_LEN + payload.len());
    bytes.extend_from_slice(&request.to_le_bytes());
    bytes.extend_from_slice(&flags.to_le_bytes());
    bytes.extend_from_slice(&size.to_le_bytes());
    bytes.extend_from_slice(payload);
    let mut at = 0;
    while let Some(rest) = bytes.get(at..).filter(|r| !r.is_empty()) {
        match rustix::net::send(sock, rest, SendFlags::NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
