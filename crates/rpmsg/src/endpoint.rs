//! Endpoints: addresses, names and how each one receives.
//!
//! An endpoint has a local address, fixed or dynamic (dynamic ones are the lowest free address
//! from 1024 up, as Linux allocates them), an optional name (at most 31 bytes; announced through
//! the name service when asked), a default destination (set at creation, bound by name through
//! the name service, or learned from the first message received while it has none, as OpenAMP
//! does), and one receive mode:
//!
//! * **callback** ([`RxHandler`]): runs in the context that polls the link with an
//!   [`RxBuffer`] it may read, drop, or keep with [`RxBuffer::into_held`];
//! * **queue**: received buffers wait, still in shared memory, in a bounded per-endpoint queue
//!   read with [`Endpoint::recv`] or [`Endpoint::recv_zero_copy`]. When it is full the link stops
//!   taking messages from the ring until the application drains it: the peer is back-pressured,
//!   nothing is dropped.
//!
//! [`Endpoint`] is a small handle onto the link's endpoint table. Destroying it twice, or using
//! it after [`Endpoint::destroy`], is [`Error::EndpointDestroyed`].

use crate::buffer::{RxBuffer, TxBuffer};
use crate::error::Error;
use crate::link::LinkCore;
use crate::port::Timeout;
use crate::wire::ns::Name;
use crate::wire::rpmsg::RPMSG_ADDR_ANY;
use core::fmt;

/// Receives the messages of a callback endpoint. Runs in the context that polls the link (the
/// doorbell interrupt on bare metal), without the link's lock held, so it may send.
pub trait RxHandler: Sync {
    /// One message. Drop it to give the buffer back; keep it with [`RxBuffer::into_held`].
    fn on_message(&self, msg: RxBuffer<'_>);
}

impl<F: Fn(RxBuffer<'_>) + Sync> RxHandler for F {
    fn on_message(&self, msg: RxBuffer<'_>) {
        self(msg);
    }
}

/// How an endpoint receives.
#[derive(Clone, Copy)]
pub enum RxMode<'r> {
    /// Through a callback.
    Callback(&'r dyn RxHandler),
    /// Through a bounded queue of held buffers of this depth (at least 1).
    Queue(u16),
}

impl fmt::Debug for RxMode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Callback(_) => f.write_str("Callback"),
            Self::Queue(d) => write!(f, "Queue({d})"),
        }
    }
}

/// What to create.
///
/// ```
/// use rpmsg::{EndpointConfig, RxMode};
/// let echo = EndpointConfig::new().name("rpmsg-raw").unwrap().announce(true).queue(8);
/// let fixed = EndpointConfig::new().addr(30).dst(0x400);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct EndpointConfig<'r> {
    pub(crate) addr: Option<u32>,
    pub(crate) dst: u32,
    pub(crate) name: Name,
    pub(crate) announce: bool,
    pub(crate) mode: RxMode<'r>,
}

impl Default for EndpointConfig<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'r> EndpointConfig<'r> {
    /// A nameless endpoint at a dynamic address, no destination, a queue of depth 4.
    pub const fn new() -> Self {
        Self {
            addr: None,
            dst: RPMSG_ADDR_ANY,
            name: Name::EMPTY,
            announce: false,
            mode: RxMode::Queue(4),
        }
    }

    /// A fixed local address.
    pub const fn addr(mut self, addr: u32) -> Self {
        self.addr = Some(addr);
        self
    }

    /// The default destination for [`Endpoint::send`].
    pub const fn dst(mut self, dst: u32) -> Self {
        self.dst = dst;
        self
    }

    /// A name (at most 31 bytes, no NUL).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] otherwise.
    pub fn name(mut self, name: &str) -> Result<Self, Error> {
        self.name = Name::new(name).map_err(|_| Error::InvalidName { len: name.len() })?;
        Ok(self)
    }

    /// Announce the name to the peer (NS CREATE when the link is up, DESTROY on destruction).
    pub const fn announce(mut self, on: bool) -> Self {
        self.announce = on;
        self
    }

    /// Receive through `handler`.
    pub const fn callback(mut self, handler: &'r dyn RxHandler) -> Self {
        self.mode = RxMode::Callback(handler);
        self
    }

    /// Receive through a queue of `depth` held buffers.
    pub const fn queue(mut self, depth: u16) -> Self {
        self.mode = RxMode::Queue(depth);
        self
    }
}

/// A handle to an endpoint of a link. Cheap to clone; every clone names the same endpoint.
#[derive(Clone, Copy)]
pub struct Endpoint<'l> {
    pub(crate) link: &'l dyn LinkCore,
    pub(crate) slot: u8,
    pub(crate) generation: u16,
    pub(crate) addr: u32,
}

impl fmt::Debug for Endpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("slot", &self.slot)
            .finish()
    }
}

impl<'l> Endpoint<'l> {
    /// The local address.
    pub fn addr(&self) -> u32 {
        self.addr
    }

    /// The default destination, if it has one yet.
    ///
    /// # Errors
    ///
    /// [`Error::EndpointDestroyed`].
    pub fn dst(&self) -> Result<Option<u32>, Error> {
        let d = self.link.ep_dst(self.slot, self.generation)?;
        Ok((d != RPMSG_ADDR_ANY).then_some(d))
    }

    /// Sets the default destination.
    ///
    /// # Errors
    ///
    /// [`Error::EndpointDestroyed`].
    pub fn set_dst(&self, dst: u32) -> Result<(), Error> {
        self.link.ep_set_dst(self.slot, self.generation, dst)
    }

    fn default_dst(&self) -> Result<u32, Error> {
        self.dst()?.ok_or(Error::InvalidAddress(RPMSG_ADDR_ANY))
    }

    /// Sends `data` to the default destination, waiting for a free buffer up to the link's send
    /// timeout (15 s unless configured otherwise), as `rpmsg_send` does.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], [`Error::PayloadTooLarge`], [`Error::InvalidAddress`] without a
    /// destination, [`Error::NotReady`], [`Error::LinkDown`], [`Error::EndpointDestroyed`].
    pub fn send(&self, data: &[u8]) -> Result<(), Error> {
        self.send_to(self.default_dst()?, data)
    }

    /// Sends `data` to `dst` (`rpmsg_sendto`, `rpmsg_lite_send`), waiting as [`Endpoint::send`].
    ///
    /// # Errors
    ///
    /// As [`Endpoint::send`].
    pub fn send_to(&self, dst: u32, data: &[u8]) -> Result<(), Error> {
        self.link
            .ep_send(self.slot, self.generation, self.addr, dst, data, None)
    }

    /// Sends `data` from `src` to `dst` (`rpmsg_send_offchannel`), waiting as [`Endpoint::send`].
    ///
    /// # Errors
    ///
    /// As [`Endpoint::send`].
    pub fn send_offchannel(&self, src: u32, dst: u32, data: &[u8]) -> Result<(), Error> {
        self.link
            .ep_send(self.slot, self.generation, src, dst, data, None)
    }

    /// [`Endpoint::send_to`] with an explicit timeout.
    ///
    /// # Errors
    ///
    /// As [`Endpoint::send`]; [`Error::NoBuffer`] with [`Timeout::NoWait`].
    pub fn send_to_timeout(&self, dst: u32, data: &[u8], timeout: Timeout) -> Result<(), Error> {
        self.link.ep_send(
            self.slot,
            self.generation,
            self.addr,
            dst,
            data,
            Some(timeout),
        )
    }

    /// [`Endpoint::send_offchannel`] with an explicit timeout.
    ///
    /// # Errors
    ///
    /// As [`Endpoint::send_to_timeout`].
    pub fn send_offchannel_timeout(
        &self,
        src: u32,
        dst: u32,
        data: &[u8],
        timeout: Timeout,
    ) -> Result<(), Error> {
        self.link
            .ep_send(self.slot, self.generation, src, dst, data, Some(timeout))
    }

    /// Sends to the default destination, failing at once with [`Error::NoBuffer`] when no
    /// buffer is free (`rpmsg_trysend`).
    ///
    /// # Errors
    ///
    /// As [`Endpoint::send_to_timeout`].
    pub fn try_send(&self, data: &[u8]) -> Result<(), Error> {
        self.try_send_to(self.default_dst()?, data)
    }

    /// Sends to `dst`, failing at once when no buffer is free (`rpmsg_trysendto`).
    ///
    /// # Errors
    ///
    /// As [`Endpoint::send_to_timeout`].
    pub fn try_send_to(&self, dst: u32, data: &[u8]) -> Result<(), Error> {
        self.send_to_timeout(dst, data, Timeout::NoWait)
    }

    /// Sends from `src` to `dst`, failing at once when no buffer is free
    /// (`rpmsg_trysend_offchannel`).
    ///
    /// # Errors
    ///
    /// As [`Endpoint::send_to_timeout`].
    pub fn try_send_offchannel(&self, src: u32, dst: u32, data: &[u8]) -> Result<(), Error> {
        self.send_offchannel_timeout(src, dst, data, Timeout::NoWait)
    }

    /// A free transmit buffer to fill in place (`rpmsg_get_tx_payload_buffer`,
    /// `rpmsg_lite_alloc_tx_buffer`), waiting up to `timeout`. Its source is this endpoint and
    /// its default destination the endpoint's.
    ///
    /// # Errors
    ///
    /// [`Error::NoBuffer`] with [`Timeout::NoWait`], [`Error::Timeout`], [`Error::NotReady`],
    /// [`Error::LinkDown`], [`Error::EndpointDestroyed`].
    pub fn alloc_tx(&self, timeout: Timeout) -> Result<TxBuffer<'l>, Error> {
        let info = self.link.ep_alloc(self.slot, self.generation, timeout)?;
        let dst = self.link.ep_dst(self.slot, self.generation)?;
        Ok(TxBuffer::new(self.link, info, self.addr, dst))
    }

    /// The next queued message, still in shared memory (`rpmsg_queue_recv_nocopy`), waiting up
    /// to `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], [`Error::NoBuffer`] with [`Timeout::NoWait`] and nothing queued,
    /// [`Error::NotQueued`] for a callback endpoint, [`Error::LinkDown`],
    /// [`Error::EndpointDestroyed`].
    pub fn recv_zero_copy(&self, timeout: Timeout) -> Result<RxBuffer<'l>, Error> {
        let info = self
            .link
            .ep_recv(self.slot, self.generation, usize::MAX, timeout)?;
        Ok(RxBuffer::new(self.link, info))
    }

    /// Copies the next queued message into `buf` and returns `(len, src)` (`rpmsg_queue_recv`),
    /// waiting up to `timeout`. A message longer than `buf` stays queued.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`], and as [`Endpoint::recv_zero_copy`].
    pub fn recv(&self, buf: &mut [u8], timeout: Timeout) -> Result<(usize, u32), Error> {
        self.link
            .ep_recv_into(self.slot, self.generation, buf, timeout)
    }

    /// Messages waiting in this endpoint's queue.
    ///
    /// # Errors
    ///
    /// [`Error::EndpointDestroyed`].
    pub fn pending(&self) -> Result<usize, Error> {
        self.link.ep_pending(self.slot, self.generation)
    }

    /// Destroys the endpoint (`rpmsg_destroy_ept`): queued messages go back to the peer, and a
    /// DESTROY is announced if a CREATE was.
    ///
    /// # Errors
    ///
    /// [`Error::EndpointDestroyed`] the second time.
    pub fn destroy(&self) -> Result<(), Error> {
        self.link.ep_destroy(self.slot, self.generation)
    }
}
