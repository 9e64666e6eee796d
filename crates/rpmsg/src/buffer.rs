//! Zero-copy buffers whose ownership lives in the type system.
//!
//! * [`TxBuffer`] is a free transmit buffer in shared memory that we own: write the payload into
//!   it, then `send*(self, ..)` consumes it. Dropping it unsent returns it to the pool.
//! * [`RxBuffer`] is a received message we hold: read it, and dropping it (or
//!   [`RxBuffer::release`]) returns the buffer to the peer. [`RxBuffer::into_held`] turns it into
//!   a [`HeldRx`] token for code that must keep it past a callback without a borrow of the link.
//!
//! Both borrow their link, so neither can outlive it; neither is `Clone`, so neither can be sent
//! or released twice. Payload bytes move with one copy between the caller's slice and shared
//! memory (`shm`'s checked copies), never through a reference into memory the peer can write.

use crate::error::Error;
use crate::link::LinkCore;
use core::fmt;

/// What the link knows about an allocated transmit buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxInfo {
    pub(crate) id: u16,
    pub(crate) epoch: u32,
    /// Region offset of the buffer (header first).
    pub(crate) offset: usize,
    /// Payload bytes it holds.
    pub(crate) cap: usize,
    /// The descriptor's length, returned as `used.len` by the device side.
    pub(crate) desc_len: u32,
}

/// What the link knows about a received message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RxInfo {
    pub(crate) id: u16,
    pub(crate) epoch: u32,
    /// Region offset of the payload.
    pub(crate) offset: usize,
    pub(crate) len: u16,
    pub(crate) src: u32,
    pub(crate) dst: u32,
}

/// A free transmit buffer, owned until sent or dropped.
///
/// ```
/// # use rpmsg::testing::pair;
/// # pair(|dev_ep, drv_ep| {
/// let mut tx = dev_ep.alloc_tx(rpmsg::Timeout::Forever)?;
/// tx.write(0, b"hello")?;
/// tx.send(5).map_err(|e| e.error)?; // consumed: `tx` cannot be used again
/// # let mut buf = [0u8; 16];
/// # let (n, _) = drv_ep.recv(&mut buf, rpmsg::Timeout::Forever)?;
/// # assert_eq!(&buf[..n], b"hello");
/// # Ok(()) });
/// ```
pub struct TxBuffer<'l> {
    link: &'l dyn LinkCore,
    info: TxInfo,
    src: u32,
    dst: u32,
}

impl fmt::Debug for TxBuffer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxBuffer")
            .field("id", &self.info.id)
            .field("capacity", &self.info.cap)
            .field("src", &self.src)
            .field("dst", &self.dst)
            .finish()
    }
}

/// A failed `TxBuffer::send*`: the error, and the buffer back so nothing is lost.
pub struct TxError<'l> {
    /// What went wrong.
    pub error: Error,
    /// The buffer, still ours.
    pub buffer: TxBuffer<'l>,
}

impl<'l> TxError<'l> {
    /// The buffer, to try again or to drop.
    pub fn into_inner(self) -> TxBuffer<'l> {
        self.buffer
    }
}

impl fmt::Debug for TxError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for TxError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl core::error::Error for TxError<'_> {}

impl From<TxError<'_>> for Error {
    fn from(e: TxError<'_>) -> Self {
        e.error
    }
}

impl<'l> TxBuffer<'l> {
    pub(crate) fn new(link: &'l dyn LinkCore, info: TxInfo, src: u32, dst: u32) -> Self {
        Self {
            link,
            info,
            src,
            dst,
        }
    }

    /// Payload bytes this buffer holds (buffer size minus the 16-byte header).
    pub fn capacity(&self) -> usize {
        self.info.cap
    }

    /// Region offset of the payload's first byte (the buffer's 16-byte header lies just
    /// before it). For foreign-language bindings that hand the payload's address to code
    /// writing it directly (RPMsg-Lite's `rpmsg_lite_alloc_tx_buffer`); Rust code writes through
    /// [`TxBuffer::write`].
    pub fn payload_offset(&self) -> usize {
        self.info.offset + crate::wire::rpmsg::HEADER_LEN
    }

    /// Writes `data` into the payload at `offset`.
    ///
    /// # Errors
    ///
    /// [`Error::PayloadTooLarge`] when `offset + data.len()` exceeds [`TxBuffer::capacity`];
    /// [`Error::LinkDown`] (nothing written) when the buffer is from an earlier session of
    /// the link (the driver reset it since, and the memory may be the driver's again) or the
    /// link is down.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<(), Error> {
        let end = offset.saturating_add(data.len());
        if end > self.info.cap {
            return Err(Error::PayloadTooLarge {
                len: end,
                max: self.info.cap,
            });
        }
        self.link.write_tx(self.info, offset, data)
    }

    /// Reads back payload bytes at `offset` into `out`.
    ///
    /// # Errors
    ///
    /// [`Error::PayloadTooLarge`] when the range exceeds the capacity.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), Error> {
        let end = offset.saturating_add(out.len());
        if end > self.info.cap {
            return Err(Error::PayloadTooLarge {
                len: end,
                max: self.info.cap,
            });
        }
        self.link
            .region()
            .copy_out(self.info.offset + 16 + offset, out)
            .map_err(Error::from)
    }

    /// Sends the first `len` payload bytes to the endpoint's default destination.
    ///
    /// # Errors
    ///
    /// [`TxError`] with the buffer back: [`Error::PayloadTooLarge`], [`Error::InvalidAddress`]
    /// when the endpoint has no destination yet, [`Error::LinkDown`].
    pub fn send(self, len: usize) -> Result<(), TxError<'l>> {
        let (src, dst) = (self.src, self.dst);
        self.send_offchannel(src, dst, len)
    }

    /// Sends the first `len` payload bytes to `dst`.
    ///
    /// # Errors
    ///
    /// As [`TxBuffer::send`].
    pub fn send_to(self, dst: u32, len: usize) -> Result<(), TxError<'l>> {
        let src = self.src;
        self.send_offchannel(src, dst, len)
    }

    /// Sends the first `len` payload bytes from `src` to `dst`.
    ///
    /// # Errors
    ///
    /// As [`TxBuffer::send`].
    pub fn send_offchannel(self, src: u32, dst: u32, len: usize) -> Result<(), TxError<'l>> {
        let this = core::mem::ManuallyDrop::new(self);
        match this.link.send_tx(this.info, src, dst, len) {
            Ok(()) => Ok(()),
            Err(error) => Err(TxError {
                error,
                buffer: Self {
                    link: this.link,
                    info: this.info,
                    src: this.src,
                    dst: this.dst,
                },
            }),
        }
    }
}

impl Drop for TxBuffer<'_> {
    fn drop(&mut self) {
        self.link.drop_tx(self.info);
    }
}

/// A received message, held until dropped.
///
/// ```
/// # use rpmsg::testing::pair;
/// # pair(|dev_ep, drv_ep| {
/// # drv_ep.send_to(dev_ep.addr(), b"ping")?;
/// let msg = dev_ep.recv_zero_copy(rpmsg::Timeout::Forever)?;
/// let mut text = [0u8; 4];
/// msg.read(0, &mut text)?;
/// assert_eq!((&text, msg.src()), (b"ping", drv_ep.addr()));
/// drop(msg); // the buffer goes back to the peer
/// # Ok(()) });
/// ```
pub struct RxBuffer<'l> {
    link: &'l dyn LinkCore,
    info: RxInfo,
}

impl fmt::Debug for RxBuffer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxBuffer")
            .field("id", &self.info.id)
            .field("len", &self.info.len)
            .field("src", &self.info.src)
            .field("dst", &self.info.dst)
            .finish()
    }
}

impl<'l> RxBuffer<'l> {
    pub(crate) fn new(link: &'l dyn LinkCore, info: RxInfo) -> Self {
        Self { link, info }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.info.len)
    }

    /// Whether the payload is empty (a header-only message).
    pub fn is_empty(&self) -> bool {
        self.info.len == 0
    }

    /// Source address of the message.
    pub fn src(&self) -> u32 {
        self.info.src
    }

    /// Region offset of the payload's first byte. For foreign-language bindings that hand the
    /// payload's address to a callback (RPMsg-Lite's `rl_ept_rx_cb_t`); Rust code reads through
    /// [`RxBuffer::read`].
    pub fn payload_offset(&self) -> usize {
        self.info.offset
    }

    /// Destination address (our endpoint).
    pub fn dst(&self) -> u32 {
        self.info.dst
    }

    /// Copies payload bytes starting at `offset` into `out`.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] when `offset + out.len()` exceeds the payload.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), Error> {
        let end = offset.saturating_add(out.len());
        if end > self.len() {
            return Err(Error::BufferTooSmall {
                need: end,
                have: self.len(),
            });
        }
        self.link
            .region()
            .copy_out(self.info.offset + offset, out)
            .map_err(Error::from)
    }

    /// Copies as much of the payload as fits into `out`; returns the bytes copied.
    pub fn copy_to(&self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len());
        match out.get_mut(..n).map(|dst| self.read(0, dst)) {
            Some(Ok(())) => n,
            _ => 0,
        }
    }

    /// Returns the buffer to the peer now (the same as dropping it).
    pub fn release(self) {}

    /// Keeps the message without a borrow of the link: the token must go back through
    /// [`Link::release_held`](crate::Link::release_held) or
    /// [`Link::resume_held`](crate::Link::resume_held) (OpenAMP `rpmsg_hold_rx_buffer`,
    /// RPMsg-Lite `RL_HOLD`). Until then the peer does not get the buffer back; held buffers
    /// are counted in [`LinkStats::held`](crate::LinkStats).
    #[must_use = "a held buffer stays away from the peer until it is released"]
    pub fn into_held(self) -> HeldRx {
        let this = core::mem::ManuallyDrop::new(self);
        this.link.hold_rx(this.info)
    }
}

impl Drop for RxBuffer<'_> {
    fn drop(&mut self) {
        self.link.release_rx(self.info);
    }
}

/// A received message kept past its callback. Carries which link it came from (an identity
/// given to each link when it is built, never reused and unchanged when the link moves), so
/// handing it to another link is refused with [`Error::ForeignBuffer`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a held buffer stays away from the peer until it is released"]
pub struct HeldRx {
    pub(crate) key: u64,
    pub(crate) info: RxInfoKey,
}

/// The parts of [`RxInfo`] a token keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RxInfoKey {
    pub(crate) id: u16,
    pub(crate) epoch: u32,
}

impl HeldRx {
    /// The descriptor id (for diagnostics).
    pub fn id(&self) -> u16 {
        self.info.id
    }
}

/// A held token refused by [`Link::release_held`](crate::Link::release_held) or
/// [`Link::resume_held`](crate::Link::resume_held): the error, and the token back, so the buffer
/// is not lost.
#[derive(Debug, PartialEq, Eq)]
pub struct HeldError {
    /// Why it was refused ([`Error::ForeignBuffer`]).
    pub error: Error,
    /// The token, to give to the right link.
    pub held: HeldRx,
}

impl HeldError {
    /// The token.
    pub fn into_inner(self) -> HeldRx {
        self.held
    }
}

impl fmt::Display for HeldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl core::error::Error for HeldError {}

impl From<HeldError> for Error {
    fn from(e: HeldError) -> Self {
        e.error
    }
}
