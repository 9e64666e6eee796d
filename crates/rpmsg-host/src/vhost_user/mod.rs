//! A vhost-user device back-end: the real Linux rpmsg stack (in User-Mode Linux through
//! `virtio_uml`, or any vhost-user front-end) talks to **our** device role.
//!
//! The front-end (the virtio driver's side) connects to a UNIX socket we listen on, hands us its
//! memory and places the two split vrings in it; the core's device role then runs on those
//! rings: it takes the driver's receive buffers from vring 0 to send and receives on vring 1.
//!
//! # How the pieces fit
//!
//! * **Protocol** (`proto`, `backend`): our own message handling, exactly what `virtio_uml`
//!   6.1 sends (docs/linux-peer.md section 3): features `VIRTIO_RPMSG_F_NS | PROTOCOL_FEATURES
//!   | VERSION_1`, protocol features `REPLY_ACK | SLAVE_REQ | CONFIG` (plus
//!   `INBAND_NOTIFICATIONS` if [`DeviceOptions::inband_notifications`]), `SET_MEM_TABLE` with one
//!   or two regions (virtio_uml's 72-byte payload for one region included), the vring set-up,
//!   kick and call descriptors, `SET_VRING_ENABLE`, an empty config space. Replies carry flags
//!   `0x5`; with `NEED_REPLY` every request is acknowledged with `u64 0`, or `1` when rejected.
//! * **Memory**: each region's descriptor is mapped at its `mmap_offset`, the regions side by side
//!   in one range of ours, which is the link's [`SharedRegion`]; guest addresses map onto it with
//!   a [`SegmentMap`].
//! * **Bridge to the core**: the back-end synthesizes a resource table in its own memory (one
//!   rpmsg vdev, `dfeatures` = name service) and builds the link with
//!   [`Link::new_with_table`] in the device role. On the **first kick of vring 0** after both
//!   rings are set up and enabled (virtio_uml never reports `DRIVER_OK`; that kick is the reliable
//!   "driver is live" signal) it writes each ring's guest address (`da`), alignment, size and
//!   notify id (0, 1) and the negotiated features into the table and sets `DRIVER_OK`: the core
//!   attaches to the rings and the link comes up. Disabling a ring (`SET_VRING_ENABLE 0`),
//!   changing one, or the front-end going away clears `DRIVER_OK`: the session ends and calls
//!   fail with [`rpmsg::Error::LinkDown`].
//! * **Notifications**: [`Platform::notify`] writes an 8-byte 1 to the ring's call descriptor (a
//!   socketpair end under UML, sent without blocking; an eventfd otherwise), or sends
//!   `SLAVE_VRING_CALL` on the slave channel in in-band mode. A service thread polls the socket
//!   and the kick descriptors and calls [`Link::handle_notify`] for every kick; blocked callers
//!   wake through [`VhostEnv`].
//!
//! # Use
//!
//! ```no_run
//! use rpmsg::{EndpointConfig, Timeout};
//! use rpmsg_host::vhost_user::{DeviceOptions, VhostUserDevice};
//!
//! let device = VhostUserDevice::bind(DeviceOptions::new("/tmp/rpmsg.sock"))?;
//! println!("listening on {}", device.path().display());
//! let served = device.serve(|link| {
//!     let ep = link.create_endpoint(EndpointConfig::new().name("rpmsg-raw")?.announce(true).queue(16))?;
//!     // Until the front-end disconnects: every call then fails with LinkDown.
//!     while link.wait_link_up(Timeout::Forever).is_ok() {
//!         let mut buf = [0u8; 496];
//!         while let Ok((n, src)) = ep.recv(&mut buf, Timeout::Forever) {
//!             ep.send_to(src, &buf[..n])?;
//!         }
//!     }
//!     Ok::<(), rpmsg::Error>(())
//! })?;
//! println!("{:?}", served.report);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Limits
//!
//! * Split rings only, laid out contiguously as Linux's `vring_create_virtqueue` does (avail
//!   right after the descriptors, used at a power-of-two alignment): other placements are
//!   rejected. No `EVENT_IDX`, `INDIRECT_DESC`, packed rings, dirty logging, IOTLB or
//!   multiqueue (none is offered).
//! * Rings must lie below 4 GiB of guest address (the table's `da` is 32-bit); buffers may lie
//!   anywhere in the mapped regions.
//! * `SET_VRING_BASE` must be 0, and a session cannot resume after its rings were disabled
//!   unless they are set up again (`SET_VRING_BASE`/`SET_VRING_ADDR`): the core starts every
//!   session at ring index 0. `GET_VRING_BASE` is not supported (virtio_uml never sends it).
//! * One front-end per [`VhostUserDevice::serve`]; the memory table cannot change once mapped.
//! * A front-end that shrinks its memory file while we map it makes us fault (`SIGBUS`), as any
//!   shared-memory peer could (the file's size is checked when it is mapped).

mod backend;
mod proto;

use crate::port::HostRawMutex;
use crate::sys::Mapping;
use backend::{Backend, Bridge, Notifier};
use rpmsg::layout::RscConfig;
use rpmsg::wire::rsc::{FW_RSC_ADDR_ANY, RscTableRepr, VIRTIO_ID_RPMSG, VdevRepr, VringInfo};
use rpmsg::{
    Announcement, Config, Environment, Instant, Link, LinkStats, NsHandler, Platform, Role,
    SegmentMap, SharedRegion, Violation,
};
use rustix::event::{PollFd, PollFlags, poll};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Feature bit 0: the rpmsg name service (`VIRTIO_RPMSG_F_NS`).
pub const VIRTIO_RPMSG_F_NS: u64 = 1 << 0;
/// Feature bit 30: vhost-user protocol features exist (`VHOST_USER_F_PROTOCOL_FEATURES`).
pub const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;
/// Feature bit 32: virtio 1.0, little-endian rpmsg headers (`VIRTIO_F_VERSION_1`).
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Protocol feature 3: acknowledge requests flagged `NEED_REPLY`.
pub const PROTOCOL_F_REPLY_ACK: u64 = 1 << 3;
/// Protocol feature 5: the back-end-to-front-end ("slave") channel.
pub const PROTOCOL_F_SLAVE_REQ: u64 = 1 << 5;
/// Protocol feature 9: `GET_CONFIG`/`SET_CONFIG`.
pub const PROTOCOL_F_CONFIG: u64 = 1 << 9;
/// Protocol feature 14: kicks and calls as messages instead of descriptors.
pub const PROTOCOL_F_INBAND_NOTIFICATIONS: u64 = 1 << 14;

/// The link the back-end runs: device role, rings of up to 256 entries, 16 endpoint slots.
pub type VhostLink<'r> = Link<'r, VhostPlatform, VhostEnv, 256, 16>;

/// Where events go (see [`DeviceOptions::on_event`]).
pub(crate) type EventSink = Option<Arc<dyn Fn(&Event) + Send + Sync>>;

/// How the back-end is set up.
#[derive(Clone)]
pub struct DeviceOptions {
    /// The UNIX socket to listen on. A stale socket file there is replaced; one that a live
    /// process listens on is an error ([`VhostError::InUse`]).
    pub socket: PathBuf,
    /// Offer the name service (`VIRTIO_RPMSG_F_NS`); on by default.
    pub name_service: bool,
    /// Offer in-band notifications (kicks as `VRING_KICK` messages, calls as
    /// `SLAVE_VRING_CALL`); off by default.
    pub inband_notifications: bool,
    /// How long a send waits for a buffer from the driver (15 s, as Linux).
    pub send_timeout: Duration,
    /// Longest sleep of a blocking call between looks at the rings (10 ms; wake-ups come with
    /// every kick, so this only bounds a missed one).
    pub poll_interval: Duration,
    /// How long the back-end waits for the rest of a message once it began, or for the
    /// front-end to take a reply, before it gives up on the connection (5 s).
    pub io_timeout: Duration,
    events: EventSink,
}

impl fmt::Debug for DeviceOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceOptions")
            .field("socket", &self.socket)
            .field("name_service", &self.name_service)
            .field("inband_notifications", &self.inband_notifications)
            .field("send_timeout", &self.send_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("io_timeout", &self.io_timeout)
            .field("on_event", &self.events.is_some())
            .finish()
    }
}

impl DeviceOptions {
    /// Options with the defaults, listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            name_service: true,
            inband_notifications: false,
            send_timeout: Duration::from_secs(15),
            poll_interval: Duration::from_millis(10),
            io_timeout: Duration::from_secs(5),
            events: None,
        }
    }

    /// Calls `f` with every [`Event`], on the thread that saw it (the caller of
    /// [`VhostUserDevice::serve`] until guest memory is mapped, then the service thread).
    /// Announcements the driver sends arrive here too ([`Event::Ns`]): the back-end installs the
    /// link's name-service handler.
    #[must_use]
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.events = Some(Arc::new(f));
        self
    }

    /// The features offered in `GET_FEATURES`.
    pub fn features(&self) -> u64 {
        let ns = if self.name_service {
            VIRTIO_RPMSG_F_NS
        } else {
            0
        };
        ns | VHOST_USER_F_PROTOCOL_FEATURES | VIRTIO_F_VERSION_1
    }

    /// The protocol features offered in `GET_PROTOCOL_FEATURES`.
    pub fn protocol_features(&self) -> u64 {
        let inband = if self.inband_notifications {
            PROTOCOL_F_INBAND_NOTIFICATIONS
        } else {
            0
        };
        PROTOCOL_F_REPLY_ACK | PROTOCOL_F_SLAVE_REQ | PROTOCOL_F_CONFIG | inband
    }
}

/// Something that happened on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A front-end connected.
    Connected,
    /// `SET_FEATURES`.
    Features {
        /// The features the driver accepted.
        features: u64,
    },
    /// `SET_PROTOCOL_FEATURES`.
    ProtocolFeatures {
        /// The protocol features agreed.
        features: u64,
    },
    /// `SET_MEM_TABLE`: guest memory is mapped.
    MemoryTable(Vec<MemoryRegion>),
    /// `SET_VRING_ADDR`: a ring is placed.
    Vring(VringSetup),
    /// `SET_VRING_ENABLE`.
    VringEnabled {
        /// The ring.
        index: usize,
        /// On or off.
        enabled: bool,
    },
    /// The link came up (the driver is live and our device role attached to its rings).
    LinkUp,
    /// The session ended.
    LinkDown {
        /// Why: a ring disabled or reconfigured, the front-end gone, a peer violation.
        reason: String,
    },
    /// An announcement from the driver that no endpoint of ours was bound by.
    Ns(Announcement),
    /// A request was rejected (acknowledged with a non-zero value); the connection goes on.
    Rejected {
        /// What was wrong.
        message: String,
    },
}

/// One region of the front-end's memory table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    /// Guest (UML "physical") address of its start.
    pub guest_addr: u64,
    /// Bytes.
    pub size: u64,
    /// The front-end's user address of its start (what ring addresses use).
    pub user_addr: u64,
    /// Where it starts in the descriptor's file.
    pub mmap_offset: u64,
}

impl fmt::Display for MemoryRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "guest {:#x} size {:#x} user {:#x} offset {:#x}",
            self.guest_addr, self.size, self.user_addr, self.mmap_offset
        )
    }
}

/// One vring as the front-end placed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VringSetup {
    /// 0 (driver receive, we send) or 1 (driver transmit, we receive).
    pub index: usize,
    /// Entries.
    pub num: u32,
    /// Descriptor table, front-end user address.
    pub desc: u64,
    /// Available ring, front-end user address.
    pub avail: u64,
    /// Used ring, front-end user address.
    pub used: u64,
    /// Guest address of the descriptor table (the table's `da`).
    pub guest_addr: u64,
    /// The used ring's alignment, derived from the addresses.
    pub align: u32,
}

impl fmt::Display for VringSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "num {} desc {:#x} avail {:#x} used {:#x} guest {:#x} align {:#x}",
            self.num, self.desc, self.avail, self.used, self.guest_addr, self.align
        )
    }
}

/// Why serving ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum End {
    /// The front-end closed the connection (or reset it): an orderly end for virtio_uml.
    Disconnected,
    /// [`StopHandle::stop`] was called.
    Stopped,
    /// The application's closure returned: the back-end closed the connection.
    ApplicationReturned,
    /// The front-end sent something we cannot go on from; the connection was dropped.
    ProtocolError(String),
    /// The driver broke the rings; the connection was dropped.
    PeerViolation(Violation),
    /// A system call failed.
    Failed(String),
}

impl End {
    /// An end that is nobody's fault.
    pub fn is_orderly(&self) -> bool {
        matches!(
            self,
            Self::Disconnected | Self::Stopped | Self::ApplicationReturned
        )
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disconnected => f.write_str("front-end disconnected"),
            Self::Stopped => f.write_str("stopped"),
            Self::ApplicationReturned => f.write_str("application returned"),
            Self::ProtocolError(m) => write!(f, "protocol error: {m}"),
            Self::PeerViolation(v) => write!(f, "peer violation: {v:?}"),
            Self::Failed(m) => write!(f, "failed: {m}"),
        }
    }
}

/// What happened on one connection, for the end-of-run summary.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Why it ended.
    pub end: End,
    /// Whether a front-end connected.
    pub connected: bool,
    /// Features the driver accepted (`SET_FEATURES`).
    pub features: Option<u64>,
    /// Protocol features agreed (`SET_PROTOCOL_FEATURES`).
    pub protocol_features: Option<u64>,
    /// The memory table.
    pub regions: Vec<MemoryRegion>,
    /// The rings as last set up.
    pub vrings: [Option<VringSetup>; 2],
    /// Kicks received per ring.
    pub kicks: [u64; 2],
    /// Calls sent per ring.
    pub calls: [u64; 2],
    /// Calls not sent because the last one was still unread (harmless).
    pub calls_coalesced: [u64; 2],
    /// Calls that could not be sent (no descriptor, write failed).
    pub calls_dropped: [u64; 2],
    /// The link's counters at the end (`None` if guest memory was never mapped).
    pub stats: Option<LinkStats>,
    /// Every rejected request and protocol error, in order.
    pub protocol_errors: Vec<String>,
}

impl Report {
    fn new(end: End) -> Self {
        Self {
            end,
            connected: false,
            features: None,
            protocol_features: None,
            regions: Vec::new(),
            vrings: [None; 2],
            kicks: [0; 2],
            calls: [0; 2],
            calls_coalesced: [0; 2],
            calls_dropped: [0; 2],
            stats: None,
            protocol_errors: Vec::new(),
        }
    }

    /// An orderly end without protocol errors or peer violations.
    pub fn is_clean(&self) -> bool {
        self.end.is_orderly()
            && self.protocol_errors.is_empty()
            && self.stats.is_none_or(|s| s.peer_violations == 0)
    }
}

/// What [`VhostUserDevice::serve`] returns: the application's result (if it ran: it runs once
/// guest memory is mapped) and the report.
#[derive(Debug)]
pub struct Served<R> {
    /// The closure's result; `None` when the connection ended before memory was mapped.
    pub app: Option<R>,
    /// What happened.
    pub report: Report,
}

/// What went wrong setting up or running the back-end (not the front-end's faults: those end
/// up in the [`Report`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum VhostError {
    /// A system call failed.
    Io {
        /// What we were doing.
        what: &'static str,
        /// The socket involved.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// A live process listens on the socket already.
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// Something other than a socket is at the path; it is left alone.
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The link could not be built.
    Link(rpmsg::Error),
}

impl fmt::Display for VhostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { what, path, .. } => write!(f, "cannot {what} {}", path.display()),
            Self::InUse { path } => write!(
                f,
                "another process is listening on {}; stop it or choose another --socket",
                path.display()
            ),
            Self::NotASocket { path } => write!(
                f,
                "{} exists and is not a socket; remove it or choose another --socket",
                path.display()
            ),
            Self::Link(e) => write!(f, "rpmsg link: {e}"),
        }
    }
}

impl std::error::Error for VhostError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Link(e) => Some(e),
            Self::InUse { .. } | Self::NotASocket { .. } => None,
        }
    }
}

impl From<rpmsg::Error> for VhostError {
    fn from(e: rpmsg::Error) -> Self {
        Self::Link(e)
    }
}

/// Stops a back-end from any thread: the connection is closed (the front-end then removes the
/// device; UML's kernel unregisters it) and [`VhostUserDevice::serve`] returns once the
/// application's closure has.
#[derive(Debug, Clone)]
pub struct StopHandle {
    fd: Arc<OwnedFd>,
}

impl StopHandle {
    /// Asks the back-end to stop. Idempotent.
    pub fn stop(&self) {
        let _ = rustix::io::write(&*self.fd, &1u64.to_le_bytes());
    }
}

/// The chip side of the port: the guest memory map and the calls to the front-end.
#[derive(Debug)]
pub struct VhostPlatform {
    map: SegmentMap<{ backend::MAX_REGIONS }>,
    notifier: Arc<Notifier>,
}

impl Platform for VhostPlatform {
    type Map = SegmentMap<{ backend::MAX_REGIONS }>;

    fn address_map(&self) -> &Self::Map {
        &self.map
    }

    fn notify(&self, id: u32) {
        self.notifier.call(id as usize);
    }
}

std::thread_local! {
    /// The environment and generation this thread last waited on.
    static LAST_SEEN: std::cell::Cell<(usize, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// The operating-system side of the port: `std`'s clock, a per-link lock ([`HostRawMutex`]), a
/// condition variable that every kick (through the link's wake) signals.
#[derive(Debug)]
pub struct VhostEnv {
    start: std::time::Instant,
    generation: Mutex<u64>,
    cv: Condvar,
}

impl Default for VhostEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl VhostEnv {
    /// A new environment; its clock starts now.
    pub fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
            generation: Mutex::new(0),
            cv: Condvar::new(),
        }
    }
}

impl Environment for VhostEnv {
    type RawMutex = HostRawMutex;

    fn now(&self) -> Instant {
        crate::port::micros_since(self.start)
    }

    fn wait(&self, deadline: Option<Instant>) {
        let me = core::ptr::from_ref(self) as usize;
        let guard = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        let now = *guard;
        // Woken since this thread last looked: return so the caller looks at the rings again
        // (a wake between the caller's attempt and this call is not lost).
        if LAST_SEEN.with(|c| c.replace((me, now))) != (me, now) {
            return;
        }
        let dur = match deadline {
            Some(d) => Duration::from_micros(d.0.saturating_sub(self.now().0)),
            None => Duration::from_secs(3600),
        };
        if dur.is_zero() {
            return;
        }
        let (guard, _) = self
            .cv
            .wait_timeout_while(guard, dur, |g| *g == now)
            .unwrap_or_else(|p| p.into_inner());
        LAST_SEEN.with(|c| c.set((me, *guard)));
    }

    fn wake(&self) {
        let mut g = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        *g = g.wrapping_add(1);
        self.cv.notify_all();
    }
}

/// Guest memory for a front-end written in Rust (tests, tools): a sealed-size memfd, mapped
/// shared, seen as a [`SharedRegion`]. Its descriptor is what `SET_MEM_TABLE` passes.
#[derive(Debug)]
pub struct GuestMemory {
    map: Mapping,
    fd: OwnedFd,
}

impl GuestMemory {
    /// `len` bytes of zeroed memory in a memfd named `name`.
    ///
    /// # Errors
    ///
    /// The system's error (`memfd_create`, `ftruncate`, `mmap`).
    pub fn new(name: &str, len: usize) -> io::Result<Self> {
        let fd = rustix::fs::memfd_create(
            name,
            rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        rustix::fs::fcntl_add_seals(&fd, rustix::fs::SealFlags::SHRINK)?;
        let map = Mapping::map(fd.as_fd(), len)?;
        Ok(Self { map, fd })
    }

    /// The memfd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it has no bytes (never: zero-length memory cannot be mapped).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The whole memory as a region.
    ///
    /// # Errors
    ///
    /// None in practice (the mapping is page-aligned and as long as asked).
    pub fn region(&self) -> io::Result<SharedRegion<'_>> {
        self.map.region(self.map.len())
    }
}

/// Forwards announcements to the event sink.
struct NsForward(EventSink);

impl NsHandler for NsForward {
    fn on_announcement(&self, a: &Announcement) {
        if let Some(f) = &self.0 {
            f(&Event::Ns(*a));
        }
    }

    /// An announcement one of the application's endpoints took (same name, no destination
    /// yet) is still what the driver announced: report it the same way.
    fn on_bound(&self, a: &Announcement, _local: u32) {
        self.on_announcement(a);
    }
}

/// The resource table's memory: our own, aligned for [`SharedRegion::from_atomics`].
#[repr(align(8))]
struct TableCells([AtomicU8; 128]);

/// Signals stop when dropped: the application's closure returned or panicked.
struct StopOnDrop<'a> {
    stop: &'a StopHandle,
    app_done: &'a AtomicBool,
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.app_done.store(true, Ordering::Release);
        self.stop.stop();
    }
}

/// A vhost-user back-end listening on its socket, ready to serve one front-end.
#[derive(Debug)]
pub struct VhostUserDevice {
    listener: Option<UnixListener>,
    opts: DeviceOptions,
    stop: StopHandle,
}

impl VhostUserDevice {
    /// Listens on `opts.socket`: a stale socket file there is removed first; when this returns,
    /// front-ends can connect.
    ///
    /// # Errors
    ///
    /// [`VhostError::InUse`], [`VhostError::NotASocket`], [`VhostError::Io`].
    pub fn bind(opts: DeviceOptions) -> Result<Self, VhostError> {
        let path = opts.socket.clone();
        let io = |what, source| VhostError::Io {
            what,
            path: path.clone(),
            source,
        };
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_socket() => match UnixStream::connect(&path) {
                Ok(_) => return Err(VhostError::InUse { path }),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(&path).map_err(|e| io("remove the stale socket", e))?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("check the existing socket", e)),
            },
            Ok(_) => return Err(VhostError::NotASocket { path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("look at", e)),
        }
        let listener = UnixListener::bind(&path).map_err(|e| io("listen on", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| io("set up", e))?;
        let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)
            .map_err(|e| io("create the stop eventfd for", e.into()))?;
        Ok(Self {
            listener: Some(listener),
            opts,
            stop: StopHandle { fd: Arc::new(fd) },
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.opts.socket
    }

    /// A handle that stops [`serve`](Self::serve) from another thread (a signal handler's
    /// thread, a test).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    fn emit(&self, e: &Event) {
        if let Some(f) = &self.opts.events {
            f(e);
        }
    }

    /// Waits for one front-end; `None` when stopped first. The socket file is removed once a
    /// front-end is connected (nobody else can connect).
    fn accept(&mut self) -> Result<Option<UnixStream>, VhostError> {
        let path = self.opts.socket.clone();
        let io = |what, source| VhostError::Io {
            what,
            path: path.clone(),
            source,
        };
        let Some(listener) = self.listener.take() else {
            return Ok(None);
        };
        loop {
            let mut fds = [
                PollFd::new(&listener, PollFlags::IN),
                PollFd::from_borrowed_fd(self.stop.fd.as_fd(), PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(io("wait for a front-end on", e.into())),
            }
            if !fds[1].revents().is_empty() {
                let _ = std::fs::remove_file(&path);
                return Ok(None);
            }
            match listener.accept() {
                Ok((s, _)) => {
                    let _ = std::fs::remove_file(&path);
                    s.set_nonblocking(false).map_err(|e| io("set up", e))?;
                    let t = Some(self.opts.io_timeout);
                    s.set_read_timeout(t).map_err(|e| io("set up", e))?;
                    s.set_write_timeout(t).map_err(|e| io("set up", e))?;
                    return Ok(Some(s));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(io("accept a front-end on", e)),
            }
        }
    }

    /// Serves one front-end: runs the protocol until guest memory is mapped, builds the link
    /// (device role, started), then runs `app` with it on this thread while a service thread
    /// goes on with the protocol and the kicks.
    ///
    /// `app` creates its endpoints (announced ones are announced when the link comes up, again
    /// after every new session), waits for the link ([`Link::wait_link_up`]) and works until
    /// its calls fail with [`rpmsg::Error::LinkDown`] for good: when the front-end disconnects
    /// or [`StopHandle::stop`] is called, the link is shut down and every call fails, so `app`
    /// must then return. If `app` returns first, the back-end shuts the link down (announcing
    /// the destruction of our endpoints) and closes the connection.
    ///
    /// # Errors
    ///
    /// [`VhostError`] when the back-end itself cannot run; the front-end's faults end the
    /// connection and are in the [`Report`].
    pub fn serve<R>(
        mut self,
        app: impl FnOnce(&VhostLink<'_>) -> R,
    ) -> Result<Served<R>, VhostError> {
        let Some(conn) = self.accept()? else {
            return Ok(Served {
                app: None,
                report: Report::new(End::Stopped),
            });
        };
        self.emit(&Event::Connected);
        let opts = &self.opts;
        let mut be = Backend::new(
            opts.features(),
            opts.protocol_features(),
            opts.events.clone(),
        );
        let stop_fd = self.stop.fd.as_fd();
        if let Some(end) = be.run(conn.as_fd(), stop_fd, None) {
            return Ok(Served {
                app: None,
                report: report(&be, end, None),
            });
        }
        let Some(mem) = be.mem.take() else {
            return Ok(Served {
                app: None,
                report: report(&be, End::Failed("guest memory is not mapped".into()), None),
            });
        };
        let io = |what, source| VhostError::Io {
            what,
            path: opts.socket.clone(),
            source,
        };
        let region = mem
            .region(mem.len())
            .map_err(|e| io("use guest memory of the front-end of", e))?;
        let mut segments = [(0u64, 0usize, 0usize); backend::MAX_REGIONS];
        for ((seg, r), &start) in segments.iter_mut().zip(&be.regions).zip(&be.starts) {
            *seg = (r.guest_addr, start, r.size as usize);
        }
        let cells = TableCells([const { AtomicU8::new(0) }; 128]);
        let table = SharedRegion::from_atomics(&cells.0).map_err(|e| {
            io(
                "build the resource table for",
                io::Error::other(e.to_string()),
            )
        })?;
        let rsc = RscConfig::new(0, synth_table(&table, opts.name_service)?);
        let mut cfg = Config::rsc_table(Role::Device, rsc);
        cfg.name_service = opts.name_service;
        cfg.send_timeout = opts.send_timeout;
        cfg.poll_interval = opts.poll_interval;
        let ns = NsForward(opts.events.clone());
        let platform = VhostPlatform {
            map: SegmentMap { segments },
            notifier: be.notifier.clone(),
        };
        let link: VhostLink<'_> =
            Link::new_with_table(region, table, platform, VhostEnv::new(), cfg)?;
        link.set_ns_handler(&ns)?;
        link.start()?;
        let bridge = Bridge {
            link: &link,
            table,
            rsc,
        };
        let app_done = AtomicBool::new(false);
        let (r, end) = std::thread::scope(|s| {
            let service = s.spawn(|| {
                let end = be
                    .run(conn.as_fd(), stop_fd, Some(&bridge))
                    .unwrap_or(End::Stopped);
                let end = match end {
                    End::Stopped if app_done.load(Ordering::Acquire) => End::ApplicationReturned,
                    e => e,
                };
                if end == End::Disconnected {
                    be.end_session(&bridge, "front-end disconnected");
                    let _ = link.shutdown();
                } else {
                    // Still connected: announce the destruction of our endpoints first.
                    let _ = link.shutdown();
                    be.end_session(&bridge, &end.to_string());
                }
                // Close the connection now, not when `serve` returns; then the slave channel
                // (the front-end removes the device) and, once it has let go of them, the call
                // descriptors.
                drop(conn);
                be.notifier.close(Duration::from_secs(1));
                end
            });
            let guard = StopOnDrop {
                stop: &self.stop,
                app_done: &app_done,
            };
            let r = app(&link);
            drop(guard);
            let end = service
                .join()
                .unwrap_or_else(|_| End::Failed("the service thread panicked".into()));
            (r, end)
        });
        let stats = link.stats();
        Ok(Served {
            app: Some(r),
            report: report(&be, end, Some(stats)),
        })
    }
}

impl Drop for VhostUserDevice {
    fn drop(&mut self) {
        if self.listener.is_some() {
            let _ = std::fs::remove_file(&self.opts.socket);
        }
    }
}

/// Writes our resource table (one rpmsg vdev, rings placed at go-live) into `table`; returns
/// its length.
/// The fuzzer's entry: front-end messages as bytes, handled one by one by a back-end that has
/// no link yet (see fuzz/fuzz_targets/vhost_user.rs). Built only with `--cfg fuzzing`.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn fuzz_messages(data: &[u8]) {
    backend::fuzz_messages(data);
}

fn synth_table(table: &SharedRegion<'_>, name_service: bool) -> Result<usize, VhostError> {
    let ring = |notifyid| VringInfo {
        da: FW_RSC_ADDR_ANY,
        align: 0x1000,
        num: backend::MAX_NUM,
        notifyid,
    };
    let repr = RscTableRepr {
        vdev: Some(VdevRepr {
            id: VIRTIO_ID_RPMSG,
            notifyid: 2,
            dfeatures: if name_service { 1 } else { 0 },
            config_len: 0,
            vrings: [ring(0), ring(1)],
        }),
        carveouts: &[],
        trace: None,
    };
    let mut bytes = [0u8; 128];
    let len = repr
        .emit(&mut bytes)
        .map_err(|_| VhostError::Link(rpmsg::Error::Config("resource table does not fit")))?;
    table
        .copy_in(0, &bytes[..len])
        .map_err(|_| VhostError::Link(rpmsg::Error::Config("resource table does not fit")))?;
    Ok(len)
}

fn report(be: &Backend, end: End, stats: Option<LinkStats>) -> Report {
    let n = &be.notifier;
    let load =
        |a: &[std::sync::atomic::AtomicU64; 2]| a.each_ref().map(|c| c.load(Ordering::Relaxed));
    Report {
        end,
        connected: true,
        features: be.features,
        protocol_features: be.protocol,
        regions: be.regions.clone(),
        vrings: be.vrings(),
        kicks: be.kicks,
        calls: load(&n.sent),
        calls_coalesced: load(&n.coalesced),
        calls_dropped: load(&n.dropped),
        stats,
        protocol_errors: be.errors.clone(),
    }
}
