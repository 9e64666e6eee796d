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
//! # Inside: an engine and a shell
//!
//! The protocol itself is the engine (`link::engine`): the link's state and every step on it
//! (link-up, take a message, check it, dispatch it, give a buffer back, take a free buffer,
//! publish a message) as `&mut self` methods that take no lock and do no I/O beyond the
//! shared region and the platform's cache and address hooks. `Link` is the shell around it:
//! the lock, waiting and waking, callbacks, announcements, the handles' `LinkCore`. A message
//! goes `Endpoint::send_to` → `Link::send_raw` → `State::try_alloc` and `State::publish` on
//! one side, and `Link::poll` → `State::rx_step` → the endpoint's queue or callback on the
//! other.
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

mod api;
mod engine;
mod handles;
mod poll;

pub(crate) use handles::LinkCore;

use crate::buffer::RxBuffer;
use crate::error::Error;
use crate::layout::{LayoutConfig, LiteConfig, RscConfig};
use crate::ns::NsHandler;
use crate::port::{Environment, Platform};
use crate::shm::SharedRegion;
use crate::virtqueue::Violation;
use crate::wire::rpmsg::HEADER_LEN;
use core::cell::RefCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use core::time::Duration;
use embassy_sync::blocking_mutex::Mutex;
use engine::{CALLERS, Effects, Io, NIL, Next, Phase, Queues, RxMeta, Slot, State, Wakers};

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

    /// What the engine's steps may touch besides the state.
    fn io(&self) -> Io<'_, 'r, P> {
        Io {
            region: self.region,
            table: self.table,
            platform: &self.platform,
            cfg: &self.cfg,
            kicked: &self.vring0_kicked,
        }
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut State<'r, N, EPTS>, &mut Effects) -> R,
    ) -> Result<R, Error> {
        let mut fx = Effects::default();
        let r = self.state.lock(|c| match c.try_borrow_mut() {
            Ok(mut st) => {
                let r = f(&mut st, &mut fx);
                if fx.notify != [false; 2] || fx.suppressed != [false; 2] || fx.wake {
                    Self::finish(&mut st, &mut fx);
                }
                Ok(r)
            }
            Err(_) => Err(Error::Busy),
        })?;
        if fx.notify != [false; 2] || fx.wake {
            self.apply(&fx);
        }
        Ok(r)
    }

    /// The end of a critical section that asked for doorbells or wake-ups: counted, and the
    /// wakers woken (which only schedules tasks; it cannot re-enter this link). Out of line:
    /// `with` is instantiated once per critical section, this only once.
    #[inline(never)]
    fn finish(st: &mut State<'r, N, EPTS>, fx: &mut Effects) {
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
            st.wakers.wake_all();
        }
    }

    /// Rings the doorbells and wakes the blocked callers a critical section asked for, after
    /// the lock is let go.
    fn apply(&self, fx: &Effects) {
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
        self.with(|st, fx| st.start_locked(&self.io(), fx))??;
        self.flush_announcements();
        Ok(())
    }

    /// Driver: starts a new session over the same memory, as after a restart of the other
    /// core (the platform or host reports the device gone or restarted). The rings are laid
    /// out again from zero, the receive buffers posted again, the status written again (with
    /// a resource table: 0, `ACKNOWLEDGE`, `DRIVER`, the features and vring addresses, then
    /// `DRIVER_OK`), vring 0 kicked; endpoints stay, and those that were announced are
    /// announced again. Everything of the old session is forgotten: its queued messages are
    /// not delivered, and its transmit buffers and held tokens fail with
    /// [`Error::LinkDown`] and never touch shared memory. A device of ours recognises the new
    /// session whether or not it saw the status byte change (see `Link::poll`). Works from any
    /// phase but [`Link::shutdown`]'s, including after an [`Error::PeerViolation`].
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a device link (a device follows the driver; it cannot restart
    /// it), [`Error::LinkDown`] after a shutdown, and as [`Link::start`].
    pub fn restart(&self) -> Result<(), Error> {
        self.with(|st, fx| st.restart_locked(&self.io(), fx))??;
        self.flush_announcements();
        Ok(())
    }

    /// Handles a doorbell for notify id `id`: call it from the inter-core interrupt. Takes every
    /// published message, wakes waiters. An id this link does not know is ignored.
    ///
    /// # Errors
    ///
    /// As [`Link::poll`].
    pub fn handle_notify(&self, id: u32) -> Result<usize, Error> {
        // Buffers may have come back without a message to dispatch: every waiter re-checks.
        self.poll_rings(Some(id), None)
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
        self.poll_rings(None, None)
    }

    /// `poll`, and for a doorbell (`rung`: its notify id) also what `handle_notify` adds: the
    /// vring 0 kick noted (a Lite device's link-up signal) and every waiter woken.
    ///
    /// One critical section takes every message that only needs queueing or dropping; the
    /// lock is let go only to run a callback. The calling context is recorded as inside a
    /// callback in the critical section that hands the callback out, and forgotten in the
    /// next one (or, when there is none, in one of its own), so a callback costs no lock
    /// round trip of its own.
    ///
    /// `tail` runs in the critical section that finds the rings drained, if there is one
    /// (not when the budget runs out or an error ends the poll): `Endpoint::recv` takes its
    /// message there, without a critical section of its own.
    fn poll_rings(
        &self,
        rung: Option<u32>,
        mut tail: Option<Tail<'_, 'r, N, EPTS>>,
    ) -> Result<usize, Error> {
        if self.in_callback() {
            if let Some(id) = rung {
                // No messages taken here, but the doorbell still counts.
                let _ = self.with(|st, fx| {
                    if id == st.notify_ids[0] {
                        self.vring0_kicked.store(true, Ordering::Release);
                    }
                    fx.wake = true;
                });
            }
            return Err(Error::InCallback);
        }
        let mut n = 0;
        // (up, sessions) at the first critical section, and sessions at the latest.
        let mut was_up = None;
        let mut sessions = 0;
        // The caller record of the callback that just ran (see `enter_callback`).
        let mut inside: Option<Option<usize>> = None;
        // Bounded, so a peer that keeps publishing cannot keep us here: four rings' worth per
        // call; what is left waits for the next poll.
        let budget = 4 * N;
        let r = loop {
            if n >= budget {
                break Ok(());
            }
            let next = self.with(|st, fx| {
                if let Some(c) = inside.take() {
                    st.leave_callback(c);
                    self.dispatching.fetch_sub(1, Ordering::SeqCst);
                }
                if let Some(id) = rung {
                    if id == st.notify_ids[0] {
                        self.vring0_kicked.store(true, Ordering::Release);
                    }
                    fx.wake = true;
                }
                was_up.get_or_insert((matches!(st.phase, Phase::Up), st.stats.sessions));
                // Device: is the driver there yet, or gone? Asked once per critical section,
                // not per message (with a resource table it reads the status byte).
                st.check_device_up(&self.io(), fx)?;
                sessions = st.stats.sessions;
                let next = loop {
                    match st.rx_step(&self.io(), fx) {
                        Ok(Next::Again) if n + 1 < budget => n += 1,
                        other => break other,
                    }
                };
                if let (Ok(Next::Idle), Some(tail)) = (&next, tail.as_deref_mut()) {
                    tail(st, fx);
                }
                if let Ok(Next::Callback(..) | Next::Ns(..) | Next::NsBound(..)) = next {
                    // Counted before the context is recorded, and forgotten after:
                    // `in_callback` never misses a recorded context.
                    self.dispatching.fetch_add(1, Ordering::SeqCst);
                    inside = Some(st.enter_callback(self.env.context_id()));
                }
                next
            });
            let next = match next {
                Ok(Ok(next)) => next,
                Ok(Err(e)) | Err(e) => break Err(e),
            };
            match next {
                Next::Idle => break Ok(()),
                Next::Again => {}
                Next::Callback(h, info) => h.on_message(RxBuffer::new(self, info)),
                Next::Ns(h, a) => h.on_announcement(&a),
                Next::NsBound(h, a, local) => h.on_bound(&a, local),
            }
            n += 1;
        };
        if let Some(c) = inside {
            // The loop ended right after a callback (budget spent, or the lock was busy).
            let _ = self.with(|st, _| st.leave_callback(c));
            self.dispatching.fetch_sub(1, Ordering::SeqCst);
        }
        r?;
        // Announcements are owed when the link came up, or a new session started while we
        // looked (a device follows a driver's re-probe without leaving `Up` in between).
        let new_session = was_up != Some((true, sessions));
        if (new_session || self.announce_owed.load(Ordering::Relaxed)) && self.is_up() {
            self.flush_announcements();
        }
        Ok(n)
    }

    /// Whether the caller is inside one of this link's callbacks (see `poll_rings`).
    fn in_callback(&self) -> bool {
        if self.dispatching.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let me = self.env.context_id();
        self.with(|st, _| st.callers_overflow > 0 || st.callers.contains(&Some(me)))
            // The lock is taken by the context we interrupted: not inside a callback of ours.
            .unwrap_or(false)
    }
}

/// Work for the critical section of a poll that finds the rings drained (see `poll_rings`).
type Tail<'a, 'r, const N: usize, const EPTS: usize> =
    &'a mut dyn FnMut(&mut State<'r, N, EPTS>, &mut Effects);

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
