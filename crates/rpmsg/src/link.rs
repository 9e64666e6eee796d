//! One virtio rpmsg device: a [`Link`] to one peer, in one role.
//!
//! * [`Role::Driver`] (the host, RPMsg-Lite's "master", OpenAMP's `RPMSG_HOST`, what Linux always
//!   is) lays out the rings, owns every buffer, posts receive buffers on vring 0 and sends on
//!   vring 1.
//! * [`Role::Device`] (the remote) takes the driver's empty buffers from vring 0 to send, and
//!   receives on vring 1.
//!
//! A link holds the two queues, the endpoint table (`EPTS` slots), per-buffer bookkeeping for
//! up to `N` descriptors per ring, and counters. Several links live side by side; there is no
//! global state. All bookkeeping sits behind the environment's lock, held only for short
//! sections that never call out: doorbells, wake-ups and callbacks run after it is released.
//!
//! # Life of a link
//!
//! [`Link::new`] checks the configuration. [`Link::start`] brings our side up: the driver zeroes
//! and fills the rings, writes the virtio status like Linux (0x01, 0x03, then 0x07) when there is
//! a resource table, and kicks vring 0; the device starts watching for the driver. The device
//! detects link-up the way each peer signals it (wire.md 8 and 13): with a resource table, the
//! `DRIVER_OK` bit of the status byte (tested, never compared whole); without one (RPMsg-Lite
//! master), the first vring 0 notification or a non-zero vring 0 `avail.idx`, since an
//! interrupt may come before our handler is installed. The device's used indices continue from
//! memory (an RPMsg-Lite master pre-fills vring 1's used ring), but the device never takes a
//! shadow index from a ring the driver may still be writing: link-up reads nothing but vring
//! 0's `avail.idx`, and each ring's `used.idx` is read at the first buffer the driver makes
//! available on that ring (`DeviceQueue::attach`), which a driver does only after its set-up.
//! `rpmsg_lite_master_init` posts vring 0 first, pre-fills vring 1's used ring afterwards and
//! kicks last, so a device polling in between may be up early without ever writing over the
//! master's count. If the status byte later loses
//! `DRIVER_OK`, the device forgets the old session (its buffers and queued messages, marked by
//! an epoch) and waits for the next. [`Link::shutdown`] announces the destruction of our named
//! endpoints, resets the status byte on the driver side, and from then on every call is
//! [`Error::LinkDown`].
//!
//! # Roles and layouts at build time
//!
//! Each role and each layout is a Cargo feature, all on by default: `role-driver`,
//! `role-device`, `layout-lite`, `layout-rsc-table`. A firmware that only ever plays one part
//! (an RPMsg-Lite remote: `default-features = false, features = ["role-device", "layout-lite"]`)
//! leaves the code of the others out of its image. A [`Config`] that asks for a role or layout
//! compiled out is refused by [`Link::new`] with an [`Error::Config`] naming the feature.
//!
//! # Driving it
//!
//! Call [`Link::handle_notify`] from the doorbell interrupt (or thread), or [`Link::poll`] in a
//! loop: either takes every message the peer has published, queues it to its endpoint or runs
//! its callback, and wakes waiters. Blocking calls poll too while they wait, so a program
//! without interrupts works.
//!
//! A callback runs inside the poll that took its message, and may send, create or destroy
//! endpoints and release buffers. A call from inside it that would take messages itself
//! (`poll`, `handle_notify`, `recv*`, `wait_link_up` and their async forms) is refused with
//! [`Error::InCallback`] rather than deferred: it would otherwise run the next message's
//! callback one stack frame deeper, as deep as the peer queues messages, and a `recv` waiting
//! there could never be served. The poll running the callback takes the next messages when
//! it returns. Other threads are told apart by [`Environment::context_id`] and are served
//! meanwhile.
//!
//! # What we do where peers differ
//!
//! * As device we notify after every used-ring update unless the driver set
//!   `VRING_AVAIL_F_NO_INTERRUPT` and [`Config::honour_no_interrupt`] is on: on by default with a
//!   resource table (Linux and OpenAMP set the flag only when they need no interrupt), off with
//!   RPMsg-Lite's layout, whose master sets it permanently yet relies on the interrupts (wire.md
//!   13 #5). The flag is read after `used.idx` is published, behind a full fence, so a driver
//!   that clears it and re-checks the used ring (virtio's enable-interrupt step) misses
//!   nothing. [`LinkStats::doorbells`] and [`LinkStats::doorbells_suppressed`] count both.
//! * As driver we honour `VRING_USED_F_NO_NOTIFY`, and set `VRING_AVAIL_F_NO_INTERRUPT` on
//!   vring 1 while no sender waits for a buffer, clearing it while one does (as Linux).
//! * A message whose header claims more than its buffer holds, one for an unknown address, a
//!   malformed announcement: dropped, counted in [`LinkStats`], the buffer returned. As
//!   driver, a receive buffer returned with a used length below the 16-byte header carries
//!   no message (its header is an old one): refused, counted, posted again.
//! * As device, a receive buffer of the driver (vring 0) that fails a check (outside the
//!   region, over the rings, chained, shorter than a header) is counted and kept, never
//!   returned: every driver reads the header of a returned buffer again whatever its used
//!   length (Linux's `used.len - 16` wraps below 16, OpenAMP and RPMsg-Lite do not look), so
//!   it would deliver the last message that buffer carried a second time. A sound buffer too
//!   small for a message stays ours for a smaller one; the send fails with
//!   [`Error::PayloadTooLarge`]. Refused transmit buffers (vring 1) go back with their
//!   descriptor's length, which is what drivers expect there. A ring
//!   index that runs ahead by more than the ring holds breaks the link
//!   ([`Error::PeerViolation`]) since nothing after it can be trusted.

use crate::buffer::{HeldError, HeldRx, RxBuffer, RxInfo, RxInfoKey, TxBuffer, TxInfo};
use crate::endpoint::{Endpoint, EndpointConfig, RxHandler, RxMode};
use crate::error::Error;
use crate::layout::{LayoutConfig, LiteConfig, RscConfig};
use crate::ns::{Announcement, NsHandler, NsKind};
use crate::port::{AddressMap, Environment, Platform, Timeout};
use crate::shm::SharedRegion;
use crate::virtqueue::{DeviceQueue, DriverQueue, Violation, Vring};
use crate::wire::ns::{NS_MSG_LEN, Name, NsFlags, NsRepr};
use crate::wire::rpmsg::{
    HEADER_LEN, RPMSG_ADDR_ANY, RPMSG_NS_ADDR, RPMSG_RESERVED_ADDRESSES, RpmsgRepr,
};
use crate::wire::rsc::{FW_RSC_ADDR_ANY, VdevInfo, vdev_field};
use crate::wire::vring::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_RPMSG_F_NS, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VringLayout,
};
use core::cell::RefCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use embassy_sync::blocking_mutex::Mutex;

/// Which side of the virtio device we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The virtio driver: host, master; owns the buffers.
    Driver,
    /// The virtio device: remote.
    Device,
}

/// How a link is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Our role.
    pub role: Role,
    /// Where rings and buffers lie.
    pub layout: LayoutConfig,
    /// Offer (device) or accept (driver) the name service.
    pub name_service: bool,
    /// How long `send`, `send_to` and `send_offchannel` wait for a free buffer (15 s, as Linux).
    pub send_timeout: Duration,
    /// Longest sleep of a blocking call between looks at the rings, for environments whose
    /// wake-ups may be missed (OpenAMP polls every 1 ms).
    pub poll_interval: Duration,
    /// Device role: skip the notification when the driver set `VRING_AVAIL_F_NO_INTERRUPT`.
    /// [`Config::new`] turns it on for the resource-table layout (Linux's and OpenAMP's drivers
    /// set the flag only while they need no interrupt) and off for RPMsg-Lite's, whose master
    /// sets it permanently and still needs every interrupt.
    pub honour_no_interrupt: bool,
}

impl Config {
    /// A configuration with the defaults: name service on, 15 s send timeout, 1 ms poll,
    /// `VRING_AVAIL_F_NO_INTERRUPT` honoured with a resource table only.
    pub const fn new(role: Role, layout: LayoutConfig) -> Self {
        Self {
            role,
            layout,
            name_service: true,
            send_timeout: Duration::from_secs(15),
            poll_interval: Duration::from_millis(1),
            honour_no_interrupt: matches!(layout, LayoutConfig::RscTable(_)),
        }
    }

    /// The RPMsg-Lite layout in `role`.
    pub const fn lite(role: Role, lite: LiteConfig) -> Self {
        Self::new(role, LayoutConfig::Lite(lite))
    }

    /// The resource-table layout in `role`.
    pub const fn rsc_table(role: Role, rsc: RscConfig) -> Self {
        Self::new(role, LayoutConfig::RscTable(rsc))
    }

    /// Which Cargo feature this configuration needs and this build lacks, as the reason
    /// [`Link::new`] gives.
    const fn missing_feature(&self) -> Option<&'static str> {
        match self.role {
            Role::Driver if !cfg!(feature = "role-driver") => {
                return Some("Role::Driver is compiled out: enable rpmsg's `role-driver` feature");
            }
            Role::Device if !cfg!(feature = "role-device") => {
                return Some("Role::Device is compiled out: enable rpmsg's `role-device` feature");
            }
            _ => {}
        }
        match self.layout {
            LayoutConfig::Lite(_) if !cfg!(feature = "layout-lite") => {
                Some("LayoutConfig::Lite is compiled out: enable rpmsg's `layout-lite` feature")
            }
            LayoutConfig::RscTable(_) if !cfg!(feature = "layout-rsc-table") => Some(
                "LayoutConfig::RscTable is compiled out: enable rpmsg's `layout-rsc-table` feature",
            ),
            _ => None,
        }
    }
}

/// Counters of what happened on a link. Every message dropped shows up here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LinkStats {
    /// Messages sent.
    pub tx_messages: u32,
    /// Messages received and delivered to an endpoint or the name service.
    pub rx_messages: u32,
    /// Dropped: no endpoint at the destination address.
    pub rx_unknown_dst: u32,
    /// Dropped: header length larger than the buffer, buffer shorter than a header, chained.
    pub rx_malformed: u32,
    /// Dropped: name-service message of the wrong length.
    pub ns_malformed: u32,
    /// Announcements received.
    pub ns_received: u32,
    /// Peer protocol violations seen (each also counted above where a message was lost).
    pub peer_violations: u32,
    /// Times a full endpoint queue held the ring back.
    pub backpressure: u32,
    /// Receive buffers held by the application now (callbacks that kept them, queued messages).
    pub held: u32,
    /// Link sessions started (device: each `DRIVER_OK` seen).
    pub sessions: u32,
    /// Doorbells we rang (`Platform::notify` calls), both rings.
    pub doorbells: u32,
    /// Device role: doorbells left out because the driver set `VRING_AVAIL_F_NO_INTERRUPT` and
    /// [`Config::honour_no_interrupt`] is on.
    pub doorbells_suppressed: u32,
    /// The last violation seen.
    pub last_violation: Option<Violation>,
}

impl LinkStats {
    /// All counters at zero, no violation seen (the same as `default()`, in a `const`).
    pub const fn new() -> Self {
        Self {
            tx_messages: 0,
            rx_messages: 0,
            rx_unknown_dst: 0,
            rx_malformed: 0,
            ns_malformed: 0,
            ns_received: 0,
            peer_violations: 0,
            backpressure: 0,
            held: 0,
            sessions: 0,
            doorbells: 0,
            doorbells_suppressed: 0,
            last_violation: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Waiting,
    Up,
    /// The driver reset the device after a session: calls fail with `LinkDown` until the
    /// driver starts a new session.
    Reset,
    Down,
    Broken(Violation),
}

const NIL: u16 = u16::MAX;

/// Callbacks of one link that may run at the same time in different threads and still be
/// told apart (more are handled conservatively: see `State::callers_overflow`).
const CALLERS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RxState {
    Free,
    Queued,
    Held,
    Parked,
}

#[derive(Debug, Clone, Copy)]
struct RxMeta {
    state: RxState,
    next: u16,
    offset: usize,
    len: u16,
    src: u32,
    dst: u32,
    ret_len: u32,
}

impl RxMeta {
    const EMPTY: Self = Self {
        state: RxState::Free,
        next: NIL,
        offset: 0,
        len: 0,
        src: 0,
        dst: 0,
        ret_len: 0,
    };
}

#[cfg(feature = "role-driver")]
#[derive(Debug, Clone, Copy)]
struct Pool {
    offset: usize,
    size: u32,
    count: u16,
}

#[cfg(feature = "role-driver")]
impl Pool {
    fn buffer(&self, id: u16) -> usize {
        // id < count <= 32768 and the pool was checked to fit in the region at set-up.
        self.offset + usize::from(id) * self.size as usize
    }
}

/// The rings as our role sees them (a variant per role compiled in).
enum Queues<const N: usize> {
    None,
    #[cfg(feature = "role-driver")]
    Driver {
        rx: DriverQueue<N>,
        tx: DriverQueue<N>,
        rx_pool: Pool,
        tx_pool: Pool,
    },
    #[cfg(feature = "role-device")]
    Device {
        rx: DeviceQueue<N>,
        tx: DeviceQueue<N>,
    },
}

#[derive(Clone, Copy)]
struct Slot<'r> {
    in_use: bool,
    generation: u16,
    addr: u32,
    dst: u32,
    name: Name,
    announce: bool,
    announced: bool,
    mode: RxMode<'r>,
    q_head: u16,
    q_tail: u16,
    q_len: u16,
}

impl Slot<'_> {
    const EMPTY: Self = Self {
        in_use: false,
        generation: 0,
        addr: 0,
        dst: RPMSG_ADDR_ANY,
        name: Name::EMPTY,
        announce: false,
        announced: false,
        mode: RxMode::Queue(0),
        q_head: NIL,
        q_tail: NIL,
        q_len: 0,
    };
}

struct State<'r, const N: usize, const EPTS: usize> {
    phase: Phase,
    epoch: u32,
    ns: bool,
    notify_ids: [u32; 2],
    #[cfg(feature = "layout-rsc-table")]
    vdev: Option<VdevInfo>,
    queues: Queues<N>,
    rx_meta: [RxMeta; N],
    tx_desc_len: [u32; N],
    free: [u16; N],
    nfree: usize,
    parked: u16,
    tx_waiters: u32,
    /// Contexts ([`Environment::context_id`]) running one of our callbacks now.
    callers: [Option<usize>; CALLERS],
    /// Callbacks running beyond `callers`' room: while any do, every context counts as inside.
    callers_overflow: u32,
    slots: [Slot<'r>; EPTS],
    ns_handler: Option<&'r dyn NsHandler>,
    wakers: Wakers,
    /// Services the peer announced (one per endpoint slot), for binding by name later.
    seen: [Option<(Name, u32)>; EPTS],
    seen_next: usize,
    stats: LinkStats,
}

/// Side effects to run once the lock is released.
#[derive(Default)]
struct Effects {
    notify: [bool; 2],
    /// A notification of this ring was left out (the driver's `VRING_AVAIL_F_NO_INTERRUPT`).
    suppressed: [bool; 2],
    ids: [u32; 2],
    wake: bool,
}

enum Next<'r> {
    Idle,
    Again,
    Callback(&'r dyn RxHandler, RxInfo),
    Ns(&'r dyn NsHandler, Announcement),
    /// An announcement that bound or unbound the local endpoint at the address given.
    NsBound(&'r dyn NsHandler, Announcement, u32),
}

/// One rpmsg connection to one peer.
///
/// `N` is the largest vring size the link accepts (256 as Linux; 2 is RPMsg-Lite's default) and
/// sizes the per-buffer bookkeeping; `EPTS` is the number of endpoint slots.
pub struct Link<'r, P: Platform, E: Environment, const N: usize = 256, const EPTS: usize = 8> {
    region: SharedRegion<'r>,
    /// Where the resource table is: the shared region, or the firmware's own section.
    table: SharedRegion<'r>,
    platform: P,
    env: E,
    cfg: Config,
    /// This link's identity for held tokens: drawn from a process-wide counter in
    /// [`Link::new`], so it never repeats and does not change when the link moves.
    id: u64,
    vring0_kicked: AtomicBool,
    /// Callbacks running now, in any context: when 0, no caller can be inside one (the fast
    /// path of `in_callback`).
    dispatching: AtomicU32,
    /// A CREATE announcement could not be sent yet (no buffer): `poll` tries again.
    announce_owed: AtomicBool,
    /// Callers blocked in `wait_for`: wake the environment only when there are some.
    waiters: AtomicU32,
    state: Mutex<E::RawMutex, RefCell<State<'r, N, EPTS>>>,
}

impl<P: Platform, E: Environment, const N: usize, const EPTS: usize> fmt::Debug
    for Link<'_, P, E, N, EPTS>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("role", &self.cfg.role)
            .field("region", &self.region)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl<'r, P: Platform, E: Environment, const N: usize, const EPTS: usize> Link<'r, P, E, N, EPTS> {
    /// A link over `region` that is not started yet.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the layout does not fit the region, a ring is larger than `N`,
    /// `EPTS` exceeds 255, or `cfg` asks for a role or layout whose Cargo feature is off.
    pub fn new(region: SharedRegion<'r>, platform: P, env: E, cfg: Config) -> Result<Self, Error> {
        Self::new_with_table(region, region, platform, env, cfg)
    }

    /// A link whose resource table lies outside the shared region: in the firmware's own
    /// `.resource_table` section (see [`resource_table!`](crate::resource_table)), which
    /// Linux remoteproc writes in place. `cfg`'s [`RscConfig::table_offset`] is then an offset
    /// in `table`. Everything else is as [`Link::new`].
    ///
    /// # Errors
    ///
    /// As [`Link::new`].
    pub fn new_with_table(
        region: SharedRegion<'r>,
        table: SharedRegion<'r>,
        platform: P,
        env: E,
        cfg: Config,
    ) -> Result<Self, Error> {
        if EPTS > 255 || N == 0 || N > 32768 {
            return Err(Error::Config(
                "EPTS must be at most 255 and N between 1 and 32768",
            ));
        }
        if let Some(feature) = cfg.missing_feature() {
            return Err(Error::Config(feature));
        }
        match cfg.layout {
            LayoutConfig::Lite(l) => {
                l.validate(region.len())?;
                if usize::from(l.buffer_count) > N {
                    return Err(Error::Config(
                        "RPMsg-Lite buffer count exceeds the link's capacity N",
                    ));
                }
            }
            LayoutConfig::RscTable(r) => {
                if !table.contains(r.table_offset, r.table_len)
                    || r.table_len > RscConfig::MAX_TABLE_LEN
                {
                    return Err(Error::Config(
                        "resource table lies outside the region or exceeds 1024 bytes",
                    ));
                }
            }
        }
        Ok(Self {
            region,
            table,
            platform,
            env,
            cfg,
            id: next_link_id(),
            vring0_kicked: AtomicBool::new(false),
            dispatching: AtomicU32::new(0),
            announce_owed: AtomicBool::new(false),
            waiters: AtomicU32::new(0),
            state: Mutex::new(RefCell::new(State {
                phase: Phase::Idle,
                epoch: 0,
                ns: false,
                notify_ids: [0, 1],
                #[cfg(feature = "layout-rsc-table")]
                vdev: None,
                queues: Queues::None,
                rx_meta: [RxMeta::EMPTY; N],
                tx_desc_len: [0; N],
                free: [0; N],
                nfree: 0,
                parked: NIL,
                tx_waiters: 0,
                callers: [None; CALLERS],
                callers_overflow: 0,
                slots: [Slot::EMPTY; EPTS],
                ns_handler: None,
                wakers: Wakers::new(),
                seen: [None; EPTS],
                seen_next: 0,
                stats: LinkStats::default(),
            })),
        })
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.cfg.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The environment.
    pub fn environment(&self) -> &E {
        &self.env
    }

    /// The shared region.
    pub fn region(&self) -> &SharedRegion<'r> {
        &self.region
    }

    fn key(&self) -> u64 {
        self.id
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut State<'r, N, EPTS>, &mut Effects) -> R,
    ) -> Result<R, Error> {
        let mut fx = Effects::default();
        let r = self.state.lock(|c| match c.try_borrow_mut() {
            Ok(mut st) => {
                let r = f(&mut st, &mut fx);
                fx.ids = st.notify_ids;
                for (rung, left_out) in fx.notify.iter().zip(fx.suppressed) {
                    let stats = &mut st.stats;
                    if *rung {
                        stats.doorbells = stats.doorbells.wrapping_add(1);
                    } else if left_out {
                        stats.doorbells_suppressed = stats.doorbells_suppressed.wrapping_add(1);
                    }
                }
                if fx.wake {
                    // Waking only schedules the task; it cannot re-enter this link.
                    st.wakers.wake_all();
                }
                Ok(r)
            }
            Err(_) => Err(Error::Busy),
        })?;
        self.apply(fx);
        Ok(r)
    }

    fn apply(&self, fx: Effects) {
        for (q, on) in fx.notify.iter().enumerate() {
            if *on {
                self.platform.notify(fx.ids[q]);
            }
        }
        // Only a blocked caller needs the environment's wake-up (a futex or condvar on
        // hosted environments); see `wait_for` for why the SeqCst load cannot miss one.
        if fx.wake && self.waiters.load(Ordering::SeqCst) > 0 {
            self.env.wake();
        }
    }

    fn with_ids(&self) -> [u32; 2] {
        self.state
            .lock(|c| c.try_borrow().map(|s| s.notify_ids).unwrap_or([0, 1]))
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        self.state
            .lock(|c| c.try_borrow().map(|s| s.stats).unwrap_or_default())
    }

    /// Whether the link is up (both sides ready, not shut down).
    pub fn is_up(&self) -> bool {
        self.state.lock(|c| {
            c.try_borrow()
                .map(|s| matches!(s.phase, Phase::Up))
                .unwrap_or(false)
        })
    }

    /// Whether the name service was negotiated.
    pub fn name_service(&self) -> bool {
        self.state
            .lock(|c| c.try_borrow().map(|s| s.ns).unwrap_or(false))
    }

    /// Payload bytes of the largest message we can send now (driver: buffer size − 16; device:
    /// RPMsg-Lite's configured size − 16, or 496 before we see a buffer), at most 65,535: the
    /// header counts the payload in 16 bits, whatever the buffers hold.
    pub fn mtu(&self) -> usize {
        let buffer = match (self.cfg.role, self.cfg.layout) {
            (_, LayoutConfig::Lite(l)) => l.buffer_size as usize,
            (Role::Driver, LayoutConfig::RscTable(r)) => r.buffer_size as usize,
            (Role::Device, LayoutConfig::RscTable(_)) => 512,
        };
        (buffer - HEADER_LEN).min(usize::from(u16::MAX))
    }

    /// The notify ids of vring 0 and vring 1 (what [`Platform::notify`] receives).
    pub fn notify_ids(&self) -> [u32; 2] {
        self.with_ids()
    }

    /// Receives announcements that no endpoint was waiting for.
    ///
    /// # Errors
    ///
    /// [`Error::Busy`] if called from inside the link.
    pub fn set_ns_handler(&self, handler: &'r dyn NsHandler) -> Result<(), Error> {
        self.with(|st, _| st.ns_handler = Some(handler))
    }

    /// Brings our side up. Driver: lays out the rings, posts the receive buffers, writes the
    /// status, kicks vring 0; the link is up at once. Device: starts watching for the driver.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the layout cannot work (a resource table without an rpmsg vdev, a
    /// vring without a place), [`Error::LinkDown`] after a shutdown.
    pub fn start(&self) -> Result<(), Error> {
        self.with(|st, fx| self.start_locked(st, fx))??;
        self.flush_announcements();
        Ok(())
    }

    fn start_locked(&self, st: &mut State<'r, N, EPTS>, fx: &mut Effects) -> Result<(), Error> {
        match st.phase {
            Phase::Idle => {}
            Phase::Down | Phase::Broken(_) => return Err(Error::LinkDown),
            Phase::Waiting | Phase::Up | Phase::Reset => return Ok(()),
        }
        match (self.cfg.role, self.cfg.layout) {
            #[cfg(all(feature = "role-driver", feature = "layout-lite"))]
            (Role::Driver, LayoutConfig::Lite(l)) => {
                let layout = l.validate(self.region.len())?;
                let (o0, o1, _) = l.offsets();
                let rings = [self.vring(o0, layout)?, self.vring(o1, layout)?];
                let pools = [
                    Pool {
                        offset: l.buffer(0),
                        size: l.buffer_size,
                        count: l.buffer_count,
                    },
                    Pool {
                        offset: l.buffer(usize::from(l.buffer_count)),
                        size: l.buffer_size,
                        count: l.buffer_count,
                    },
                ];
                st.notify_ids = [l.link_id << 1, (l.link_id << 1) | 1];
                st.ns = self.cfg.name_service;
                self.driver_setup(st, rings, pools)?;
                Self::driver_up(st, fx);
                Ok(())
            }
            #[cfg(all(feature = "role-driver", feature = "layout-rsc-table"))]
            (Role::Driver, LayoutConfig::RscTable(r)) => {
                let vdev = r.read_vdev(&self.table)?;
                let status = r.vdev_field(&vdev, vdev_field::STATUS);
                self.table.write_u8(status, 0)?;
                self.table.write_u8(status, VIRTIO_CONFIG_S_ACKNOWLEDGE)?;
                self.table
                    .write_u8(status, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER)?;
                // Accept only the name service, and only if offered (wire.md 13 #36).
                let ns_bit = if self.cfg.name_service {
                    1 << VIRTIO_RPMSG_F_NS
                } else {
                    0
                };
                let g = vdev.dfeatures & ns_bit;
                self.table
                    .write_u32(r.vdev_field(&vdev, vdev_field::GFEATURES), g)?;
                let mut rings = [None, None];
                for (k, slot) in rings.iter_mut().enumerate() {
                    let v = vdev.vrings[k];
                    let layout = ring_layout(v.num, v.align)?;
                    let off = if v.da == FW_RSC_ADDR_ANY {
                        let off = r.vring_offsets[k].ok_or(Error::Config(
                            "vring address is FW_RSC_ADDR_ANY and no vring offset was configured",
                        ))?;
                        let da = self
                            .platform
                            .address_map()
                            .to_addr(off)
                            .and_then(|a| u32::try_from(a).ok())
                            .ok_or(Error::Config("vring offset has no 32-bit peer address"))?;
                        self.table
                            .write_u32(r.vdev_field(&vdev, vdev_field::vring(k)), da)?;
                        off
                    } else {
                        self.platform
                            .address_map()
                            .to_offset(u64::from(v.da), layout.size)
                            .ok_or(Error::Config(
                                "vring address in the table is outside the region",
                            ))?
                    };
                    *slot = Some(self.vring(off, layout)?);
                    st.notify_ids[k] = v.notifyid;
                }
                let [Some(r0), Some(r1)] = rings else {
                    return Err(Error::Config("vrings missing"));
                };
                let count = |num: u16| num.min(r.max_buffers).max(1);
                let rx_pool = Pool {
                    offset: r.pool_offset,
                    size: r.buffer_size,
                    count: count(r0.num()),
                };
                let tx_pool = Pool {
                    offset: r.pool_offset + usize::from(rx_pool.count) * r.buffer_size as usize,
                    size: r.buffer_size,
                    count: count(r1.num()),
                };
                st.ns = g & (1 << VIRTIO_RPMSG_F_NS) != 0;
                st.vdev = Some(vdev);
                self.driver_setup(st, [r0, r1], [rx_pool, tx_pool])?;
                // The features and vring addresses above happen before DRIVER_OK for a device
                // that acquires it (tests/two_threads.rs under Miri found no fence here).
                crate::shm::fence::release();
                self.table.write_u8(
                    status,
                    VIRTIO_CONFIG_S_ACKNOWLEDGE
                        | VIRTIO_CONFIG_S_DRIVER
                        | VIRTIO_CONFIG_S_DRIVER_OK,
                )?;
                Self::driver_up(st, fx);
                Ok(())
            }
            #[cfg(all(feature = "role-device", feature = "layout-lite"))]
            (Role::Device, LayoutConfig::Lite(l)) => {
                let layout = l.validate(self.region.len())?;
                let (o0, o1, _) = l.offsets();
                let rings = [self.vring(o0, layout)?, self.vring(o1, layout)?];
                st.notify_ids = [l.link_id << 1, (l.link_id << 1) | 1];
                st.ns = self.cfg.name_service;
                st.queues = Queues::Device {
                    tx: DeviceQueue::new(rings[0])
                        .map_err(|_| Error::Config("vring larger than N"))?,
                    rx: DeviceQueue::new(rings[1])
                        .map_err(|_| Error::Config("vring larger than N"))?,
                };
                st.phase = Phase::Waiting;
                self.check_device_up(st, fx)
            }
            #[cfg(all(feature = "role-device", feature = "layout-rsc-table"))]
            (Role::Device, LayoutConfig::RscTable(_)) => {
                st.phase = Phase::Waiting;
                self.check_device_up(st, fx)
            }
            // `Link::new` refused this configuration already.
            #[cfg(not(all(
                feature = "role-driver",
                feature = "role-device",
                feature = "layout-lite",
                feature = "layout-rsc-table"
            )))]
            _ => {
                let _ = fx;
                Err(Error::Config(
                    self.cfg
                        .missing_feature()
                        .unwrap_or("role or layout compiled out"),
                ))
            }
        }
    }

    /// Driver: the rings are laid out and the buffers posted; the link is up.
    #[cfg(all(
        feature = "role-driver",
        any(feature = "layout-lite", feature = "layout-rsc-table")
    ))]
    fn driver_up(st: &mut State<'r, N, EPTS>, fx: &mut Effects) {
        st.phase = Phase::Up;
        st.stats.sessions = st.stats.sessions.wrapping_add(1);
        // "Driver ready": the first vring 0 kick is RPMsg-Lite's link-up signal and Linux's
        // post-DRIVER_OK kick; the device never sets NO_NOTIFY before link-up (wire.md 13 #4).
        fx.notify[0] = true;
        fx.wake = true;
    }

    #[cfg(all(
        any(feature = "role-driver", feature = "role-device"),
        any(feature = "layout-lite", feature = "layout-rsc-table")
    ))]
    fn vring(&self, offset: usize, layout: VringLayout) -> Result<Vring, Error> {
        Vring::new(&self.region, offset, layout)
            .map_err(|_| Error::Config("a vring lies outside the shared region or is misaligned"))
    }

    #[cfg(all(
        feature = "role-driver",
        any(feature = "layout-lite", feature = "layout-rsc-table")
    ))]
    fn driver_setup(
        &self,
        st: &mut State<'r, N, EPTS>,
        rings: [Vring; 2],
        pools: [Pool; 2],
    ) -> Result<(), Error> {
        for p in &pools {
            let len = usize::from(p.count) * p.size as usize;
            if !self.region.contains(p.offset, len) || p.size < 16 {
                return Err(Error::Config("buffer pool lies outside the shared region"));
            }
        }
        let map = self.platform.address_map();
        let mut rx =
            DriverQueue::new(rings[0]).map_err(|_| Error::Config("vring 0 larger than N"))?;
        let tx = DriverQueue::new(rings[1]).map_err(|_| Error::Config("vring 1 larger than N"))?;
        for r in &rings {
            r.zero(&self.region)?;
        }
        for (k, p) in pools.iter().enumerate() {
            if p.count > rings[k].num() {
                return Err(Error::Config("more buffers than vring entries"));
            }
            for id in 0..p.count {
                let addr = map
                    .to_addr(p.buffer(id))
                    .ok_or(Error::Config("buffer has no peer address"))?;
                let flags = if k == 0 { VRING_DESC_F_WRITE } else { 0 };
                rings[k].write_desc(&self.region, id, addr, p.size, flags)?;
            }
        }
        for id in 0..pools[0].count {
            self.region.fill(pools[0].buffer(id), HEADER_LEN, 0)?;
            rx.publish(&self.region, id)?;
        }
        // No sender waits yet: ask the device not to interrupt us for returned tx buffers.
        tx.set_no_interrupt(&self.region, true)?;
        st.nfree = 0;
        for id in (0..pools[1].count).rev() {
            if let Some(f) = st.free.get_mut(st.nfree) {
                *f = id;
                st.nfree += 1;
            }
        }
        let p = self.region.base_addr();
        self.platform
            .cache_clean(p + rings[0].base, rings[0].layout.size);
        self.platform
            .cache_clean(p + rings[1].base, rings[1].layout.size);
        st.queues = Queues::Driver {
            rx,
            tx,
            rx_pool: pools[0],
            tx_pool: pools[1],
        };
        Ok(())
    }

    /// Device: is the driver there yet (or gone)?
    fn check_device_up(&self, st: &mut State<'r, N, EPTS>, fx: &mut Effects) -> Result<(), Error> {
        if self.cfg.role != Role::Device {
            return Ok(());
        }
        match self.cfg.layout {
            #[cfg(all(feature = "role-device", feature = "layout-lite"))]
            LayoutConfig::Lite(l) => {
                if !matches!(st.phase, Phase::Waiting) {
                    return Ok(());
                }
                let Queues::Device { tx, .. } = &st.queues else {
                    return Ok(());
                };
                let kicked = self.vring0_kicked.load(Ordering::Acquire);
                let posted = tx.ring().avail_idx(&self.region)?;
                if kicked || posted != 0 {
                    if posted != 0 {
                        if let Some(v) = self.lite_geometry_differs(tx.ring(), &l)? {
                            return Err(Self::fatal(st, fx, v));
                        }
                    }
                    let Queues::Device { rx, tx } = &mut st.queues else {
                        return Ok(());
                    };
                    tx.attach(&self.region)?;
                    rx.attach(&self.region)?;
                    st.phase = Phase::Up;
                    st.stats.sessions = st.stats.sessions.wrapping_add(1);
                    fx.wake = true;
                }
            }
            #[cfg(all(feature = "role-device", feature = "layout-rsc-table"))]
            LayoutConfig::RscTable(r) => {
                let status_at = match st.vdev {
                    Some(v) => r.vdev_field(&v, vdev_field::STATUS),
                    None => {
                        // Find the status byte once; the table shape is ours and stays put.
                        let v = r.read_vdev(&self.table)?;
                        st.vdev = Some(v);
                        r.vdev_field(&v, vdev_field::STATUS)
                    }
                };
                self.platform
                    .cache_invalidate(self.table.base_addr() + status_at, 1);
                let ok = self.table.read_u8(status_at)? & VIRTIO_CONFIG_S_DRIVER_OK != 0;
                match (st.phase, ok) {
                    (Phase::Waiting | Phase::Reset, true) => {
                        // Read what the driver wrote only now, after DRIVER_OK (wire.md 13 #16),
                        // and behind an acquire fence that pairs with the driver's release
                        // before it. Whatever is wrong in it now is the driver's doing.
                        crate::shm::fence::acquire();
                        if let Err(e) = self.attach_device_rsc(st, &r) {
                            let e = match e {
                                Error::Config(what) => {
                                    Error::PeerViolation(Violation::BadTable(what))
                                }
                                e => e,
                            };
                            if let Error::PeerViolation(v) = e {
                                Self::violation(&mut st.stats, v);
                            }
                            return Err(e);
                        }
                        st.phase = Phase::Up;
                        st.stats.sessions = st.stats.sessions.wrapping_add(1);
                        fx.wake = true;
                    }
                    (Phase::Up, false) => {
                        // The driver reset the device: forget this session, wait for the next.
                        self.new_epoch(st);
                        st.phase = Phase::Reset;
                        fx.wake = true;
                    }
                    _ => {}
                }
            }
            // A device link of a layout compiled out is never built.
            #[cfg(not(all(
                feature = "role-device",
                feature = "layout-lite",
                feature = "layout-rsc-table"
            )))]
            _ => {
                let _ = (st, fx);
            }
        }
        Ok(())
    }

    /// Device, RPMsg-Lite layout, at link-up: is the first buffer the driver posted on vring 0
    /// one of ours (`LiteConfig::buffer`)? A driver with another `VRING_SIZE` or `VRING_ALIGN`
    /// puts its buffers elsewhere, and would seem to work one way only (its vring 1 is not where
    /// we look).
    #[cfg(all(feature = "role-device", feature = "layout-lite"))]
    fn lite_geometry_differs(
        &self,
        ring: &Vring,
        l: &LiteConfig,
    ) -> Result<Option<Violation>, Error> {
        // Acquire: the slot and descriptor are read after the index that published them.
        crate::shm::fence::acquire();
        let head = self.region.read_u16(ring.avail_range().0 + 4)?;
        if head >= ring.num() {
            return Ok(None); // pop_avail reports it
        }
        let (addr, len, _) = ring.read_desc(&self.region, head)?;
        let found = self.platform.address_map().to_offset(addr, len as usize);
        let start = l.offsets().2;
        let end = l.buffer(usize::from(l.buffer_count));
        let size = l.buffer_size as usize;
        let ours = found.is_some_and(|o| o >= start && o < end && (o - start) % size == 0);
        Ok((!ours).then(|| Violation::GeometryMismatch {
            found: found.map_or(u32::MAX, |o| u32::try_from(o).unwrap_or(u32::MAX)),
            expected: u32::try_from(start).unwrap_or(u32::MAX),
        }))
    }

    /// Device, resource table: takes the vrings the driver placed and the features it chose.
    #[cfg(all(feature = "role-device", feature = "layout-rsc-table"))]
    fn attach_device_rsc(&self, st: &mut State<'r, N, EPTS>, r: &RscConfig) -> Result<(), Error> {
        let v = r.read_vdev(&self.table)?;
        let mut rings = [None, None];
        for (k, slot) in rings.iter_mut().enumerate() {
            let vr = v.vrings[k];
            let layout = ring_layout(vr.num, vr.align)?;
            let off = self
                .platform
                .address_map()
                .to_offset(u64::from(vr.da), layout.size)
                .ok_or(Error::PeerViolation(Violation::BadAddress {
                    addr: u64::from(vr.da),
                    len: layout.size as u32,
                }))?;
            *slot = Some(self.vring(off, layout)?);
            st.notify_ids[k] = vr.notifyid;
        }
        let [Some(r0), Some(r1)] = rings else {
            return Err(Error::Config("vrings missing"));
        };
        let mut tx = DeviceQueue::new(r0).map_err(|_| Error::Config("vring larger than N"))?;
        let mut rx = DeviceQueue::new(r1).map_err(|_| Error::Config("vring larger than N"))?;
        tx.attach(&self.region)?;
        rx.attach(&self.region)?;
        let nsbit = 1 << VIRTIO_RPMSG_F_NS;
        st.ns = self.cfg.name_service && v.dfeatures & v.gfeatures & nsbit != 0;
        st.vdev = Some(v);
        st.queues = Queues::Device { rx, tx };
        Ok(())
    }

    fn new_epoch(&self, st: &mut State<'r, N, EPTS>) {
        st.epoch = st.epoch.wrapping_add(1);
        st.seen = [None; EPTS];
        st.queues = Queues::None;
        st.rx_meta = [RxMeta::EMPTY; N];
        st.nfree = 0;
        st.parked = NIL;
        st.stats.held = 0;
        for s in st.slots.iter_mut() {
            s.q_head = NIL;
            s.q_tail = NIL;
            s.q_len = 0;
            s.announced = false;
        }
    }

    fn phase_error(phase: Phase) -> Error {
        match phase {
            Phase::Idle | Phase::Waiting => Error::NotReady,
            Phase::Down | Phase::Up | Phase::Reset => Error::LinkDown,
            Phase::Broken(v) => Error::PeerViolation(v),
        }
    }

    fn violation(stats: &mut LinkStats, v: Violation) {
        stats.peer_violations = stats.peer_violations.wrapping_add(1);
        stats.last_violation = Some(v);
    }

    fn fatal(st: &mut State<'r, N, EPTS>, fx: &mut Effects, v: Violation) -> Error {
        Self::violation(&mut st.stats, v);
        st.phase = Phase::Broken(v);
        fx.wake = true;
        Error::PeerViolation(v)
    }

    /// Handles a doorbell for notify id `id`: call it from the inter-core interrupt. Takes every
    /// published message, wakes waiters. An id this link does not know is ignored.
    ///
    /// # Errors
    ///
    /// As [`Link::poll`].
    pub fn handle_notify(&self, id: u32) -> Result<usize, Error> {
        let ids = self.with_ids();
        if id == ids[0] {
            self.vring0_kicked.store(true, Ordering::Release);
        }
        let r = self.poll();
        // Buffers may have come back without a message to dispatch: let every waiter re-check.
        let _ = self.with(|_, fx| fx.wake = true);
        r
    }

    /// Takes the messages the peer has published (up to four rings' worth per call): queues
    /// each to its endpoint, runs its callback, or handles it as a name-service message.
    /// Returns how many were taken.
    /// Device: also notices the driver coming up or resetting.
    ///
    /// # Errors
    ///
    /// [`Error::PeerViolation`] when the peer broke the rings beyond recovery (the link is then
    /// down, and every later call says so); [`Error::LinkDown`] after [`Link::shutdown`];
    /// [`Error::Busy`] when called from inside the link (an interrupt that preempted it);
    /// [`Error::InCallback`] from inside one of this link's callbacks (see the
    /// [module docs](self)).
    pub fn poll(&self) -> Result<usize, Error> {
        if self.in_callback() {
            return Err(Error::InCallback);
        }
        let mut n = 0;
        let mut was_up = None;
        // Bounded, so a peer that keeps publishing cannot keep us here: four rings' worth per
        // call; what is left waits for the next poll.
        let budget = 4 * N;
        while n < budget {
            // Messages that only need queueing (or dropping) are handled in one critical
            // section; the lock is let go only to run a callback.
            let next = self.with(|st, fx| {
                was_up.get_or_insert(matches!(st.phase, Phase::Up));
                loop {
                    match self.rx_step(st, fx) {
                        Ok(Next::Again) if n + 1 < budget => n += 1,
                        other => return other,
                    }
                }
            })??;
            match next {
                Next::Idle => break,
                Next::Again => {}
                Next::Callback(h, info) => {
                    self.in_callback_run(|| h.on_message(RxBuffer::new(self, info)));
                }
                Next::Ns(h, a) => self.in_callback_run(|| h.on_announcement(&a)),
                Next::NsBound(h, a, local) => self.in_callback_run(|| h.on_bound(&a, local)),
            }
            n += 1;
        }
        if (was_up != Some(true) || self.announce_owed.load(Ordering::Relaxed)) && self.is_up() {
            self.flush_announcements();
        }
        Ok(n)
    }

    /// Runs `f`, one of our callbacks, with the calling context marked as inside it, so that
    /// a call back into this link from `f` that would dispatch is refused
    /// ([`Error::InCallback`]) instead of nesting one callback per queued message.
    fn in_callback_run(&self, f: impl FnOnce()) {
        let me = self.env.context_id();
        // Counted before the context is recorded, and forgotten after: `in_callback` never
        // misses a recorded context.
        self.dispatching.fetch_add(1, Ordering::SeqCst);
        let slot = self.with(|st, _| {
            let slot = st.callers.iter().position(Option::is_none);
            match slot {
                Some(i) => st.callers[i] = Some(me),
                None => st.callers_overflow += 1,
            }
            slot
        });
        f();
        if let Ok(slot) = slot {
            let _ = self.with(|st, _| match slot {
                Some(i) => st.callers[i] = None,
                None => st.callers_overflow = st.callers_overflow.saturating_sub(1),
            });
        }
        self.dispatching.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether the caller is inside one of this link's callbacks (see `in_callback_run`).
    fn in_callback(&self) -> bool {
        if self.dispatching.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let me = self.env.context_id();
        self.with(|st, _| st.callers_overflow > 0 || st.callers.contains(&Some(me)))
            // The lock is taken by the context we interrupted: not inside a callback of ours.
            .unwrap_or(false)
    }

    fn rx_step(&self, st: &mut State<'r, N, EPTS>, fx: &mut Effects) -> Result<Next<'r>, Error> {
        self.check_device_up(st, fx)?;
        match st.phase {
            Phase::Up => {}
            Phase::Down | Phase::Broken(_) => return Err(Self::phase_error(st.phase)),
            Phase::Idle | Phase::Waiting | Phase::Reset => return Ok(Next::Idle),
        }
        if st.parked != NIL {
            if !self.unpark(st, fx) {
                return Ok(Next::Idle);
            }
            return Ok(Next::Again);
        }
        let base = self.region.base_addr();
        // Take one buffer from the peer: (id, buffer offset, bytes usable, length to return).
        let (id, buf, cap, ret_len): (u16, usize, u32, u32) = match &mut st.queues {
            Queues::None => return Ok(Next::Idle),
            #[cfg(feature = "role-driver")]
            Queues::Driver { rx, rx_pool, .. } => {
                let (o, l) = rx.ring().used_range();
                self.platform.cache_invalidate(base + o, l);
                match rx.pop_used(&self.region) {
                    Ok(None) => return Ok(Next::Idle),
                    Ok(Some((id, used_len))) => {
                        let pool = *rx_pool;
                        if id >= pool.count {
                            // Outstanding but not a pool buffer cannot happen: we only post pool ids.
                            return Ok(Next::Again);
                        }
                        if used_len < HEADER_LEN as u32 {
                            // No message was written: the header there is an old one.
                            let v = Violation::ShortUsed { id, len: used_len };
                            Self::violation(&mut st.stats, v);
                            st.stats.rx_malformed = st.stats.rx_malformed.wrapping_add(1);
                            self.return_rx(st, fx, id, 0)?;
                            return Ok(Next::Again);
                        }
                        // Bound by used.len (wire.md 14, driver rule 4), at least a header now.
                        let cap = pool.size.min(used_len);
                        (id, pool.buffer(id), cap, 0)
                    }
                    Err(v) if v.breaks_ring() => {
                        return Err(Self::fatal(st, fx, v));
                    }
                    Err(v) => {
                        Self::violation(&mut st.stats, v);
                        return Ok(Next::Again);
                    }
                }
            }
            #[cfg(feature = "role-device")]
            Queues::Device { rx, .. } => {
                let (o, l) = rx.ring().avail_range();
                self.platform.cache_invalidate(base + o, l);
                match rx.pop_avail(&self.region) {
                    Ok(None) => return Ok(Next::Idle),
                    Ok(Some(p)) => {
                        // vring 1 flags: RPMsg-Lite sets WRITE there; only chaining is refused.
                        let bad = if p.flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT) != 0 {
                            Some(Violation::Chained {
                                id: p.id,
                                flags: p.flags,
                            })
                        } else if (p.len as usize) < HEADER_LEN {
                            Some(Violation::LengthTooLarge { len: 0, cap: p.len })
                        } else {
                            None
                        };
                        let off = self
                            .platform
                            .address_map()
                            .to_offset(p.addr, p.len as usize);
                        let area =
                            off.map(|o| self.in_buffer_area(o, o.saturating_add(p.len as usize)));
                        let bad = match (bad, area) {
                            (None, Some(Err(v))) => Some(v),
                            (bad, _) => bad,
                        };
                        match (bad, off) {
                            (None, Some(off)) if self.region.contains(off, p.len as usize) => {
                                (p.id, off, p.len, p.len)
                            }
                            (bad, _) => {
                                let v = bad.unwrap_or(Violation::BadAddress {
                                    addr: p.addr,
                                    len: p.len,
                                });
                                Self::violation(&mut st.stats, v);
                                st.stats.rx_malformed = st.stats.rx_malformed.wrapping_add(1);
                                let _ = rx.push_used(&self.region, p.id, p.len);
                                self.device_notify(rx, 1, fx);
                                return Ok(Next::Again);
                            }
                        }
                    }
                    Err(v) if v.breaks_ring() => {
                        return Err(Self::fatal(st, fx, v));
                    }
                    Err(v) => {
                        Self::violation(&mut st.stats, v);
                        return Ok(Next::Again);
                    }
                }
            }
        };
        self.platform.cache_invalidate(base + buf, HEADER_LEN);
        let mut hb = [0u8; HEADER_LEN];
        self.region.copy_out(buf, &mut hb)?;
        let hdr = RpmsgRepr::from_bytes(&hb);
        let room = cap - HEADER_LEN as u32;
        if u32::from(hdr.len) > room {
            Self::violation(
                &mut st.stats,
                Violation::LengthTooLarge {
                    len: u32::from(hdr.len),
                    cap: room,
                },
            );
            st.stats.rx_malformed = st.stats.rx_malformed.wrapping_add(1);
            self.return_rx(st, fx, id, ret_len)?;
            return Ok(Next::Again);
        }
        let payload = buf + HEADER_LEN;
        self.platform
            .cache_invalidate(base + payload, usize::from(hdr.len));
        if hdr.dst == RPMSG_NS_ADDR && st.ns {
            let mut nb = [0u8; NS_MSG_LEN];
            let n = usize::from(hdr.len).min(NS_MSG_LEN);
            let parsed = match nb.get_mut(..n) {
                Some(dst) if usize::from(hdr.len) == NS_MSG_LEN => {
                    self.region.copy_out(payload, dst)?;
                    NsRepr::parse(&nb).ok()
                }
                _ => None,
            };
            self.return_rx(st, fx, id, ret_len)?;
            let Some(ns) = parsed else {
                st.stats.ns_malformed = st.stats.ns_malformed.wrapping_add(1);
                return Ok(Next::Again);
            };
            st.stats.ns_received = st.stats.ns_received.wrapping_add(1);
            st.stats.rx_messages = st.stats.rx_messages.wrapping_add(1);
            return Ok(self.on_ns(st, ns));
        }
        let Some(slot) = st.slots.iter().position(|s| s.in_use && s.addr == hdr.dst) else {
            st.stats.rx_unknown_dst = st.stats.rx_unknown_dst.wrapping_add(1);
            self.return_rx(st, fx, id, ret_len)?;
            return Ok(Next::Again);
        };
        st.stats.rx_messages = st.stats.rx_messages.wrapping_add(1);
        let info = RxInfo {
            id,
            epoch: st.epoch,
            offset: payload,
            len: hdr.len,
            src: hdr.src,
            dst: hdr.dst,
        };
        if let Some(m) = st.rx_meta.get_mut(usize::from(id)) {
            *m = RxMeta {
                state: RxState::Held,
                next: NIL,
                offset: payload,
                len: hdr.len,
                src: hdr.src,
                dst: hdr.dst,
                ret_len,
            };
        }
        st.stats.held = st.stats.held.wrapping_add(1);
        let s = &mut st.slots[slot];
        // OpenAMP's address learning: an endpoint without a destination adopts the sender.
        if s.dst == RPMSG_ADDR_ANY && hdr.src != RPMSG_ADDR_ANY {
            s.dst = hdr.src;
        }
        match s.mode {
            RxMode::Callback(h) => Ok(Next::Callback(h, info)),
            RxMode::Queue(_) => {
                if let Some(m) = st.rx_meta.get_mut(usize::from(id)) {
                    m.state = RxState::Parked;
                }
                st.parked = id;
                if self.unpark(st, fx) {
                    Ok(Next::Again)
                } else {
                    st.stats.backpressure = st.stats.backpressure.wrapping_add(1);
                    Ok(Next::Idle)
                }
            }
        }
    }

    /// Moves the parked message into its endpoint's queue if there is room. `true` when the
    /// park is empty afterwards.
    fn unpark(&self, st: &mut State<'r, N, EPTS>, fx: &mut Effects) -> bool {
        let id = st.parked;
        let Some(m) = st.rx_meta.get(usize::from(id)).copied() else {
            st.parked = NIL;
            return true;
        };
        let Some(slot) = st.slots.iter().position(|s| s.in_use && s.addr == m.dst) else {
            // Its endpoint went away meanwhile.
            st.parked = NIL;
            st.stats.rx_unknown_dst = st.stats.rx_unknown_dst.wrapping_add(1);
            st.stats.rx_messages = st.stats.rx_messages.wrapping_sub(1);
            st.stats.held = st.stats.held.saturating_sub(1);
            let _ = self.return_rx(st, fx, id, m.ret_len);
            return true;
        };
        let s = &mut st.slots[slot];
        let depth = match s.mode {
            RxMode::Queue(d) => d.max(1),
            RxMode::Callback(_) => 0,
        };
        if s.q_len >= depth {
            return false;
        }
        if s.q_tail == NIL {
            s.q_head = id;
        } else if let Some(t) = st.rx_meta.get_mut(usize::from(s.q_tail)) {
            t.next = id;
        }
        s.q_tail = id;
        s.q_len += 1;
        if let Some(m) = st.rx_meta.get_mut(usize::from(id)) {
            m.state = RxState::Queued;
            m.next = NIL;
        }
        st.parked = NIL;
        fx.wake = true;
        true
    }

    fn on_ns(&self, st: &mut State<'r, N, EPTS>, ns: NsRepr) -> Next<'r> {
        let kind = if ns.flags.is_destroy() {
            NsKind::Destroy
        } else {
            NsKind::Create
        };
        let mut bound = None;
        for s in st
            .slots
            .iter_mut()
            .filter(|s| s.in_use && s.name == ns.name && !s.name.is_empty())
        {
            match kind {
                NsKind::Create if s.dst == RPMSG_ADDR_ANY => {
                    s.dst = ns.addr;
                    bound = bound.or(Some(s.addr));
                }
                NsKind::Destroy if s.dst == ns.addr => {
                    s.dst = RPMSG_ADDR_ANY;
                    bound = bound.or(Some(s.addr));
                }
                _ => {}
            }
        }
        // Remember what the peer offers, so an endpoint created later with the same name (and
        // no destination) binds at once instead of missing an announcement that came first.
        match kind {
            NsKind::Create => {
                let at = st
                    .seen
                    .iter()
                    .position(|e| e.is_some_and(|(n, _)| n == ns.name))
                    .or_else(|| st.seen.iter().position(Option::is_none));
                let at = at.unwrap_or_else(|| {
                    // Full: forget the oldest in turn.
                    st.seen_next = (st.seen_next + 1) % EPTS.max(1);
                    st.seen_next
                });
                if let Some(e) = st.seen.get_mut(at) {
                    *e = Some((ns.name, ns.addr));
                }
            }
            NsKind::Destroy => {
                for e in st.seen.iter_mut() {
                    if *e == Some((ns.name, ns.addr)) {
                        *e = None;
                    }
                }
            }
        }
        let a = Announcement {
            name: ns.name,
            addr: ns.addr,
            kind,
        };
        match (st.ns_handler, bound) {
            (Some(h), None) => Next::Ns(h, a),
            (Some(h), Some(local)) => Next::NsBound(h, a, local),
            (None, _) => Next::Again,
        }
    }

    #[cfg(feature = "role-device")]
    fn device_notify(&self, q: &DeviceQueue<N>, which: usize, fx: &mut Effects) {
        let (o, l) = q.ring().used_range();
        self.platform.cache_clean(self.region.base_addr() + o, l);
        let want = !self.cfg.honour_no_interrupt || q.needs_notify(&self.region).unwrap_or(true);
        if want {
            fx.notify[which] = true;
        } else {
            fx.suppressed[which] = true;
        }
    }

    /// Gives a receive buffer back to the peer.
    #[cfg_attr(not(feature = "role-device"), allow(unused_variables))]
    fn return_rx(
        &self,
        st: &mut State<'r, N, EPTS>,
        fx: &mut Effects,
        id: u16,
        ret_len: u32,
    ) -> Result<(), Error> {
        if let Some(m) = st.rx_meta.get_mut(usize::from(id)) {
            m.state = RxState::Free;
        }
        match &mut st.queues {
            Queues::None => Ok(()),
            #[cfg(feature = "role-driver")]
            Queues::Driver { rx, rx_pool, .. } => {
                let addr = self
                    .platform
                    .address_map()
                    .to_addr(rx_pool.buffer(id))
                    .ok_or(Error::Config("buffer has no peer address"))?;
                // Rewrite the whole descriptor: the device could have scribbled on it.
                rx.ring()
                    .write_desc(&self.region, id, addr, rx_pool.size, VRING_DESC_F_WRITE)?;
                rx.publish(&self.region, id)?;
                let (o, l) = rx.ring().avail_range();
                self.platform.cache_clean(self.region.base_addr() + o, l);
                if rx.needs_notify(&self.region)? {
                    fx.notify[0] = true;
                }
                Ok(())
            }
            #[cfg(feature = "role-device")]
            Queues::Device { rx, .. } => {
                // used.len = desc.len satisfies every reader (wire.md 4.5).
                rx.push_used(&self.region, id, ret_len)?;
                self.device_notify(rx, 1, fx);
                Ok(())
            }
        }
    }

    /// Takes a free transmit buffer, if one is there now.
    fn try_alloc(
        &self,
        st: &mut State<'r, N, EPTS>,
        fx: &mut Effects,
    ) -> Result<Option<TxInfo>, Error> {
        if !matches!(st.phase, Phase::Up) {
            return Err(Self::phase_error(st.phase));
        }
        let epoch = st.epoch;
        let base = self.region.base_addr();
        #[cfg(feature = "role-device")]
        let rings = match &st.queues {
            Queues::Device { rx, tx } => [rx.ring(), tx.ring()].map(|r| (r.base, r.layout.size)),
            _ => [(0, 0); 2],
        };
        // Bounded: each round consumes one ring entry, and a ring holds at most N.
        for _ in 0..=N {
            match &mut st.queues {
                Queues::None => return Err(Error::NotReady),
                #[cfg(feature = "role-driver")]
                Queues::Driver { tx, tx_pool, .. } => {
                    let pool = *tx_pool;
                    if st.nfree > 0 {
                        st.nfree -= 1;
                        let id = st.free[st.nfree];
                        let cap = pool.size as usize - HEADER_LEN;
                        return Ok(Some(TxInfo {
                            id,
                            epoch,
                            offset: pool.buffer(id),
                            cap,
                            desc_len: pool.size,
                        }));
                    }
                    let (o, l) = tx.ring().used_range();
                    self.platform.cache_invalidate(base + o, l);
                    match tx.pop_used(&self.region) {
                        Ok(None) => return Ok(None),
                        Ok(Some((id, _))) if id < pool.count => {
                            if let Some(f) = st.free.get_mut(st.nfree) {
                                *f = id;
                                st.nfree += 1;
                            }
                        }
                        Ok(Some(_)) => {}
                        Err(v) if v.breaks_ring() => {
                            return Err(Self::fatal(st, fx, v));
                        }
                        Err(v) => Self::violation(&mut st.stats, v),
                    }
                }
                #[cfg(feature = "role-device")]
                Queues::Device { tx, .. } => {
                    if st.nfree > 0 {
                        st.nfree -= 1;
                        let id = st.free[st.nfree];
                        let len = st.tx_desc_len.get(usize::from(id)).copied().unwrap_or(0);
                        let (addr, _, _) = tx.ring().read_desc(&self.region, id)?;
                        match self.checked_buffer(addr, len, rings) {
                            Ok(off) => {
                                let cap = len as usize - HEADER_LEN;
                                return Ok(Some(TxInfo {
                                    id,
                                    epoch,
                                    offset: off,
                                    cap,
                                    desc_len: len,
                                }));
                            }
                            // The driver moved a descriptor we hold: keep it (see below).
                            Err(v) => Self::violation(&mut st.stats, v),
                        }
                        continue;
                    }
                    let (o, l) = tx.ring().avail_range();
                    self.platform.cache_invalidate(base + o, l);
                    match tx.pop_avail(&self.region) {
                        Ok(None) => return Ok(None),
                        Ok(Some(p)) => {
                            let checked = self.checked_buffer(p.addr, p.len, rings);
                            if let Ok(off) = checked {
                                if p.flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT) == 0 {
                                    let cap = p.len as usize - HEADER_LEN;
                                    if let Some(d) = st.tx_desc_len.get_mut(usize::from(p.id)) {
                                        *d = p.len;
                                    }
                                    return Ok(Some(TxInfo {
                                        id: p.id,
                                        epoch,
                                        offset: off,
                                        cap,
                                        desc_len: p.len,
                                    }));
                                }
                            }
                            // Kept, never returned: handed back, the buffer would still hold
                            // the message it carried last, and every driver reads that header
                            // again (Linux's `used.len - 16` check wraps for a length below
                            // 16; OpenAMP and RPMsg-Lite do not check): a ghost message. We
                            // cannot write an empty one there instead, since the buffer failed
                            // our checks. The driver loses a buffer it spoiled.
                            let v = match checked {
                                Ok(_) => Violation::Chained {
                                    id: p.id,
                                    flags: p.flags,
                                },
                                Err(v) => v,
                            };
                            Self::violation(&mut st.stats, v);
                        }
                        Err(v) if v.breaks_ring() => {
                            return Err(Self::fatal(st, fx, v));
                        }
                        Err(v) => Self::violation(&mut st.stats, v),
                    }
                }
            }
        }
        Ok(None)
    }

    /// A peer buffer of `len` bytes at `addr` that can hold a header: its region offset.
    /// Refuses a buffer that overlaps `rings`: we are about to write into it, and a driver
    /// pointing it at the vrings would have us overwrite them.
    #[cfg(feature = "role-device")]
    fn checked_buffer(
        &self,
        addr: u64,
        len: u32,
        rings: [(usize, usize); 2],
    ) -> Result<usize, Violation> {
        let bad = Violation::BadAddress { addr, len };
        if (len as usize) < HEADER_LEN {
            return Err(bad);
        }
        let off = self
            .platform
            .address_map()
            .to_offset(addr, len as usize)
            .ok_or(bad)?;
        let end = off.checked_add(len as usize).ok_or(bad)?;
        let overlaps = rings
            .iter()
            .any(|&(b, size)| off < b.saturating_add(size) && b < end);
        if !self.region.contains(off, len as usize) || overlaps {
            return Err(bad);
        }
        self.in_buffer_area(off, end)?;
        Ok(off)
    }

    /// Device, RPMsg-Lite layout: a buffer the driver posted must lie in the buffer area our
    /// layout gives (`LiteConfig::buffer`, both directions). One outside it means the two sides
    /// disagree on the geometry, which the link-up check may not have caught (a driver that
    /// posts its first buffers where we expect them and later ones elsewhere).
    fn in_buffer_area(&self, off: usize, end: usize) -> Result<(), Violation> {
        match self.cfg.layout {
            #[cfg(feature = "layout-lite")]
            LayoutConfig::Lite(l) if self.cfg.role == Role::Device => {
                let start = l.offsets().2;
                let limit = l.buffer(2 * usize::from(l.buffer_count));
                if off < start || end > limit {
                    return Err(Violation::GeometryMismatch {
                        found: u32::try_from(off).unwrap_or(u32::MAX),
                        expected: u32::try_from(start).unwrap_or(u32::MAX),
                    });
                }
                Ok(())
            }
            _ => {
                let _ = (off, end);
                Ok(())
            }
        }
    }

    /// Waits up to `timeout` for `attempt` to produce something, polling the rings meanwhile.
    fn wait_for<T>(
        &self,
        timeout: Timeout,
        empty: Error,
        poll_rx: bool,
        mut attempt: impl FnMut() -> Result<Option<T>, Error>,
    ) -> Result<T, Error> {
        // The fast path reads no clock: most calls succeed at once.
        if let Some(t) = attempt()? {
            return Ok(t);
        }
        if timeout == Timeout::NoWait {
            return Err(empty);
        }
        let deadline = timeout.deadline(self.env.now());
        // Counted before the next attempt, so whoever makes progress after that attempt sees
        // a waiter and wakes it (SeqCst on both sides: the count and the attempt cannot pass
        // each other).
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let r = loop {
            match attempt() {
                Ok(Some(t)) => break Ok(t),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            let now = self.env.now();
            if deadline.is_some_and(|d| now >= d) {
                break Err(Error::Timeout);
            }
            let nap = now.saturating_add(self.cfg.poll_interval);
            self.env.wait(Some(deadline.map_or(nap, |d| d.min(nap))));
            let polled = if poll_rx {
                self.poll().map(|_| ())
            } else {
                // A device still waiting for the driver needs someone to notice it coming up.
                self.with(|st, fx| self.check_device_up(st, fx))
                    .and_then(|r| r)
            };
            if let Err(e) = polled {
                break Err(e);
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        r
    }

    fn alloc_blocking(&self, timeout: Timeout, ep: Option<(u8, u16)>) -> Result<TxInfo, Error> {
        let attempt = || {
            self.with(|st, fx| {
                if let Some((slot, generation)) = ep {
                    Self::slot_check(st, slot, generation)?;
                }
                self.try_alloc(st, fx)
            })?
        };
        if let Some(t) = attempt()? {
            return Ok(t);
        }
        if timeout == Timeout::NoWait {
            return Err(Error::NoBuffer);
        }
        // Ask for tx-complete interrupts while we wait (Linux toggles vring 1's flag likewise).
        self.with(|st, _| {
            st.tx_waiters += 1;
            #[cfg(feature = "role-driver")]
            if let Queues::Driver { tx, .. } = &st.queues {
                // Clear, full fence, re-check: the returned buffers are then seen either by
                // our next attempt or announced by the device's interrupt.
                let _ = tx.enable_interrupt(&self.region);
            }
        })?;
        // A sender inside a callback does not poll (that would nest dispatch); buffers still
        // come back through `try_alloc`, which takes them from the ring itself.
        let r = self.wait_for(timeout, Error::NoBuffer, !self.in_callback(), attempt);
        self.with(|st, _| self.tx_wait_end(st))?;
        r
    }

    /// A sender stopped waiting for a buffer: with none left waiting, the driver asks the
    /// device not to interrupt for returned buffers again.
    fn tx_wait_end(&self, st: &mut State<'r, N, EPTS>) {
        st.tx_waiters = st.tx_waiters.saturating_sub(1);
        #[cfg(feature = "role-driver")]
        if st.tx_waiters == 0 {
            if let Queues::Driver { tx, .. } = &st.queues {
                let _ = tx.set_no_interrupt(&self.region, true);
            }
        }
    }

    /// A buffer of an earlier session, or of a link that is no longer up, must not be
    /// written: its memory may be the driver's again.
    fn tx_current(st: &State<'r, N, EPTS>, t: &TxInfo) -> Result<(), Error> {
        if !matches!(st.phase, Phase::Up) || st.epoch != t.epoch {
            return Err(Self::phase_error(if matches!(st.phase, Phase::Up) {
                Phase::Down
            } else {
                st.phase
            }));
        }
        Ok(())
    }

    /// Writes the header, publishes the buffer, notifies.
    fn publish_tx(&self, t: TxInfo, src: u32, dst: u32, len: usize) -> Result<(), Error> {
        if src == RPMSG_ADDR_ANY || dst == RPMSG_ADDR_ANY {
            return Err(Error::InvalidAddress(RPMSG_ADDR_ANY));
        }
        if len > t.cap {
            return Err(Error::PayloadTooLarge { len, max: t.cap });
        }
        // len <= cap < 2^16: buffers are at most 64 KiB (desc.len is checked below).
        let len16 = u16::try_from(len).map_err(|_| Error::PayloadTooLarge {
            len,
            max: usize::from(u16::MAX),
        })?;
        let hdr = RpmsgRepr {
            src,
            dst,
            len: len16,
            flags: 0,
        };
        self.with(|st, fx| -> Result<(), Error> {
            // Checked before anything is written: no write for a buffer of an old session.
            Self::tx_current(st, &t)?;
            self.region.copy_in(t.offset, &hdr.to_bytes())?;
            self.platform
                .cache_clean(self.region.base_addr() + t.offset, HEADER_LEN + len);
            match &mut st.queues {
                Queues::None => return Err(Error::LinkDown),
                #[cfg(feature = "role-driver")]
                Queues::Driver { tx, tx_pool, .. } => {
                    let addr = self
                        .platform
                        .address_map()
                        .to_addr(tx_pool.buffer(t.id))
                        .ok_or(Error::Config("buffer has no peer address"))?;
                    // Linux's rule: len = header + payload, flags 0 (wire.md 14, driver rule 3).
                    tx.ring()
                        .write_desc(&self.region, t.id, addr, (HEADER_LEN + len) as u32, 0)?;
                    tx.publish(&self.region, t.id)?;
                    let (o, l) = tx.ring().avail_range();
                    self.platform.cache_clean(self.region.base_addr() + o, l);
                    if tx.needs_notify(&self.region)? {
                        fx.notify[1] = true;
                    }
                }
                #[cfg(feature = "role-device")]
                Queues::Device { tx, .. } => {
                    tx.push_used(&self.region, t.id, t.desc_len)?;
                    self.device_notify(tx, 0, fx);
                }
            }
            st.stats.tx_messages = st.stats.tx_messages.wrapping_add(1);
            Ok(())
        })?
    }

    fn send_raw(
        &self,
        src: u32,
        dst: u32,
        data: &[u8],
        timeout: Timeout,
        ep: Option<(u8, u16)>,
    ) -> Result<(), Error> {
        if src == RPMSG_ADDR_ANY || dst == RPMSG_ADDR_ANY {
            return Err(Error::InvalidAddress(RPMSG_ADDR_ANY));
        }
        let mtu = self.mtu();
        if data.len() > mtu {
            return Err(Error::PayloadTooLarge {
                len: data.len(),
                max: mtu,
            });
        }
        let t = self.alloc_blocking(timeout, ep)?;
        let tx = TxBuffer::new(self, t, src, dst);
        if data.len() > tx.capacity() {
            return Err(Error::PayloadTooLarge {
                len: data.len(),
                max: tx.capacity(),
            });
        }
        let mut tx = tx;
        tx.write(0, data)?;
        tx.send_offchannel(src, dst, data.len())
            .map_err(|e| e.error)
    }

    /// Sends from `src` to `dst` without an endpoint of ours at `src` (`rpmsg_send_offchannel`
    /// on the device level), waiting up to `timeout` for a buffer.
    ///
    /// # Errors
    ///
    /// As [`Endpoint::send_to_timeout`].
    pub fn send_offchannel(
        &self,
        src: u32,
        dst: u32,
        data: &[u8],
        timeout: Timeout,
    ) -> Result<(), Error> {
        self.send_raw(src, dst, data, timeout, None)
    }

    /// Creates an endpoint (`rpmsg_create_ept`, `rpmsg_lite_create_ept`).
    ///
    /// # Errors
    ///
    /// [`Error::AddressInUse`], [`Error::InvalidAddress`] for `RPMSG_ADDR_ANY`,
    /// [`Error::TooManyEndpoints`], [`Error::NsUnavailable`] when asked to announce on a link
    /// that is up without the name service, [`Error::LinkDown`].
    pub fn create_endpoint(&self, cfg: EndpointConfig<'r>) -> Result<Endpoint<'_>, Error> {
        let (slot, generation, addr) = self.with(|st, _| -> Result<(u8, u16, u32), Error> {
            if matches!(st.phase, Phase::Down | Phase::Broken(_)) {
                return Err(Self::phase_error(st.phase));
            }
            if cfg.announce && matches!(st.phase, Phase::Up) && !st.ns {
                return Err(Error::NsUnavailable);
            }
            let taken = |st: &State<'r, N, EPTS>, a: u32| {
                st.slots.iter().any(|s| s.in_use && s.addr == a)
                    || (a == RPMSG_NS_ADDR && self.cfg.name_service)
            };
            let addr = match cfg.addr {
                Some(RPMSG_ADDR_ANY) => return Err(Error::InvalidAddress(RPMSG_ADDR_ANY)),
                Some(a) if taken(st, a) => return Err(Error::AddressInUse(a)),
                Some(a) => a,
                None => {
                    let mut a = RPMSG_RESERVED_ADDRESSES;
                    while taken(st, a) {
                        a += 1;
                    }
                    a
                }
            };
            let idx = st
                .slots
                .iter()
                .position(|s| !s.in_use)
                .ok_or(Error::TooManyEndpoints { capacity: EPTS })?;
            let s = &mut st.slots[idx];
            let generation = s.generation.wrapping_add(1);
            *s = Slot {
                in_use: true,
                generation,
                addr,
                dst: if cfg.dst == RPMSG_ADDR_ANY && !cfg.name.is_empty() {
                    // Bind by name to a service the peer announced before we got here.
                    st.seen
                        .iter()
                        .flatten()
                        .find(|(n, _)| *n == cfg.name)
                        .map_or(RPMSG_ADDR_ANY, |&(_, a)| a)
                } else {
                    cfg.dst
                },
                name: cfg.name,
                announce: cfg.announce && !cfg.name.is_empty(),
                announced: false,
                mode: cfg.mode,
                ..Slot::EMPTY
            };
            // idx < EPTS <= 255, checked in `new`.
            Ok((idx as u8, generation, addr))
        })??;
        self.flush_announcements();
        Ok(Endpoint {
            link: self,
            slot,
            generation,
            addr,
        })
    }

    /// A handle to the endpoint at local address `addr` (RPMsg-Lite identifies endpoints by
    /// address; this is how to get one back).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownEndpoint`] when no endpoint of this link has that address.
    pub fn endpoint(&self, addr: u32) -> Result<Endpoint<'_>, Error> {
        let found = self.with(|st, _| {
            st.slots
                .iter()
                .enumerate()
                .find(|(_, s)| s.in_use && s.addr == addr)
                .map(|(i, s)| (i as u8, s.generation))
        })?;
        let (slot, generation) = found.ok_or(Error::UnknownEndpoint(addr))?;
        Ok(Endpoint {
            link: self,
            slot,
            generation,
            addr,
        })
    }

    /// Sends the CREATE announcements still owed, if the link is up.
    fn flush_announcements(&self) {
        self.announce_owed.store(false, Ordering::Relaxed);
        for i in 0..EPTS {
            let owed = self
                .with(|st, _| {
                    let s = st.slots.get(i)?;
                    (matches!(st.phase, Phase::Up)
                        && st.ns
                        && s.in_use
                        && s.announce
                        && !s.announced)
                        .then_some((s.addr, s.name, s.generation))
                })
                .ok()
                .flatten();
            let Some((addr, name, generation)) = owed else {
                continue;
            };
            if self
                .announce(addr, name, NsFlags::Create, Timeout::NoWait)
                .is_err()
            {
                self.announce_owed.store(true, Ordering::Relaxed);
            } else {
                let _ = self.with(|st, _| {
                    if let Some(s) = st.slots.get_mut(i).filter(|s| s.generation == generation) {
                        s.announced = true;
                    }
                });
            }
        }
    }

    fn announce(
        &self,
        addr: u32,
        name: Name,
        flags: NsFlags,
        timeout: Timeout,
    ) -> Result<(), Error> {
        let msg = NsRepr { name, addr, flags }.to_bytes();
        self.send_raw(addr, RPMSG_NS_ADDR, &msg, timeout, None)
    }

    /// Announces a service by hand (`rpmsg_ns_announce`, RPMsg-Lite style), from `addr`.
    ///
    /// # Errors
    ///
    /// [`Error::NsUnavailable`], [`Error::InvalidName`], and as [`Endpoint::send_to_timeout`].
    pub fn ns_announce(
        &self,
        name: &str,
        addr: u32,
        kind: NsKind,
        timeout: Timeout,
    ) -> Result<(), Error> {
        if !self.name_service() {
            return Err(Error::NsUnavailable);
        }
        let name = Name::new(name).map_err(|_| Error::InvalidName { len: name.len() })?;
        let flags = match kind {
            NsKind::Create => NsFlags::Create,
            NsKind::Destroy => NsFlags::Destroy,
        };
        self.announce(addr, name, flags, timeout)
    }

    /// Blocks until the link is up (`rpmsg_lite_wait_for_link_up`), polling the rings.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], [`Error::NotReady`] with [`Timeout::NoWait`], [`Error::LinkDown`].
    pub fn wait_link_up(&self, timeout: Timeout) -> Result<(), Error> {
        // Look first, so a peer that is already there is seen without waiting (and with
        // `NoWait`), as `poll_link_up` does.
        self.poll()?;
        self.wait_for(timeout, Error::NotReady, true, || {
            self.with(|st, _| match st.phase {
                Phase::Up => Ok(Some(())),
                Phase::Down | Phase::Broken(_) => Err(Self::phase_error(st.phase)),
                Phase::Idle | Phase::Waiting | Phase::Reset => Ok(None),
            })?
        })
    }

    /// Gives back a buffer kept with [`RxBuffer::into_held`]
    /// (`rpmsg_release_rx_buffer`, `rpmsg_lite_release_rx_buffer`).
    ///
    /// # Errors
    ///
    /// [`HeldError`] with [`Error::ForeignBuffer`] and the token back, for a token of another
    /// link. A token of an earlier session of this link is accepted and does nothing (its
    /// buffer went with that session).
    pub fn release_held(&self, held: HeldRx) -> Result<(), HeldError> {
        if let Some(rx) = self.resume_held(held)? {
            drop(rx);
        }
        Ok(())
    }

    /// Turns a held token back into an [`RxBuffer`] to read it; `None` when the token is from
    /// an earlier session of this link (the peer reset since).
    ///
    /// # Errors
    ///
    /// [`HeldError`] with [`Error::ForeignBuffer`] and the token back, for a token of another
    /// link.
    pub fn resume_held(&self, held: HeldRx) -> Result<Option<RxBuffer<'_>>, HeldError> {
        if held.key != self.key() {
            return Err(HeldError {
                error: Error::ForeignBuffer,
                held,
            });
        }
        let info = self.with(|st, _| {
            let m = st.rx_meta.get(usize::from(held.info.id))?;
            (st.epoch == held.info.epoch && m.state == RxState::Held).then_some(RxInfo {
                id: held.info.id,
                epoch: held.info.epoch,
                offset: m.offset,
                len: m.len,
                src: m.src,
                dst: m.dst,
            })
        });
        match info {
            Ok(info) => Ok(info.map(|i| RxBuffer::new(self, i))),
            Err(error) => Err(HeldError { error, held }),
        }
    }

    /// Shuts the link down, telling the peer: a DESTROY for each endpoint we announced, then
    /// (driver, resource table) the status byte reset to 0, once the device has taken the
    /// DESTROYs or 100 poll intervals have passed. Afterwards every call is
    /// [`Error::LinkDown`] and blocked callers wake with it.
    ///
    /// # Errors
    ///
    /// [`Error::LinkDown`] if it was already down.
    pub fn shutdown(&self) -> Result<(), Error> {
        if self.with(|st, _| matches!(st.phase, Phase::Down))? {
            return Err(Error::LinkDown);
        }
        let mut destroyed = false;
        for i in 0..EPTS {
            let owed = self
                .with(|st, _| {
                    let s = st.slots.get(i)?;
                    (matches!(st.phase, Phase::Up) && s.in_use && s.announced)
                        .then_some((s.addr, s.name))
                })
                .ok()
                .flatten();
            if let Some((addr, name)) = owed {
                destroyed |= self
                    .announce(
                        addr,
                        name,
                        NsFlags::Destroy,
                        Timeout::After(self.cfg.poll_interval * 100),
                    )
                    .is_ok();
            }
        }
        // Driver, resource table: give the device time to take the DESTROYs before the reset.
        #[cfg(all(feature = "role-driver", feature = "layout-rsc-table"))]
        if destroyed
            && self.cfg.role == Role::Driver
            && matches!(self.cfg.layout, LayoutConfig::RscTable(_))
        {
            let taken = || {
                self.with(|st, _| match &st.queues {
                    Queues::Driver { tx, .. } => {
                        let r = tx.ring();
                        (r.used_idx(&self.region).ok() == r.avail_idx(&self.region).ok())
                            .then_some(())
                    }
                    _ => Some(()),
                })
            };
            let _ = self.wait_for(
                Timeout::After(self.cfg.poll_interval * 100),
                Error::Timeout,
                false,
                taken,
            );
        }
        #[cfg(not(all(feature = "role-driver", feature = "layout-rsc-table")))]
        let _ = destroyed;
        self.with(|st, fx| {
            #[cfg(all(feature = "role-driver", feature = "layout-rsc-table"))]
            if let (Role::Driver, LayoutConfig::RscTable(r), Some(v)) =
                (self.cfg.role, self.cfg.layout, st.vdev)
            {
                let _ = self.table.write_u8(r.vdev_field(&v, vdev_field::STATUS), 0);
            }
            st.phase = Phase::Down;
            fx.wake = true;
        })
    }

    /// Takes the head of an endpoint's queue, if any (under the lock).
    fn recv_locked(
        &self,
        st: &mut State<'r, N, EPTS>,
        fx: &mut Effects,
        slot: u8,
        generation: u16,
        max_len: usize,
    ) -> Result<Option<RxInfo>, Error> {
        let i = Self::slot_check(st, slot, generation)?;
        if matches!(st.slots[i].mode, RxMode::Callback(_)) {
            return Err(Error::NotQueued);
        }
        let head = st.slots[i].q_head;
        let Some(m) = st
            .rx_meta
            .get(usize::from(head))
            .copied()
            .filter(|_| head != NIL)
        else {
            return match st.phase {
                Phase::Down | Phase::Broken(_) | Phase::Reset => Err(Self::phase_error(st.phase)),
                Phase::Idle | Phase::Waiting | Phase::Up => Ok(None),
            };
        };
        if usize::from(m.len) > max_len {
            return Err(Error::BufferTooSmall {
                need: usize::from(m.len),
                have: max_len,
            });
        }
        let s = &mut st.slots[i];
        s.q_head = m.next;
        if s.q_head == NIL {
            s.q_tail = NIL;
        }
        s.q_len -= 1;
        st.rx_meta[usize::from(head)].state = RxState::Held;
        if st.parked != NIL {
            self.unpark(st, fx);
        }
        Ok(Some(RxInfo {
            id: head,
            epoch: st.epoch,
            offset: m.offset,
            len: m.len,
            src: m.src,
            dst: m.dst,
        }))
    }

    fn slot_check(st: &State<'r, N, EPTS>, slot: u8, generation: u16) -> Result<usize, Error> {
        let i = usize::from(slot);
        match st.slots.get(i) {
            Some(s) if s.in_use && s.generation == generation => Ok(i),
            _ => Err(Error::EndpointDestroyed),
        }
    }
}

/// Wakers of async tasks waiting on a link (for a message, a buffer, link-up). Every event that
/// may let one of them go on wakes them all; a task that finds nothing registers again.
struct Wakers {
    slots: [Option<Waker>; Self::K],
    count: u8,
}

impl Wakers {
    const K: usize = 8;

    const fn new() -> Self {
        Self {
            slots: [const { None }; Self::K],
            count: 0,
        }
    }

    fn register(&mut self, w: &Waker) {
        if self.slots.iter().flatten().any(|x| x.will_wake(w)) {
            return;
        }
        if let Some(free) = self.slots.iter_mut().find(|s| s.is_none()) {
            *free = Some(w.clone());
            self.count += 1;
            return;
        }
        // Full: wake everyone (they re-poll and register again), keep the newcomer.
        self.wake_all();
        self.slots[0] = Some(w.clone());
        self.count = 1;
    }

    fn wake_all(&mut self) {
        if self.count == 0 {
            return;
        }
        self.count = 0;
        for w in self.slots.iter_mut().filter_map(Option::take) {
            w.wake();
        }
    }
}

impl<'r, P: Platform, E: Environment, const N: usize, const EPTS: usize> Link<'r, P, E, N, EPTS> {
    /// Async building block: is the link up? Registers `cx`'s waker when not yet.
    ///
    /// # Errors
    ///
    /// [`Error::LinkDown`] or [`Error::PeerViolation`] when the link went down.
    pub fn poll_link_up(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Err(e) = self.poll() {
            return Poll::Ready(Err(e));
        }
        match self.with(|st, fx| {
            self.check_device_up(st, fx)?;
            match st.phase {
                Phase::Up => Ok(true),
                Phase::Down | Phase::Broken(_) => Err(Self::phase_error(st.phase)),
                Phase::Idle | Phase::Waiting | Phase::Reset => {
                    st.wakers.register(cx.waker());
                    Ok(false)
                }
            }
        }) {
            Ok(Ok(true)) => Poll::Ready(Ok(())),
            Ok(Ok(false)) => Poll::Pending,
            Ok(Err(e)) | Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Async building block: a free transmit buffer, or `cx`'s waker registered. `waiting`
    /// belongs to the future: set while it counts as a sender waiting for a buffer, which
    /// (driver) asks the device to interrupt when it returns one, as a blocking sender does;
    /// the future calls [`LinkCore::tx_wait_cancel`] if it is dropped while set.
    pub(crate) fn poll_alloc(
        &self,
        cx: &mut Context<'_>,
        waiting: &mut bool,
    ) -> Poll<Result<TxInfo, Error>> {
        self.poll_locked(cx, |st, fx| {
            // Twice at most: once, and again if buffers came back while we asked for the
            // interrupt (after that, the interrupt is on and announces the next one).
            for _ in 0..2 {
                let r = self.try_alloc(st, fx);
                if !matches!(r, Ok(None)) {
                    if core::mem::take(waiting) {
                        self.tx_wait_end(st);
                    }
                    return r;
                }
                if !*waiting {
                    *waiting = true;
                    st.tx_waiters += 1;
                }
                if !self.ask_tx_interrupt(st) {
                    break;
                }
            }
            Ok(None)
        })
    }

    /// Driver: asks the device to interrupt when it returns a transmit buffer, and tells
    /// whether one came back meanwhile (clear, full fence, re-check, as `alloc_blocking`
    /// does): a buffer returned before the flag was cleared is seen now, a later one is
    /// announced. A device has nothing to ask for.
    fn ask_tx_interrupt(&self, st: &State<'r, N, EPTS>) -> bool {
        match &st.queues {
            #[cfg(feature = "role-driver")]
            Queues::Driver { tx, .. } => matches!(tx.enable_interrupt(&self.region), Ok(true)),
            _ => false,
        }
    }

    /// Async building block: the head of an endpoint's queue, or `cx`'s waker registered.
    pub(crate) fn poll_recv(
        &self,
        slot: u8,
        generation: u16,
        max_len: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<RxInfo, Error>> {
        if let Err(e) = self.poll() {
            return Poll::Ready(Err(e));
        }
        self.poll_locked(cx, |st, fx| {
            self.recv_locked(st, fx, slot, generation, max_len)
        })
    }

    /// Runs `attempt` under the lock and registers `cx`'s waker in the same critical section
    /// when it finds nothing, so no wake-up can fall between the look and the registration.
    fn poll_locked<T>(
        &self,
        cx: &mut Context<'_>,
        attempt: impl FnOnce(&mut State<'r, N, EPTS>, &mut Effects) -> Result<Option<T>, Error>,
    ) -> Poll<Result<T, Error>> {
        match self.with(|st, fx| {
            let r = attempt(st, fx);
            if matches!(r, Ok(None)) {
                st.wakers.register(cx.waker());
            }
            r
        }) {
            Ok(Ok(Some(t))) => Poll::Ready(Ok(t)),
            Ok(Ok(None)) => Poll::Pending,
            Ok(Err(e)) | Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// A link identity no other link of this program has had or will have: a 64-bit counter
/// bumped in a critical section (no compare-and-swap needed, so it works on cores without
/// one, such as Cortex-M0), which cannot wrap in the life of any program.
fn next_link_id() -> u64 {
    static NEXT: critical_section::Mutex<core::cell::Cell<u64>> =
        critical_section::Mutex::new(core::cell::Cell::new(1));
    critical_section::with(|cs| {
        let c = NEXT.borrow(cs);
        let id = c.get();
        c.set(id.wrapping_add(1));
        id
    })
}

#[cfg(all(
    feature = "layout-rsc-table",
    any(feature = "role-driver", feature = "role-device")
))]
fn ring_layout(num: u32, align: u32) -> Result<VringLayout, Error> {
    let num = u16::try_from(num).map_err(|_| Error::Config("vring num above 32768"))?;
    VringLayout::new(num, align as usize).map_err(|_| Error::Config("vring num or align invalid"))
}

/// What buffers and endpoint handles need from their link, independent of its type parameters.
pub(crate) trait LinkCore: Sync {
    fn region(&self) -> SharedRegion<'_>;
    fn release_rx(&self, info: RxInfo);
    fn hold_rx(&self, info: RxInfo) -> HeldRx;
    fn send_tx(&self, info: TxInfo, src: u32, dst: u32, len: usize) -> Result<(), Error>;
    fn write_tx(&self, info: TxInfo, offset: usize, data: &[u8]) -> Result<(), Error>;
    fn drop_tx(&self, info: TxInfo);
    fn tx_wait_cancel(&self);
    fn ep_send(
        &self,
        slot: u8,
        generation: u16,
        src: u32,
        dst: u32,
        data: &[u8],
        timeout: Option<Timeout>,
    ) -> Result<(), Error>;
    fn ep_alloc(&self, slot: u8, generation: u16, timeout: Timeout) -> Result<TxInfo, Error>;
    fn ep_recv(
        &self,
        slot: u8,
        generation: u16,
        max_len: usize,
        timeout: Timeout,
    ) -> Result<RxInfo, Error>;
    fn ep_pending(&self, slot: u8, generation: u16) -> Result<usize, Error>;
    fn ep_dst(&self, slot: u8, generation: u16) -> Result<u32, Error>;
    fn ep_set_dst(&self, slot: u8, generation: u16, dst: u32) -> Result<(), Error>;
    fn ep_destroy(&self, slot: u8, generation: u16) -> Result<(), Error>;
    fn ep_poll_alloc(
        &self,
        slot: u8,
        generation: u16,
        cx: &mut Context<'_>,
        waiting: &mut bool,
    ) -> Poll<Result<TxInfo, Error>>;
    fn ep_poll_recv(
        &self,
        slot: u8,
        generation: u16,
        max_len: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<RxInfo, Error>>;
}

impl<P: Platform, E: Environment, const N: usize, const EPTS: usize> LinkCore
    for Link<'_, P, E, N, EPTS>
{
    fn region(&self) -> SharedRegion<'_> {
        self.region
    }

    fn release_rx(&self, info: RxInfo) {
        let _ = self.with(|st, fx| {
            let held = st.epoch == info.epoch
                && st
                    .rx_meta
                    .get(usize::from(info.id))
                    .is_some_and(|m| m.state == RxState::Held);
            if !held {
                return;
            }
            st.stats.held = st.stats.held.saturating_sub(1);
            let ret = st.rx_meta[usize::from(info.id)].ret_len;
            if matches!(st.phase, Phase::Up) {
                let _ = self.return_rx(st, fx, info.id, ret);
            } else {
                // The link is down or broken: nobody takes the buffer back any more.
                st.rx_meta[usize::from(info.id)].state = RxState::Free;
            }
        });
    }

    fn hold_rx(&self, info: RxInfo) -> HeldRx {
        HeldRx {
            key: self.key(),
            info: RxInfoKey {
                id: info.id,
                epoch: info.epoch,
            },
        }
    }

    fn send_tx(&self, info: TxInfo, src: u32, dst: u32, len: usize) -> Result<(), Error> {
        self.publish_tx(info, src, dst, len)
    }

    fn write_tx(&self, info: TxInfo, offset: usize, data: &[u8]) -> Result<(), Error> {
        // Under the lock, so that no reset can come between the check and the write.
        self.with(|st, _| {
            Self::tx_current(st, &info)?;
            self.region
                .copy_in(info.offset + HEADER_LEN + offset, data)
                .map_err(Error::from)
        })?
    }

    fn tx_wait_cancel(&self) {
        let _ = self.with(|st, _| self.tx_wait_end(st));
    }

    fn drop_tx(&self, info: TxInfo) {
        let _ = self.with(|st, _| {
            if st.epoch == info.epoch && st.nfree < N {
                st.free[st.nfree] = info.id;
                st.nfree += 1;
            }
        });
    }

    fn ep_send(
        &self,
        slot: u8,
        generation: u16,
        src: u32,
        dst: u32,
        data: &[u8],
        timeout: Option<Timeout>,
    ) -> Result<(), Error> {
        let timeout = timeout.unwrap_or(Timeout::After(self.cfg.send_timeout));
        self.send_raw(src, dst, data, timeout, Some((slot, generation)))
    }

    fn ep_alloc(&self, slot: u8, generation: u16, timeout: Timeout) -> Result<TxInfo, Error> {
        self.alloc_blocking(timeout, Some((slot, generation)))
    }

    fn ep_recv(
        &self,
        slot: u8,
        generation: u16,
        max_len: usize,
        timeout: Timeout,
    ) -> Result<RxInfo, Error> {
        let attempt = || self.with(|st, fx| self.recv_locked(st, fx, slot, generation, max_len))?;
        self.poll()?;
        self.wait_for(timeout, Error::NoBuffer, true, attempt)
    }

    fn ep_poll_alloc(
        &self,
        slot: u8,
        generation: u16,
        cx: &mut Context<'_>,
        waiting: &mut bool,
    ) -> Poll<Result<TxInfo, Error>> {
        if let Err(e) = self
            .with(|st, _| Self::slot_check(st, slot, generation))
            .and_then(|r| r)
        {
            if core::mem::take(waiting) {
                self.tx_wait_cancel();
            }
            return Poll::Ready(Err(e));
        }
        self.poll_alloc(cx, waiting)
    }

    fn ep_poll_recv(
        &self,
        slot: u8,
        generation: u16,
        max_len: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<RxInfo, Error>> {
        self.poll_recv(slot, generation, max_len, cx)
    }

    fn ep_pending(&self, slot: u8, generation: u16) -> Result<usize, Error> {
        self.with(|st, _| {
            Self::slot_check(st, slot, generation).map(|i| usize::from(st.slots[i].q_len))
        })?
    }

    fn ep_dst(&self, slot: u8, generation: u16) -> Result<u32, Error> {
        self.with(|st, _| Self::slot_check(st, slot, generation).map(|i| st.slots[i].dst))?
    }

    fn ep_set_dst(&self, slot: u8, generation: u16, dst: u32) -> Result<(), Error> {
        self.with(|st, _| Self::slot_check(st, slot, generation).map(|i| st.slots[i].dst = dst))?
    }

    fn ep_destroy(&self, slot: u8, generation: u16) -> Result<(), Error> {
        let (announced, addr, name) = self.with(|st, fx| -> Result<_, Error> {
            let i = Self::slot_check(st, slot, generation)?;
            // Give queued messages back to the peer.
            let mut id = st.slots[i].q_head;
            let mut guard = 0;
            while id != NIL && guard <= N {
                let m = st
                    .rx_meta
                    .get(usize::from(id))
                    .copied()
                    .unwrap_or(RxMeta::EMPTY);
                st.stats.held = st.stats.held.saturating_sub(1);
                let _ = self.return_rx(st, fx, id, m.ret_len);
                id = m.next;
                guard += 1;
            }
            let s = &mut st.slots[i];
            let out = (s.announced && matches!(st.phase, Phase::Up), s.addr, s.name);
            *s = Slot {
                generation: s.generation,
                ..Slot::EMPTY
            };
            if st.parked != NIL {
                self.unpark(st, fx);
            }
            Ok(out)
        })??;
        if announced {
            let _ = self.announce(
                addr,
                name,
                NsFlags::Destroy,
                Timeout::After(self.cfg.send_timeout),
            );
        }
        Ok(())
    }
}
