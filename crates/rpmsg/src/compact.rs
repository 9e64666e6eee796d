//! A compact remote: RPMsg-Lite's static remote API for the smallest firmware.
//!
//! [`Remote`] is the device side of one link in RPMsg-Lite's static layout ([`LiteConfig`]), cut
//! to what `rpmsg_lite_remote_init`, `rpmsg_lite_is_link_up`, `rpmsg_lite_create_ept` with a
//! callback, `rpmsg_lite_send` and `rpmsg_ns_announce` do, and built for flash: every method
//! takes `&mut self`, so there is no lock, no waiting, no queue and no held buffer to track.
//! The wire is the same as [`Link`](crate::Link)'s, and so is the distrust: every index,
//! descriptor, address and length the driver writes is checked by the same
//! [`DeviceQueue`] and region accessors before use, a buffer that
//! fails a check goes back to the driver and is counted in [`LinkStats`], and a ring the driver
//! broke stops the remote with [`Error::PeerViolation`] instead of a panic.
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
//! use rpmsg::compact::{Message, Remote};
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
//! let mut remote: Remote<'_, _> = Remote::new(region, Loopback::new(region), lite)?;
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
use crate::shm::SharedRegion;
use crate::virtqueue::{DeviceQueue, Violation, Vring};
use crate::wire::ns::{Name, NsFlags, NsRepr};
use crate::wire::rpmsg::{
    HEADER_LEN, RPMSG_ADDR_ANY, RPMSG_NS_ADDR, RPMSG_RESERVED_ADDRESSES, RpmsgRepr,
};
use crate::wire::vring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT};
use core::fmt;
use core::mem::MaybeUninit;

/// An endpoint's receive callback (RPMsg-Lite's `rl_ept_rx_cb_t`).
pub type Handler<'r> = &'r (dyn Fn(Message<'_>) + Sync);

/// One bound endpoint.
#[derive(Clone, Copy)]
struct Ept<'r> {
    addr: u32,
    handler: Handler<'r>,
}

/// The device side of one RPMsg-Lite link, compact: see the [module docs](self).
///
/// `N` bounds the ring size accepted (RPMsg-Lite's `RL_BUFFER_COUNT`, 2 by default) and `EPTS`
/// the endpoints bound at once.
pub struct Remote<'r, P: Platform, const N: usize = 2, const EPTS: usize = 4> {
    /// The rings and everything else but the endpoints, apart so that a callback can send
    /// while a receive buffer is still ours.
    tx: Tx<'r, P, N>,
    epts: [Option<Ept<'r>>; EPTS],
    /// Vring 0 was kicked: the driver is there even if its avail index reads 0.
    kicked: bool,
}

/// The transmit half of a [`Remote`] and the state both halves share.
struct Tx<'r, P: Platform, const N: usize> {
    region: SharedRegion<'r>,
    platform: P,
    /// Vring 0 (the driver's receive buffers, which we fill) and vring 1 (the driver's
    /// transmit buffers, which carry messages to us).
    queues: [DeviceQueue<N>; 2],
    /// Notify ids of vring 0 and vring 1.
    ids: [u32; 2],
    /// Where the buffer area starts: both vrings lie below it, and no buffer may overlap them.
    rings_end: usize,
    /// Payload bytes a buffer of this layout holds.
    mtu: usize,
    up: bool,
    /// A ring fault stopped the remote; `stats.last_violation` says which.
    broken: bool,
    stats: LinkStats,
}

impl<P: Platform, const N: usize, const EPTS: usize> fmt::Debug for Remote<'_, P, N, EPTS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("region", &self.tx.region)
            .field("up", &self.tx.up)
            .field("broken", &self.tx.broken)
            .field("stats", &self.tx.stats)
            .finish_non_exhaustive()
    }
}

/// Index of vring 0 in [`Tx::queues`]: we send on it.
const TX: usize = 0;
/// Index of vring 1: we receive on it.
const RX: usize = 1;

impl<'r, P: Platform, const N: usize, const EPTS: usize> Remote<'r, P, N, EPTS> {
    /// The remote over `region` in the layout `cfg` (`rpmsg_lite_remote_init`). The driver may
    /// start before or after; [`Remote::poll`] notices it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the layout does not fit the region or the ring size exceeds `N`.
    pub fn new(region: SharedRegion<'r>, platform: P, cfg: LiteConfig) -> Result<Self, Error> {
        let queues = Self::queues(&region, &cfg)?;
        Ok(Self::assemble(region, platform, &cfg, queues))
    }

    /// The same, built in place in `slot` (`rpmsg_lite_remote_init` with a static context):
    /// a firmware keeps the remote in a `static` without the copy a move would make, e.g.
    /// `Remote::init(StaticCell::uninit(), ..)`.
    ///
    /// # Errors
    ///
    /// As [`Remote::new`]; the slot is then left as it was.
    pub fn init<'s>(
        slot: &'s mut MaybeUninit<Self>,
        region: SharedRegion<'r>,
        platform: P,
        cfg: LiteConfig,
    ) -> Result<&'s mut Self, Error> {
        let queues = Self::queues(&region, &cfg)?;
        Ok(slot.write(Self::assemble(region, platform, &cfg, queues)))
    }

    /// Checks the layout against the region and places both vrings.
    #[inline(always)]
    fn queues(region: &SharedRegion<'r>, cfg: &LiteConfig) -> Result<[DeviceQueue<N>; 2], Error> {
        let layout = cfg.validate(region.len())?;
        let (o0, o1, _) = cfg.offsets();
        let queue = |offset| -> Result<DeviceQueue<N>, Error> {
            DeviceQueue::new(Vring::new(region, offset, layout)?)
                .map_err(|_| Error::Config("ring size above the remote's capacity N"))
        };
        Ok([queue(o0)?, queue(o1)?])
    }

    #[inline(always)]
    fn assemble(
        region: SharedRegion<'r>,
        platform: P,
        cfg: &LiteConfig,
        queues: [DeviceQueue<N>; 2],
    ) -> Self {
        Self {
            tx: Tx {
                region,
                platform,
                queues,
                ids: [cfg.link_id << 1, (cfg.link_id << 1) | 1],
                rings_end: cfg.offsets().2,
                // `validate` made sure a buffer holds a header; a header counts the payload
                // in 16 bits, whatever the buffers hold.
                mtu: (cfg.buffer_size as usize - HEADER_LEN).min(usize::from(u16::MAX)),
                up: false,
                broken: false,
                stats: LinkStats::default(),
            },
            epts: [None; EPTS],
            kicked: false,
        }
    }

    /// Whether the driver is there (`rpmsg_lite_is_link_up`). [`Remote::poll`] and
    /// [`Remote::handle_notify`] find out.
    pub fn is_up(&self) -> bool {
        self.tx.up
    }

    /// Payload bytes one message can carry: a buffer less its header, at most 65,535 (the
    /// header's length field).
    pub fn mtu(&self) -> usize {
        self.tx.mtu
    }

    /// The counters: messages, drops and the driver's violations.
    pub fn stats(&self) -> &LinkStats {
        &self.tx.stats
    }

    /// Notify ids of vring 0 and vring 1 (`(link_id << 1) | queue`).
    pub fn notify_ids(&self) -> [u32; 2] {
        self.tx.ids
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
        if id == self.tx.ids[0] {
            self.kicked = true;
        }
        self.poll()
    }

    /// Delivers what the driver has sent: each message goes to its endpoint's callback, then
    /// its buffer back to the driver. Takes at most four rings' worth per call, so a driver
    /// that keeps sending cannot keep us here. Returns how many buffers it took.
    ///
    /// Before the link is up it only looks for the driver: the driver's first kick of vring 0
    /// (see [`Remote::handle_notify`]) or its receive buffers on vring 0.
    ///
    /// # Errors
    ///
    /// [`Error::PeerViolation`] when the driver broke a ring beyond use (the remote stays
    /// stopped; every later call says so). Malformed messages are dropped and counted, not
    /// errors.
    pub fn poll(&mut self) -> Result<usize, Error> {
        self.tx.healthy()?;
        if !self.tx.up && !self.attach()? {
            return Ok(0);
        }
        let mut taken = 0;
        while taken < 4 * N {
            let Some(t) = self.tx.take(RX, HEADER_LEN)? else {
                break;
            };
            taken += 1;
            if let Some((id, off, cap)) = t {
                self.deliver(off, cap)?;
                // used.len = desc.len, as every reader accepts (wire.md 4.5).
                self.tx.give_back(RX, id, cap)?;
                // A callback's send may have found a broken ring: stop here too.
                self.tx.healthy()?;
            }
        }
        if taken > 0 {
            self.tx.notify(RX);
        }
        Ok(taken)
    }

    /// Reads the header of the buffer at `off` (`cap` bytes) and runs the callback of the
    /// endpoint it is for.
    fn deliver(&mut self, off: usize, cap: u32) -> Result<(), Error> {
        let region = self.tx.region;
        self.tx.invalidate(off, HEADER_LEN);
        let mut hb = [0u8; HEADER_LEN];
        region.copy_out(off, &mut hb)?;
        let hdr = RpmsgRepr::from_bytes(&hb);
        let room = cap - HEADER_LEN as u32;
        let stats = &mut self.tx.stats;
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
        (ept.handler)(Message {
            region,
            offset: payload,
            len: usize::from(hdr.len),
            src: hdr.src,
            dst: hdr.dst,
            tx: &mut self.tx,
        });
        Ok(())
    }

    /// Looks for the driver; attaches both rings when it is there.
    fn attach(&mut self) -> Result<bool, Error> {
        let tx = &mut self.tx;
        let region = tx.region;
        let (o, l) = tx.queues[TX].ring().avail_range();
        tx.invalidate(o, l);
        if self.kicked || tx.queues[TX].ring().avail_idx(&region)? != 0 {
            for q in &mut tx.queues {
                q.attach(&region)?;
            }
            tx.up = true;
            tx.stats.sessions = tx.stats.sessions.wrapping_add(1);
        }
        Ok(tx.up)
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

impl<P: Platform, const N: usize> Tx<'_, P, N> {
    fn healthy(&self) -> Result<(), Error> {
        match self.stats.last_violation {
            Some(v) if self.broken => Err(Error::PeerViolation(v)),
            _ => Ok(()),
        }
    }

    /// Counts `v`; a fatal one also stops the remote and is returned as the error.
    fn violation(&mut self, v: Violation) -> Result<(), Error> {
        self.stats.peer_violations = self.stats.peer_violations.wrapping_add(1);
        self.stats.last_violation = Some(v);
        if v.breaks_ring() {
            self.broken = true;
            return Err(Error::PeerViolation(v));
        }
        Ok(())
    }

    /// Discards cached lines over `len` bytes at region `offset` before we read what the
    /// driver wrote there.
    fn invalidate(&self, offset: usize, len: usize) {
        self.platform
            .cache_invalidate(self.region.base_addr() + offset, len);
    }

    /// Makes ring `q`'s used ring (and what it returns) visible, then rings its doorbell.
    fn notify(&self, q: usize) {
        let (offset, len) = self.queues[q].ring().used_range();
        self.platform
            .cache_clean(self.region.base_addr() + offset, len);
        self.platform.notify(self.ids[q]);
    }

    /// Returns buffer `id` on ring `q`'s used ring with `len`.
    fn give_back(&mut self, q: usize, id: u16, len: u32) -> Result<(), Error> {
        self.queues[q].push_used(&self.region, id, len)?;
        Ok(())
    }

    /// Takes the next buffer the driver made available on ring `q`. `None` when there is none;
    /// `Some(None)` when it failed a check (counted, and already given back empty);
    /// `Some(Some((id, region offset, length)))` for a single descriptor of at least `need`
    /// bytes that lies in the region, clear of both vrings.
    #[allow(clippy::type_complexity)]
    fn take(&mut self, q: usize, need: usize) -> Result<Option<Option<(u16, usize, u32)>>, Error> {
        let region = self.region;
        let (o, l) = self.queues[q].ring().avail_range();
        self.invalidate(o, l);
        let p = match self.queues[q].pop_avail(&region) {
            Ok(None) => return Ok(None),
            Ok(Some(p)) => p,
            Err(v) => {
                self.violation(v)?;
                return Ok(Some(None));
            }
        };
        let len = p.len as usize;
        let v = if p.flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT) != 0 {
            Violation::Chained {
                id: p.id,
                flags: p.flags,
            }
        } else if len < need {
            Violation::LengthTooLarge {
                len: need as u32,
                cap: p.len,
            }
        } else {
            let off = self
                .platform
                .address_map()
                .to_offset(p.addr, len)
                .filter(|&off| off >= self.rings_end && region.contains(off, len));
            if let Some(off) = off {
                return Ok(Some(Some((p.id, off, p.len))));
            }
            Violation::BadAddress {
                addr: p.addr,
                len: p.len,
            }
        };
        self.violation(v)?;
        if q == RX {
            self.stats.rx_malformed = self.stats.rx_malformed.wrapping_add(1);
        }
        // Give it back empty: the driver loses nothing.
        self.give_back(q, p.id, 0)?;
        self.notify(q);
        Ok(Some(None))
    }

    fn send(&mut self, src: u32, dst: u32, data: &[u8]) -> Result<(), Error> {
        self.healthy()?;
        if !self.up {
            return Err(Error::NotReady);
        }
        if src == RPMSG_ADDR_ANY || dst == RPMSG_ADDR_ANY {
            return Err(Error::InvalidAddress(RPMSG_ADDR_ANY));
        }
        let len = match u16::try_from(data.len()) {
            Ok(len) if data.len() <= self.mtu => len,
            _ => {
                return Err(Error::PayloadTooLarge {
                    len: data.len(),
                    max: self.mtu,
                });
            }
        };
        let need = HEADER_LEN + data.len();
        // Bounded: each round takes one ring entry, and a ring holds at most N.
        for _ in 0..=N {
            let Some(t) = self.take(TX, need)? else {
                return Err(Error::NoBuffer);
            };
            let Some((id, off, cap)) = t else {
                continue;
            };
            let hdr = RpmsgRepr {
                src,
                dst,
                len,
                flags: 0,
            };
            self.region.copy_in(off, &hdr.to_bytes())?;
            self.region.copy_in(off + HEADER_LEN, data)?;
            self.platform
                .cache_clean(self.region.base_addr() + off, need);
            self.give_back(TX, id, cap)?;
            self.stats.tx_messages = self.stats.tx_messages.wrapping_add(1);
            self.notify(TX);
            return Ok(());
        }
        Err(Error::NoBuffer)
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
