//! A compact remote: RPMsg-Lite's static remote API for the smallest firmware.
//!
//! [`Remote`] is the device side of one link in RPMsg-Lite's static layout ([`LiteConfig`]), cut
//! to what `rpmsg_lite_remote_init`, `rpmsg_lite_is_link_up`, `rpmsg_lite_create_ept` with a
//! callback, `rpmsg_lite_send` and `rpmsg_ns_announce` do, and built for flash: every method
//! takes `&mut self`, so there is no lock, no waiting, no queue and no held buffer to track.
//! The wire is the same as [`Link`](crate::Link)'s, and so is the distrust: every index,
//! descriptor, address and length the driver writes is checked by the same
//! [`DeviceQueue`] and region accessors before use, a buffer that
//! fails a check is counted in [`LinkStats`] (and given back on vring 1, kept on vring 0 so
//! the driver cannot read its old message again: see [`Link`](crate::Link)'s module docs),
//! a message larger than the driver's next buffer is refused before that buffer is taken,
//! and a ring the driver
//! broke stops the remote with [`Error::PeerViolation`] instead of a panic.
//!
//! Its state (ring positions, counters, bound endpoints) lives in a [`State`] the caller
//! provides, as RPMsg-Lite's static context does; `State::new()` is all zero bytes, so a
//! firmware keeps it in a `static` in `.bss` at no flash cost, and the [`Remote`] itself is a
//! handle of a few words.
//!
//! What it leaves to [`Link`](crate::Link): the driver role, the resource-table layout,
//! blocking calls with timeouts, receive queues, buffers kept past their callback, zero-copy
//! transmit buffers, async, and sharing one link between contexts without `&mut`. An
//! application that runs [`Remote::poll`] from an interrupt and sends from its main loop puts
//! the remote in a `critical_section::Mutex<RefCell<_>>`, as it would any other driver state.
//!
//! A message reaches its endpoint's callback as a [`Message`]: a view of the payload in shared
//! memory, read by copying (never lent as `&[u8]`), valid only inside the callback, after which
//! the buffer goes back to the driver. The callback can answer at once with [`Message::reply`]
//! or [`Message::send`].
//!
//! ```
//! use core::sync::atomic::{AtomicUsize, Ordering};
//! use rpmsg::compact::{Message, Remote, State};
//! use rpmsg::testing::{Loopback, TestEnv, TestMemory};
//! use rpmsg::{Config, EndpointConfig, Link, LiteConfig, Role, Timeout};
//!
//! let lite = LiteConfig::DEFAULT;
//! let mut mem = TestMemory::new(lite.region_len());
//! let region = mem.region();
//! // The other core: a full link in the driver role (RPMsg-Lite's master).
//! let host: Link<_, _, 2> =
//!     Link::new(region, Loopback::new(region), TestEnv::new(), Config::lite(Role::Driver, lite))?;
//! host.start()?;
//! let client = host.create_endpoint(EndpointConfig::new().addr(1024).queue(2))?;
//!
//! // This core: the compact remote, echoing whatever reaches address 30.
//! static ECHOED: AtomicUsize = AtomicUsize::new(0);
//! let echo = |mut msg: Message<'_>| {
//!     let mut buf = [0u8; 496];
//!     if let Ok(n) = msg.copy_to(&mut buf) {
//!         if msg.reply(&buf[..n]).is_ok() {
//!             ECHOED.fetch_add(1, Ordering::Relaxed);
//!         }
//!     }
//! };
//! // Its state: here on the stack; a firmware keeps it in a zeroed `static` (see `State`).
//! let mut state = State::new();
//! let mut remote: Remote<'_, _> = Remote::new(region, Loopback::new(region), lite, &mut state)?;
//! remote.poll()?;
//! assert!(remote.is_up());
//! let addr = remote.create_endpoint(30, &echo)?;
//!
//! client.send_to(addr, b"ping")?;
//! remote.poll()?;
//! let mut buf = [0u8; 496];
//! let (n, src) = client.recv(&mut buf, Timeout::NoWait)?;
//! assert_eq!((&buf[..n], src), (&b"ping"[..], 30));
//! assert_eq!(ECHOED.load(Ordering::Relaxed), 1);
//! # Ok::<(), rpmsg::Error>(())
//! ```

use crate::error::Error;
use crate::layout::LiteConfig;
use crate::link::LinkStats;
use crate::ns::NsKind;
use crate::port::{AddressMap, Platform};
use crate::shm::{AccessError, SharedRegion};
use crate::virtqueue::{DeviceQueue, Mem, Violation, Vring};
use crate::wire::ns::{Name, NsFlags, NsRepr};
use crate::wire::rpmsg::{
    HEADER_LEN, RPMSG_ADDR_ANY, RPMSG_NS_ADDR, RPMSG_RESERVED_ADDRESSES, RpmsgRepr,
};
use crate::wire::vring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT};
use core::fmt;

/// An endpoint's receive callback (RPMsg-Lite's `rl_ept_rx_cb_t`): any `Fn(Message) + Sync`,
/// closures included, through [`Receive`].
pub type Handler<'r> = &'r dyn Receive;

/// What an endpoint's callback does with a message. Every `Fn(Message<'_>) + Sync` is one;
/// the trait exists so that a callback costs one function in its vtable, where `dyn Fn`
/// costs three (`call`, `call_mut`, `call_once`).
pub trait Receive: Sync {
    /// Handles one message; its buffer goes back to the driver when this returns.
    fn receive(&self, msg: Message<'_>);
}

impl<F: Fn(Message<'_>) + Sync> Receive for F {
    fn receive(&self, msg: Message<'_>) {
        self(msg);
    }
}

/// One bound endpoint.
#[derive(Clone, Copy)]
struct Ept<'r> {
    addr: u32,
    handler: Handler<'r>,
}

/// What a [`Remote`] keeps between calls (RPMsg-Lite's static context): ring positions, counters
/// and bound endpoints.
///
/// [`State::new`] is all zero bytes, so a `static` of it lies in `.bss`: no flash for an
/// image of it and no start-up copy or fill, e.g.
/// `static STATE: ConstStaticCell<State> = ConstStaticCell::new(State::new());` then
/// `Remote::new(region, platform, cfg, STATE.take())`. (A remote built by value would be
/// assembled on the stack and copied into place, which costs a `memcpy` on Cortex-M.)
///
/// A state serves one remote: the remote borrows it for as long as its handlers live, so
/// every state [`Remote::new`] sees is fresh from [`State::new`].
///
/// `N` bounds the ring size accepted (RPMsg-Lite's `RL_BUFFER_COUNT`, 2 by default) and `EPTS`
/// the endpoints bound at once.
pub struct State<'r, const N: usize = 2, const EPTS: usize = 4> {
    link: LinkState<N>,
    epts: [Option<Ept<'r>>; EPTS],
}

impl<const N: usize, const EPTS: usize> State<'_, N, EPTS> {
    /// A state for [`Remote::new`]: all zero bytes.
    pub const fn new() -> Self {
        Self {
            link: LinkState {
                queues: [
                    DeviceQueue::new_checked_by_caller(Vring::UNPLACED),
                    DeviceQueue::new_checked_by_caller(Vring::UNPLACED),
                ],
                ids: [0; 2],
                rings_end: 0,
                buffers_end: 0,
                mtu: 0,
                up: false,
                broken: false,
                kicked: false,
                stats: LinkStats::new(),
            },
            epts: [None; EPTS],
        }
    }
}

impl<const N: usize, const EPTS: usize> Default for State<'_, N, EPTS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const EPTS: usize> fmt::Debug for State<'_, N, EPTS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("up", &self.link.up)
            .field("broken", &self.link.broken)
            .field("stats", &self.link.stats)
            .finish_non_exhaustive()
    }
}

/// The link half of a [`State`]: everything but the endpoints, apart so that a callback can
/// send while a receive buffer is still ours.
struct LinkState<const N: usize> {
    /// Vring 0 (the driver's receive buffers, which we fill) and vring 1 (the driver's
    /// transmit buffers, which carry messages to us).
    queues: [DeviceQueue<N>; 2],
    /// Notify ids of vring 0 and vring 1.
    ids: [u32; 2],
    /// Where the buffer area starts: both vrings lie below it, and no buffer may overlap them.
    rings_end: usize,
    /// Where the buffer area ends (`LiteConfig::buffer` past the last buffer): a buffer beyond
    /// it means the driver's geometry differs from ours.
    buffers_end: usize,
    /// Payload bytes a buffer of this layout holds.
    mtu: usize,
    up: bool,
    /// A ring fault stopped the remote; `stats.last_violation` says which.
    broken: bool,
    /// Vring 0 was kicked: the driver is there even if its avail index reads 0.
    kicked: bool,
    stats: LinkStats,
}

/// The device side of one RPMsg-Lite link, compact: see the [module docs](self). Its state
/// lives in the [`State`] given to [`Remote::new`]; the remote itself is a handle of a few
/// words.
pub struct Remote<'r, P: Platform, const N: usize = 2, const EPTS: usize = 4> {
    tx: Tx<'r, P, N>,
    epts: &'r mut [Option<Ept<'r>>; EPTS],
}

/// The transmit half of a [`Remote`]: the region, the platform and the link state.
struct Tx<'r, P: Platform, const N: usize> {
    region: SharedRegion<'r>,
    platform: P,
    s: &'r mut LinkState<N>,
}

impl<P: Platform, const N: usize, const EPTS: usize> fmt::Debug for Remote<'_, P, N, EPTS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("region", &self.tx.region)
            .field("up", &self.tx.s.up)
            .field("broken", &self.tx.s.broken)
            .field("stats", &self.tx.s.stats)
            .finish_non_exhaustive()
    }
}

/// Index of vring 0 in [`LinkState::queues`]: we send on it.
const TX: usize = 0;
/// Index of vring 1: we receive on it.
const RX: usize = 1;

impl<'r, P: Platform, const N: usize, const EPTS: usize> Remote<'r, P, N, EPTS> {
    /// The remote over `region` in the layout `cfg`, keeping its state in `state`
    /// (`rpmsg_lite_remote_init` with a static context). The driver may start before or
    /// after; [`Remote::poll`] notices it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the layout does not fit the region or the ring size exceeds `N`.
    pub fn new(
        region: SharedRegion<'r>,
        platform: P,
        cfg: LiteConfig,
        state: &'r mut State<'r, N, EPTS>,
    ) -> Result<Self, Error> {
        let layout = cfg.validate(region.len())?;
        // `DeviceQueue::new`'s capacity check, once for both rings: its `Result` per ring,
        // moved into place, costs 224 B of flash on the minimal remote.
        if usize::from(layout.num) > N {
            return Err(Error::Config("ring size above the remote's capacity N"));
        }
        let (o0, o1, rings_end) = cfg.offsets();
        let rings = [
            Vring::new(&region, o0, layout)?,
            Vring::new(&region, o1, layout)?,
        ];
        // The rest of `state` is as `State::new` made it: a state serves one remote (the
        // borrow lasts as long as `'r`), so `up`, `broken`, `kicked`, counters and endpoints
        // need no reset.
        let State { link, epts } = state;
        for (q, ring) in link.queues.iter_mut().zip(rings) {
            *q = DeviceQueue::new_checked_by_caller(ring);
        }
        link.ids = [cfg.link_id << 1, (cfg.link_id << 1) | 1];
        link.rings_end = rings_end;
        link.buffers_end = cfg.buffer(2 * cfg.buffer_count as usize);
        // `validate` made sure a buffer holds a header; a header counts the payload in 16
        // bits, whatever the buffers hold.
        link.mtu = (cfg.buffer_size as usize - HEADER_LEN).min(usize::from(u16::MAX));
        Ok(Self {
            tx: Tx {
                region,
                platform,
                s: link,
            },
            epts,
        })
    }

    /// Whether the driver is there (`rpmsg_lite_is_link_up`). [`Remote::poll`] and
    /// [`Remote::handle_notify`] find out.
    pub fn is_up(&self) -> bool {
        self.tx.s.up
    }

    /// Payload bytes one message can carry: a buffer less its header, at most 65,535 (the
    /// header's length field).
    pub fn mtu(&self) -> usize {
        self.tx.s.mtu
    }

    /// The counters: messages, drops and the driver's violations.
    pub fn stats(&self) -> &LinkStats {
        &self.tx.s.stats
    }

    /// Notify ids of vring 0 and vring 1 (`(link_id << 1) | queue`).
    pub fn notify_ids(&self) -> [u32; 2] {
        self.tx.s.ids
    }

    /// The platform given to [`Remote::new`].
    pub fn platform(&self) -> &P {
        &self.tx.platform
    }

    /// Handles a doorbell from the driver: call it from the inter-core interrupt
    /// (RPMsg-Lite's `env_isr`). Any id polls; vring 0's also marks the driver as there.
    ///
    /// # Errors
    ///
    /// As [`Remote::poll`].
    pub fn handle_notify(&mut self, id: u32) -> Result<usize, Error> {
        if id == self.tx.s.ids[0] {
            self.tx.s.kicked = true;
        }
        self.poll()
    }

    /// Delivers what the driver has sent: each message goes to its endpoint's callback, then
    /// its buffer back to the driver. Takes at most four rings' worth per call, so a driver
    /// that keeps sending cannot keep us here. Returns how many buffers it took.
    ///
    /// Before the link is up it only looks for the driver: the driver's first kick of vring 0
    /// (see [`Remote::handle_notify`]) or its receive buffers on vring 0. Coming up reads no
    /// used index: each ring's is taken at the first buffer the driver publishes on it, so a
    /// master still pre-filling vring 1 (`rpmsg_lite_master_init`) keeps its count.
    ///
    /// # Errors
    ///
    /// [`Error::PeerViolation`] when the driver broke a ring beyond use (the remote stays
    /// stopped; every later call says so). Malformed messages are dropped and counted, not
    /// errors.
    pub fn poll(&mut self) -> Result<usize, Error> {
        self.poll_rings().map_err(|Stopped| self.tx.stop_error())
    }

    fn poll_rings(&mut self) -> Result<usize, Stopped> {
        self.tx.check()?;
        if !self.tx.s.up && !self.tx.attach()? {
            return Ok(0);
        }
        let mut taken = 0;
        while taken < 4 * N {
            match self.tx.take(RX, HEADER_LEN)? {
                Taken::Nothing => break,
                Taken::Refused | Taken::TooSmall(_) => taken += 1,
                Taken::Buffer(id, off, cap) => {
                    taken += 1;
                    self.deliver(off, cap)?;
                    // used.len = desc.len, as every reader accepts (wire.md 4.5).
                    self.tx.give_back(RX, id, cap)?;
                    // A callback's send may have found a broken ring: stop here too.
                    self.tx.check()?;
                }
            }
        }
        if taken > 0 {
            self.tx.notify(RX);
        }
        Ok(taken)
    }

    /// Reads the header of the buffer at `off` (`cap` bytes) and runs the callback of the
    /// endpoint it is for.
    fn deliver(&mut self, off: usize, cap: u32) -> Result<(), Stopped> {
        let region = self.tx.region;
        self.tx.invalidate(off, HEADER_LEN);
        let read = region.read_words(off);
        let hdr = RpmsgRepr::from_words(self.tx.access(read)?);
        let room = cap - HEADER_LEN as u32;
        let stats = &mut self.tx.s.stats;
        if u32::from(hdr.len) > room {
            stats.rx_malformed = stats.rx_malformed.wrapping_add(1);
            return self.tx.violation(Violation::LengthTooLarge {
                len: u32::from(hdr.len),
                cap: room,
            });
        }
        let Some(ept) = self.epts.iter().flatten().find(|e| e.addr == hdr.dst) else {
            stats.rx_unknown_dst = stats.rx_unknown_dst.wrapping_add(1);
            return Ok(());
        };
        stats.rx_messages = stats.rx_messages.wrapping_add(1);
        let payload = off + HEADER_LEN;
        self.tx.invalidate(payload, usize::from(hdr.len));
        ept.handler.receive(Message {
            region,
            offset: payload,
            len: usize::from(hdr.len),
            src: hdr.src,
            dst: hdr.dst,
            tx: &mut self.tx,
        });
        Ok(())
    }

    /// Binds an endpoint at `addr` whose messages go to `handler` (`rpmsg_lite_create_ept`).
    /// [`RPMSG_ADDR_ANY`] picks the lowest free address from 1024 up. Returns the address.
    /// Address 53 is allowed: bound there, `handler` receives the driver's name-service
    /// messages (RPMsg-Lite's `rpmsg_ns_bind`), which [`NsRepr::parse`] reads.
    ///
    /// # Errors
    ///
    /// [`Error::AddressInUse`], [`Error::TooManyEndpoints`].
    pub fn create_endpoint(&mut self, addr: u32, handler: Handler<'r>) -> Result<u32, Error> {
        let used = |a: u32| self.epts.iter().flatten().any(|e| e.addr == a);
        let addr = if addr == RPMSG_ADDR_ANY {
            (RPMSG_RESERVED_ADDRESSES..RPMSG_ADDR_ANY)
                .find(|&a| !used(a))
                .ok_or(Error::AddressInUse(RPMSG_ADDR_ANY))?
        } else if used(addr) {
            return Err(Error::AddressInUse(addr));
        } else {
            addr
        };
        let slot = self
            .epts
            .iter_mut()
            .find(|s| s.is_none())
            .ok_or(Error::TooManyEndpoints { capacity: EPTS })?;
        *slot = Some(Ept { addr, handler });
        Ok(addr)
    }

    /// Unbinds the endpoint at `addr` (`rpmsg_lite_destroy_ept`); its later messages are
    /// counted as `rx_unknown_dst`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownEndpoint`] when nothing is bound there (also on a second destroy).
    pub fn destroy_endpoint(&mut self, addr: u32) -> Result<(), Error> {
        let slot = self
            .epts
            .iter_mut()
            .find(|s| s.is_some_and(|e| e.addr == addr))
            .ok_or(Error::UnknownEndpoint(addr))?;
        *slot = None;
        Ok(())
    }

    /// Sends `data` from `src` to `dst` if the driver has a free buffer now (`rpmsg_lite_send`
    /// with `RL_DONT_BLOCK`). `src` need not be bound here (`rpmsg_lite_send_offchannel`).
    ///
    /// # Errors
    ///
    /// [`Error::NoBuffer`] when the driver has none free (poll, then try again),
    /// [`Error::NotReady`] before the link is up, [`Error::InvalidAddress`] for
    /// [`RPMSG_ADDR_ANY`], [`Error::PayloadTooLarge`] above [`Remote::mtu`],
    /// [`Error::PeerViolation`] once the driver broke a ring.
    pub fn try_send(&mut self, src: u32, dst: u32, data: &[u8]) -> Result<(), Error> {
        self.tx.send(src, dst, data)
    }

    /// Sends as [`Remote::try_send`], calling `keep_waiting` each time no buffer is free and
    /// stopping with [`Error::Timeout`] when it says no (`rpmsg_lite_send` with a timeout).
    /// The closure decides how to wait (check a clock, sleep until the doorbell, count spins)
    /// and may poll the remote's rings through its own means; this call polls between tries,
    /// so the driver's returned buffers are seen.
    ///
    /// # Errors
    ///
    /// As [`Remote::try_send`], with [`Error::Timeout`] in place of [`Error::NoBuffer`].
    pub fn send_until(
        &mut self,
        src: u32,
        dst: u32,
        data: &[u8],
        mut keep_waiting: impl FnMut() -> bool,
    ) -> Result<(), Error> {
        loop {
            match self.tx.send(src, dst, data) {
                Err(Error::NoBuffer) if keep_waiting() => {
                    self.poll()?;
                }
                Err(Error::NoBuffer) => return Err(Error::Timeout),
                other => return other,
            }
        }
    }

    /// Announces (or withdraws) service `name` at `addr` to the driver (`rpmsg_ns_announce`): a
    /// name-service message from `addr` to address 53, sent like [`Remote::try_send`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a name over 31 bytes or with a NUL, and as
    /// [`Remote::try_send`].
    pub fn announce(&mut self, name: &str, addr: u32, kind: NsKind) -> Result<(), Error> {
        let name = Name::new(name).map_err(|_| Error::InvalidName { len: name.len() })?;
        let flags = match kind {
            NsKind::Create => NsFlags::Create,
            NsKind::Destroy => NsFlags::Destroy,
        };
        let msg = NsRepr { name, addr, flags }.to_bytes();
        self.tx.send(addr, RPMSG_NS_ADDR, &msg)
    }
}

/// The remote stopped on a ring fault, recorded in [`LinkStats::last_violation`]: what the
/// internal steps return, so that only the public methods build an [`Error`] (one copy of the
/// violation, where the caller needs it).
struct Stopped;

/// What [`Tx::put`] did.
enum Put {
    Sent,
    /// No free buffer now.
    NoBuffer,
    /// The next free buffer is sound but smaller than the message: its length. Left there.
    TooSmall(u32),
}

/// What [`Tx::take`] found on a ring.
enum Taken {
    /// Nothing available.
    Nothing,
    /// A buffer that failed a check: counted; a receive buffer is already given back, a
    /// transmit buffer kept (see [`Tx::take`]).
    Refused,
    /// A transmit buffer that is sound but holds fewer bytes than asked: left available (not
    /// taken), with its length.
    TooSmall(u32),
    /// A single descriptor of the size asked for that lies in the region, clear of both
    /// vrings: its id, region offset and length.
    Buffer(u16, usize, u32),
}

impl<P: Platform, const N: usize> Tx<'_, P, N> {
    /// Looks for the driver; attaches both rings when it is there.
    fn attach(&mut self) -> Result<bool, Stopped> {
        let region = self.region;
        self.invalidate(self.s.queues[TX].ring().avail_idx_at(), 2);
        let idx = self.s.queues[TX].ring().avail_idx(&region);
        if self.s.kicked || self.access(idx)? != 0 {
            for q in 0..2 {
                let attached = self.s.queues[q].attach(&region);
                self.ring(attached)?;
            }
            self.s.up = true;
            self.s.stats.sessions = self.s.stats.sessions.wrapping_add(1);
        }
        Ok(self.s.up)
    }

    fn check(&self) -> Result<(), Stopped> {
        if self.s.broken { Err(Stopped) } else { Ok(()) }
    }

    /// The error a stopped remote reports: the fault that stopped it.
    fn stop_error(&self) -> Error {
        // `broken` is only ever set together with `last_violation`.
        self.s
            .stats
            .last_violation
            .map_or(Error::NotReady, Error::PeerViolation)
    }

    /// Counts `v`; one that breaks its ring also stops the remote.
    fn violation(&mut self, v: Violation) -> Result<(), Stopped> {
        self.s.stats.peer_violations = self.s.stats.peer_violations.wrapping_add(1);
        self.s.stats.last_violation = Some(v);
        if v.breaks_ring() {
            self.s.broken = true;
            return Err(Stopped);
        }
        Ok(())
    }

    /// A ring operation's result; its violation, if any, stops the remote: only our own
    /// rings' placement (checked by `new`) or our own bookkeeping could cause one.
    fn ring<T>(&mut self, r: Result<T, Violation>) -> Result<T, Stopped> {
        r.or_else(|v| {
            self.violation(v)?;
            self.s.broken = true;
            Err(Stopped)
        })
    }

    /// A region access's result, as [`Tx::ring`].
    fn access<T>(&mut self, r: Result<T, AccessError>) -> Result<T, Stopped> {
        self.ring(r.map_err(Violation::OutOfRegion))
    }

    /// Discards cached lines over `len` bytes at region `offset` before we read what the
    /// driver wrote there.
    fn invalidate(&self, offset: usize, len: usize) {
        self.platform
            .cache_invalidate(self.region.base_addr() + offset, len);
    }

    /// Makes ring `q`'s used ring (and what it returns) visible, then rings its doorbell
    /// (always: an RPMsg-Lite master sets `VRING_AVAIL_F_NO_INTERRUPT` and still needs it).
    fn notify(&mut self, q: usize) {
        // The used ring was cleaned by `push_used_with`, element before index.
        self.platform.notify(self.s.ids[q]);
        self.s.stats.doorbells = self.s.stats.doorbells.wrapping_add(1);
    }

    /// Returns buffer `id` on ring `q`'s used ring with `len`.
    fn give_back(&mut self, q: usize, id: u16, len: u32) -> Result<(), Stopped> {
        let m = Mem::new(&self.platform, &self.region);
        let pushed = self.s.queues[q].push_used_with(&self.region, id, len, &m);
        self.ring(pushed)
    }

    /// Takes the next buffer the driver made available on ring `q`, checked to hold `need`
    /// bytes.
    ///
    /// A buffer that fails a check is counted, and then (issue 13, item 7):
    /// * on vring 1 it goes back with `used.len` = its descriptor's length, as every buffer
    ///   there does: drivers read no message from a returned transmit buffer, and OpenAMP's and
    ///   RPMsg-Lite's take that length, less 16, as its capacity for their next send;
    /// * on vring 0 it is kept, never returned: a receive buffer handed back holds the last
    ///   message it carried, and every driver would read that header again (Linux's check of
    ///   `used.len - 16` wraps, OpenAMP and RPMsg-Lite do not check), a ghost message. Writing
    ///   a header for an empty message there is no way out, since the buffer failed a check
    ///   (outside the region, over the rings, misaligned, chained, shorter than a header).
    ///   The driver loses a buffer it had spoiled; a sound buffer that is merely too small for
    ///   this message is not taken at all ([`Taken::TooSmall`]).
    fn take(&mut self, q: usize, need: usize) -> Result<Taken, Stopped> {
        let region = self.region;
        let m = Mem::new(&self.platform, &region);
        let p = match self.s.queues[q].pop_avail_with(&region, &m) {
            Ok(None) => return Ok(Taken::Nothing),
            Ok(Some(p)) => p,
            Err(v) => {
                self.violation(v)?;
                return Ok(Taken::Refused);
            }
        };
        let len = p.len as usize;
        let v = if p.flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT) != 0 {
            Violation::Chained {
                id: p.id,
                flags: p.flags,
            }
        } else if len < need.min(HEADER_LEN) || (q == RX && len < need) {
            Violation::LengthTooLarge {
                len: need as u32,
                cap: p.len,
            }
        } else {
            let off = self
                .platform
                .address_map()
                .to_offset(p.addr, len)
                .filter(|&off| {
                    // Headers are read and written as words. The buffer must lie in our
                    // layout's buffer area, past the rings: one elsewhere means the driver lays
                    // out another geometry (VRING_SIZE, VRING_ALIGN, buffer size or count). That
                    // area lies in the region (`LiteConfig::validate`), and every access is
                    // checked against the region again.
                    off % 4 == 0
                        && off >= self.s.rings_end
                        && off <= self.s.buffers_end
                        && len <= self.s.buffers_end - off
                });
            if let Some(off) = off {
                if len < need {
                    // Sound, but too small for this message: leave it for a smaller one.
                    self.s.queues[q].unpop(p.id);
                    return Ok(Taken::TooSmall(p.len));
                }
                return Ok(Taken::Buffer(p.id, off, p.len));
            }
            Violation::BadAddress {
                addr: p.addr,
                len: p.len,
            }
        };
        self.violation(v)?;
        if q == RX {
            self.s.stats.rx_malformed = self.s.stats.rx_malformed.wrapping_add(1);
            // `take(RX, ..)` runs only in `poll_rings`, whose doorbell after the batch covers
            // this buffer too.
            self.give_back(q, p.id, p.len)?;
        }
        Ok(Taken::Refused)
    }

    fn send(&mut self, src: u32, dst: u32, data: &[u8]) -> Result<(), Error> {
        if self.s.broken {
            return Err(self.stop_error());
        }
        if !self.s.up {
            return Err(Error::NotReady);
        }
        if src == RPMSG_ADDR_ANY || dst == RPMSG_ADDR_ANY {
            return Err(Error::InvalidAddress(RPMSG_ADDR_ANY));
        }
        let len = match u16::try_from(data.len()) {
            Ok(len) if data.len() <= self.s.mtu => len,
            _ => {
                return Err(Error::PayloadTooLarge {
                    len: data.len(),
                    max: self.s.mtu,
                });
            }
        };
        match self.put(src, dst, len, data) {
            Ok(Put::Sent) => Ok(()),
            Ok(Put::NoBuffer) => Err(Error::NoBuffer),
            // The driver's buffers are smaller than the layout says (`take` checked the
            // header fits): say what one holds.
            Ok(Put::TooSmall(cap)) => Err(Error::PayloadTooLarge {
                len: data.len(),
                max: cap as usize - HEADER_LEN,
            }),
            Err(Stopped) => Err(self.stop_error()),
        }
    }

    /// Writes one message into the driver's next free buffer: `Sent`, or why not.
    fn put(&mut self, src: u32, dst: u32, len: u16, data: &[u8]) -> Result<Put, Stopped> {
        let need = HEADER_LEN + data.len();
        // Bounded: each round takes one ring entry, and a ring holds at most N.
        for _ in 0..=N {
            let (id, off, cap) = match self.take(TX, need)? {
                Taken::Nothing => return Ok(Put::NoBuffer),
                Taken::Refused => continue,
                Taken::TooSmall(cap) => return Ok(Put::TooSmall(cap)),
                Taken::Buffer(id, off, cap) => (id, off, cap),
            };
            let hdr = RpmsgRepr {
                src,
                dst,
                len,
                flags: 0,
            };
            let written = self.region.copy_in(off, &hdr.to_bytes());
            self.access(written)?;
            let written = self.region.copy_in(off + HEADER_LEN, data);
            self.access(written)?;
            self.platform
                .cache_clean(self.region.base_addr() + off, need);
            self.give_back(TX, id, cap)?;
            self.s.stats.tx_messages = self.s.stats.tx_messages.wrapping_add(1);
            self.notify(TX);
            return Ok(Put::Sent);
        }
        Ok(Put::NoBuffer)
    }
}

/// The sending half as a callback sees it, without the remote's type parameters.
trait Transmit {
    fn transmit(&mut self, src: u32, dst: u32, data: &[u8]) -> Result<(), Error>;
}

impl<P: Platform, const N: usize> Transmit for Tx<'_, P, N> {
    fn transmit(&mut self, src: u32, dst: u32, data: &[u8]) -> Result<(), Error> {
        self.send(src, dst, data)
    }
}

/// A received message, as its endpoint's callback sees it: the payload is still in the
/// driver's buffer, which goes back when the callback returns.
pub struct Message<'a> {
    region: SharedRegion<'a>,
    offset: usize,
    len: usize,
    src: u32,
    dst: u32,
    tx: &'a mut dyn Transmit,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("src", &self.src)
            .field("dst", &self.dst)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Message<'_> {
    /// The sender's address.
    pub fn src(&self) -> u32 {
        self.src
    }

    /// The address it was sent to: the endpoint whose callback runs.
    pub fn dst(&self) -> u32 {
        self.dst
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the whole payload to the start of `buf`; returns its length.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] when `buf` is shorter than the payload (nothing is copied).
    pub fn copy_to(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let have = buf.len();
        let dst = buf.get_mut(..self.len).ok_or(Error::BufferTooSmall {
            need: self.len,
            have,
        })?;
        self.region.copy_out(self.offset, dst)?;
        Ok(self.len)
    }

    /// Copies payload bytes from `offset` on into `buf`, as many as both hold; returns how
    /// many (0 at or past the end).
    ///
    /// # Errors
    ///
    /// Only if the buffer was not in the region, which [`Remote::poll`] has already checked.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<usize, Error> {
        let n = self.len.saturating_sub(offset).min(buf.len());
        if let Some(dst) = buf.get_mut(..n).filter(|d| !d.is_empty()) {
            // offset < len here, and the payload lies in the region.
            self.region.copy_out(self.offset + offset, dst)?;
        }
        Ok(n)
    }

    /// Answers the sender: sends `data` from this endpoint back to [`Message::src`].
    ///
    /// # Errors
    ///
    /// As [`Remote::try_send`].
    pub fn reply(&mut self, data: &[u8]) -> Result<(), Error> {
        self.tx.transmit(self.dst, self.src, data)
    }

    /// Sends `data` from `src` to `dst` on this link while the message is being handled, as
    /// [`Remote::try_send`] does.
    ///
    /// # Errors
    ///
    /// As [`Remote::try_send`].
    pub fn send(&mut self, src: u32, dst: u32, data: &[u8]) -> Result<(), Error> {
        self.tx.transmit(src, dst, data)
    }
}
