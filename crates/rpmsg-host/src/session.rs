//! One side of a two-process link: the shared file, the doorbell socket, the peer watch, and
//! the factory for the core [`Link`].
//!
//! # Who does what
//!
//! * The **driver** side [`Session::create`]s: it refuses to start if another live driver holds
//!   the driver socket, builds a fresh file (host block, resource table) under a temporary name,
//!   renames it into place, then binds the driver socket and marks itself ready.
//! * The **device** side [`Session::attach`]es: it waits (as long as it is told) for the file
//!   and for a live driver socket, opens and checks the file, compares what it was told with
//!   what the file says, binds the device socket and marks itself ready.
//! * Either side [`Session::close`]s (or drops) cleanly: it marks itself closed in the host
//!   block and unlinks its socket; the driver also unlinks the file it created.
//!
//! # Peer failure
//!
//! [`Session::peer`] looks at the other side: its socket (does it accept a `connect`?) and its
//! state word. [`Session::explain`] turns a link error into what happened to the peer (died,
//! closed, silent, never came), and the [`Service`](crate::Service) thread watches the peer
//! and shuts the link down when it is gone, so every blocked call returns.

use crate::doorbell::{self, DoorbellMode, DoorbellSocket, Probe, Side};
use crate::error::HostError;
use crate::file::{SharedFile, SideState};
use crate::geometry::{Geometry, LayoutKind};
use crate::port::{HostEnv, HostLink, HostPlatform};
use rpmsg::{Config, Link};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// What a side asks of the file's geometry: every field left `None` takes the driver's
/// default (driver side) or whatever the file says (device side).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeometrySpec {
    /// Layout.
    pub layout: Option<LayoutKind>,
    /// Buffers per direction.
    pub buffers: Option<u16>,
    /// Bytes per buffer, header included.
    pub buffer_size: Option<u32>,
    /// Vring alignment.
    pub align: Option<u32>,
    /// RPMsg-Lite `VRING_SIZE` (0: computed).
    pub vring_size: Option<u32>,
}

impl GeometrySpec {
    /// The geometry with every unset field from `default`.
    pub fn resolve(&self, default: Geometry) -> Geometry {
        Geometry {
            layout: self.layout.unwrap_or(default.layout),
            buffers: self.buffers.unwrap_or(default.buffers),
            buffer_size: self.buffer_size.unwrap_or(default.buffer_size),
            align: self.align.unwrap_or(default.align),
            vring_size: self.vring_size.unwrap_or(default.vring_size),
        }
    }

    /// Checks every set field against `file`.
    ///
    /// # Errors
    ///
    /// [`HostError::Mismatch`] naming the first field that differs.
    pub fn check(&self, file: &Geometry, path: &Path) -> Result<(), HostError> {
        let mismatch = |field: &'static str, file: String, ours: String| HostError::Mismatch {
            path: path.to_path_buf(),
            field,
            file,
            ours,
        };
        if let Some(l) = self.layout.filter(|l| *l != file.layout) {
            return Err(mismatch("--layout", file.layout.to_string(), l.to_string()));
        }
        if let Some(b) = self.buffers.filter(|b| *b != file.buffers) {
            return Err(mismatch(
                "--buffers",
                file.buffers.to_string(),
                b.to_string(),
            ));
        }
        if let Some(s) = self.buffer_size.filter(|s| *s != file.buffer_size) {
            return Err(mismatch(
                "--buffer-size",
                file.buffer_size.to_string(),
                s.to_string(),
            ));
        }
        if let Some(a) = self.align.filter(|a| *a != file.align) {
            return Err(mismatch(
                "--align",
                format!("{:#x}", file.align),
                format!("{a:#x}"),
            ));
        }
        if let Some(v) = self.vring_size.filter(|v| *v != file.vring_size) {
            return Err(mismatch(
                "--vring-size",
                format!("{:#x}", file.vring_size),
                format!("{v:#x}"),
            ));
        }
        Ok(())
    }
}

/// How to set up one side.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The shared-memory file.
    pub path: PathBuf,
    /// Our side.
    pub side: Side,
    /// The geometry asked for.
    pub geometry: GeometrySpec,
    /// The doorbell asked for (driver: `None` is [`DoorbellMode::Socket`]; device: `None`
    /// takes the file's).
    pub doorbell: Option<DoorbellMode>,
    /// Where the sockets live (`/tmp`).
    pub socket_dir: PathBuf,
    /// The name sockets derive from, when not the file's name (a memfd opened through
    /// `/proc`).
    pub name: Option<String>,
    /// Device: how long to wait for the file to appear (`None`: a missing file is an error at
    /// once).
    pub wait_for_file: Option<Duration>,
    /// Device: how long to wait for a live driver once the file is there.
    pub wait_for_driver: Duration,
    /// How long [`HostEnv`]'s `wait` spins before it sleeps, in socket and futex modes.
    pub spin: Duration,
    /// How often the service thread looks at the peer.
    pub watch_period: Duration,
    /// Device side: whether to leave out doorbells while the driver sets
    /// `VRING_AVAIL_F_NO_INTERRUPT` (`None`: the core's default for the layout, on with a
    /// resource table, off with RPMsg-Lite's); see `rpmsg::Config::honour_no_interrupt`.
    pub honour_no_interrupt: Option<bool>,
}

impl SessionOptions {
    /// Options for `side` on `path` with the defaults: geometry and doorbell unset, sockets in
    /// `/tmp`, no waiting for the file, 5 s for the driver, no spinning, a 100 ms watch.
    pub fn new(path: impl Into<PathBuf>, side: Side) -> Self {
        Self {
            path: path.into(),
            side,
            geometry: GeometrySpec::default(),
            doorbell: None,
            socket_dir: PathBuf::from("/tmp"),
            name: None,
            wait_for_file: None,
            wait_for_driver: Duration::from_secs(5),
            spin: Duration::ZERO,
            watch_period: Duration::from_millis(100),
            honour_no_interrupt: None,
        }
    }

    /// `/dev/shm/NAME` for a bare name, the path itself when it contains a `/`.
    pub fn shm_path(name_or_path: &str) -> PathBuf {
        if name_or_path.contains('/') {
            PathBuf::from(name_or_path)
        } else {
            Path::new("/dev/shm").join(name_or_path)
        }
    }
}

/// What we know about the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerStatus {
    /// Not seen yet: its socket is missing or stale.
    Waiting,
    /// Its socket answers.
    Alive,
    /// It left cleanly: its state word says "closed", or its socket path vanished after it was
    /// seen (doorbell.rs section 5).
    Closed,
    /// Its socket refuses connections after it was seen (or said "ready"): killed or crashed.
    Died {
        /// Its process id, if it wrote one.
        pid: Option<u32>,
    },
}

/// Doorbell counters of one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DoorbellStats {
    /// Doorbells rung (datagrams sent, futex words bumped).
    pub rung: u64,
    /// Doorbells that found the peer's queue full (already pending).
    pub coalesced: u64,
    /// Doorbells nobody was there to receive.
    pub no_peer: u64,
    /// `FUTEX_WAKE` calls made (the peer was asleep).
    pub futex_wakes: u64,
    /// Doorbells received.
    pub received: u64,
    /// Datagrams of the wrong length, ignored.
    pub malformed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) rung: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) no_peer: AtomicU64,
    pub(crate) futex_wakes: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) malformed: AtomicU64,
}

/// One side of a two-process link.
#[derive(Debug)]
pub struct Session {
    file: SharedFile,
    side: Side,
    mode: DoorbellMode,
    socket: DoorbellSocket,
    owner: bool,
    pub(crate) spin: Duration,
    pub(crate) watch_period: Duration,
    honour_no_interrupt: Option<bool>,
    pub(crate) counters: Counters,
    /// Condition-variable wake-ups (socket and busy modes): a generation counter.
    pub(crate) generation: Mutex<u64>,
    pub(crate) cv: Condvar,
    /// The last generation (socket) or futex word value (futex) a waiter saw.
    pub(crate) consumed: AtomicU64,
    pub(crate) futex_consumed: AtomicU32,
    seen_peer: AtomicBool,
    /// A doorbell found no peer socket (socket mode): the driver rings again when the device
    /// appears, see [`Service`](crate::Service).
    pub(crate) lost_doorbell: AtomicBool,
    pub(crate) stop_service: AtomicBool,
    closed: AtomicBool,
    /// Driver: the rings were laid out again ([`Session::new_epoch`]) and no device has claimed
    /// them yet (doorbell.rs section 6).
    fresh_epoch: AtomicBool,
    /// The rings when the service thread saw the peer go, before the link shut down.
    end_rings: Mutex<Option<RingCounts>>,
    /// Driver: the device's process id when it was last seen alive in this epoch (0: none).
    seen_pid: AtomicU32,
}

impl Session {
    /// Sets up `opts.side`: [`Session::create`] for the driver, [`Session::attach`] for the
    /// device.
    ///
    /// # Errors
    ///
    /// As those.
    pub fn open(opts: &SessionOptions) -> Result<Self, HostError> {
        match opts.side {
            Side::Driver => Self::create(opts),
            Side::Device => Self::attach(opts),
        }
    }

    fn socket_paths(opts: &SessionOptions) -> Result<(PathBuf, PathBuf, String), HostError> {
        let name = match &opts.name {
            Some(n) => n.clone(),
            None => opts
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| {
                    HostError::Geometry(format!("{} has no file name", opts.path.display()))
                })?
                .to_string(),
        };
        let own = doorbell::socket_path(&opts.socket_dir, &name, opts.side)?;
        let peer = doorbell::socket_path(&opts.socket_dir, &name, opts.side.peer())?;
        Ok((own, peer, name))
    }

    /// Driver side: creates the file and binds the driver socket.
    ///
    /// # Errors
    ///
    /// [`HostError::AlreadyRunning`] when a live driver holds the socket, [`HostError::Geometry`],
    /// [`HostError::Io`], [`HostError::PathTooLong`].
    pub fn create(opts: &SessionOptions) -> Result<Self, HostError> {
        let (own, peer, _) = Self::socket_paths(opts)?;
        if let Probe::Alive = doorbell::probe(&own) {
            return Err(HostError::AlreadyRunning {
                side: Side::Driver,
                socket: own,
            });
        }
        let geometry = opts.geometry.resolve(Geometry::LITE_DEFAULT);
        geometry.validate()?;
        let mode = opts.doorbell.unwrap_or_default();
        let file = SharedFile::create(&opts.path, geometry, mode)?;
        file.set_pid(Side::Driver, std::process::id());
        let socket = match DoorbellSocket::bind(&own, &peer, Side::Driver) {
            Ok(s) => s,
            Err(e) => {
                file.remove();
                return Err(e);
            }
        };
        file.set_state(Side::Driver, SideState::Ready);
        Ok(Self::assemble(file, Side::Driver, mode, socket, true, opts))
    }

    /// Device side: waits for the file and a live driver, checks the file, binds the device
    /// socket.
    ///
    /// # Errors
    ///
    /// [`HostError::MissingFile`], [`HostError::PeerNotRunning`] (no live driver within
    /// `wait_for_driver`), [`HostError::TooSmall`], [`HostError::NotOurs`],
    /// [`HostError::Mismatch`], [`HostError::AlreadyRunning`], [`HostError::Io`].
    pub fn attach(opts: &SessionOptions) -> Result<Self, HostError> {
        Self::attach_until(opts, &|| false)
    }

    /// [`Session::attach`], giving up with [`HostError::Interrupted`] as soon as `stop` says so
    /// (it is asked every few milliseconds while we wait).
    ///
    /// # Errors
    ///
    /// As [`Session::attach`], and [`HostError::Interrupted`].
    pub fn attach_until(opts: &SessionOptions, stop: &dyn Fn() -> bool) -> Result<Self, HostError> {
        let (own, peer, _) = Self::socket_paths(opts)?;
        let start = Instant::now();
        // Wait for the file (only if asked to), then for a live driver.
        loop {
            if opts.path.exists() {
                break;
            }
            if stop() {
                return Err(HostError::Interrupted);
            }
            match opts.wait_for_file {
                Some(w) if start.elapsed() < w => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    return Err(HostError::MissingFile {
                        path: opts.path.clone(),
                    });
                }
            }
        }
        // A file that is not ours, or cut short, is refused at once rather than waited on.
        if !matches!(doorbell::probe(&peer), Probe::Alive) {
            drop(SharedFile::open(&opts.path)?);
        }
        let start = Instant::now();
        loop {
            if let Probe::Alive = doorbell::probe(&peer) {
                break;
            }
            if start.elapsed() >= opts.wait_for_driver {
                return Err(HostError::PeerNotRunning {
                    side: Side::Driver,
                    socket: peer,
                });
            }
            if stop() {
                return Err(HostError::Interrupted);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The driver binds its socket only after its file is in place: this is the new file.
        let file = SharedFile::open(&opts.path)?;
        opts.geometry.check(&file.geometry(), &opts.path)?;
        let mode = file.doorbell();
        if let Some(m) = opts.doorbell.filter(|m| *m != mode) {
            return Err(HostError::Mismatch {
                path: opts.path.clone(),
                field: "--doorbell",
                file: mode.to_string(),
                ours: m.to_string(),
            });
        }
        let socket = DoorbellSocket::bind(&own, &peer, Side::Device)?;
        file.set_pid(Side::Device, std::process::id());
        if let Err(e) = claim_rings(&file, &peer, opts.wait_for_driver, stop) {
            socket.unlink();
            return Err(e);
        }
        file.set_state(Side::Device, SideState::Ready);
        Ok(Self::assemble(
            file,
            Side::Device,
            mode,
            socket,
            false,
            opts,
        ))
    }

    fn assemble(
        file: SharedFile,
        side: Side,
        mode: DoorbellMode,
        socket: DoorbellSocket,
        owner: bool,
        opts: &SessionOptions,
    ) -> Self {
        Self {
            file,
            side,
            mode,
            socket,
            owner,
            spin: opts.spin,
            watch_period: opts.watch_period,
            honour_no_interrupt: opts.honour_no_interrupt,
            counters: Counters::default(),
            generation: Mutex::new(0),
            cv: Condvar::new(),
            consumed: AtomicU64::new(0),
            futex_consumed: AtomicU32::new(0),
            seen_peer: AtomicBool::new(false),
            lost_doorbell: AtomicBool::new(false),
            stop_service: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            fresh_epoch: AtomicBool::new(false),
            end_rings: Mutex::new(None),
            seen_pid: AtomicU32::new(0),
        }
    }

    /// The shared file.
    pub fn file(&self) -> &SharedFile {
        &self.file
    }

    /// Our side.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The doorbell in use.
    pub fn doorbell(&self) -> DoorbellMode {
        self.mode
    }

    /// The doorbell sockets.
    pub fn socket(&self) -> &DoorbellSocket {
        &self.socket
    }

    /// The file's geometry.
    pub fn geometry(&self) -> Geometry {
        self.file.geometry()
    }

    /// The core configuration for our side (name service on, the core's timeouts, and
    /// [`SessionOptions::honour_no_interrupt`] when given); adjust it and pass it to
    /// [`Session::link`].
    ///
    /// # Errors
    ///
    /// [`HostError::Geometry`].
    pub fn config(&self) -> Result<Config, HostError> {
        let mut cfg = self.geometry().config(self.side.role())?;
        if let Some(on) = self.honour_no_interrupt {
            cfg.honour_no_interrupt = on;
        }
        Ok(cfg)
    }

    /// A link over the file, not started: `N` descriptors at most per ring (at least the
    /// buffer count), `EPTS` endpoints.
    ///
    /// # Errors
    ///
    /// [`HostError::Link`] when the core refuses the configuration.
    pub fn link<const N: usize, const EPTS: usize>(
        &self,
        config: Config,
    ) -> Result<HostLink<'_, N, EPTS>, HostError> {
        let region = self.file.region();
        Ok(Link::new(
            region,
            HostPlatform::new(self),
            HostEnv::new(self),
            config,
        )?)
    }

    /// Counters of the doorbells.
    pub fn doorbell_stats(&self) -> DoorbellStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DoorbellStats {
            rung: l(&c.rung),
            coalesced: l(&c.coalesced),
            no_peer: l(&c.no_peer),
            futex_wakes: l(&c.futex_wakes),
            received: l(&c.received),
            malformed: l(&c.malformed),
        }
    }

    /// Looks at the other side now: its state word, a `connect` to its socket, its state word
    /// again.
    ///
    /// A side binds its socket before it writes "ready", and writes "closed" before it unlinks
    /// the socket (doorbell.rs section 2 and 5), so the two readings of the state word bracket
    /// the probe: when they differ the peer moved while we looked (it came up, or replaced a
    /// stale socket of an earlier process), and we look again rather than judge from a mixed
    /// picture. Then: "closed" is a clean exit; a socket that answers is alive; a socket path
    /// that vanished after the peer was seen (or said "ready") is a clean exit too (section 5);
    /// a socket that refuses connections after that is a death.
    ///
    /// Restarts (section 6): a driver whose rings are claimed by an attach number older than
    /// the latest one, or that sees another pid behind the device socket than the one it saw
    /// alive, reports the device it served as gone; after [`Session::new_epoch`], until a
    /// device claims the rings or is seen alive, a dead or closed verdict about the socket path
    /// (the previous device's) is [`PeerStatus::Waiting`]; a device socket with no device
    /// attached to our file is not ours yet. A device whose mapped file is no longer the one at
    /// the path reports its driver as gone.
    pub fn peer(&self) -> PeerStatus {
        let peer = self.side.peer();
        // Doorbell.rs section 6, read before the probe.
        let fresh = match self.side {
            Side::Driver => {
                let rings_for = self.file.rings_for().load(Ordering::Acquire);
                if rings_for != 0 {
                    self.fresh_epoch.store(false, Ordering::Relaxed);
                    if self.file.attach_counter().load(Ordering::Acquire) != rings_for {
                        // A newer device bound the socket: the one our rings are for is gone.
                        // The newer one writes "ready" only once it has claimed the rings, so
                        // the state word is still the old device's.
                        return match self.file.state(peer) {
                            SideState::Closed => PeerStatus::Closed,
                            _ => PeerStatus::Died { pid: None },
                        };
                    }
                }
                // A device that does not claim (a C peer of sections 1 to 5) is ours once
                // seen alive in this epoch; its death after that is real.
                rings_for == 0
                    && self.fresh_epoch.load(Ordering::Relaxed)
                    && !self.seen_peer.load(Ordering::Relaxed)
            }
            Side::Device => {
                if !self.file.is_at_path() {
                    // A new driver replaced our file (or ours removed it): ours is gone, even
                    // if the socket at the path answers (the new driver's).
                    return match self.file.state(peer) {
                        SideState::Closed => PeerStatus::Closed,
                        _ => PeerStatus::Died {
                            pid: self.file.pid(peer),
                        },
                    };
                }
                false
            }
        };
        let status = self.look(peer);
        match status {
            // Fresh rings nobody claimed yet: the verdict is about the previous device.
            PeerStatus::Closed | PeerStatus::Died { .. } if fresh => PeerStatus::Waiting,
            s => s,
        }
    }

    /// [`Session::peer`]'s look at the socket and the state word.
    fn look(&self, peer: Side) -> PeerStatus {
        let mut before = self.file.state(peer);
        // A peer cannot keep moving: it comes up once and leaves once. Three looks settle it.
        for _ in 0..3 {
            let probe = doorbell::probe(self.socket.peer_path());
            after_probe();
            let after = self.file.state(peer);
            if after == SideState::Closed {
                return PeerStatus::Closed;
            }
            if after != before {
                before = after;
                continue;
            }
            return self.judge(probe, after);
        }
        // Still moving after three looks: say what the last look showed, without a verdict.
        if self.seen_peer.load(Ordering::Relaxed) {
            PeerStatus::Alive
        } else {
            PeerStatus::Waiting
        }
    }

    /// What one consistent look (the state word the same before and after the probe) means.
    fn judge(&self, probe: Probe, state: SideState) -> PeerStatus {
        let seen = self.seen_peer.load(Ordering::Relaxed) || state == SideState::Ready;
        match probe {
            // Driver: a device socket answers, but no device attached to this file (no pid, no
            // state word): the device of an earlier driver's file is still there, about to
            // leave it and attach to ours (doorbell.rs section 6). Not ours yet.
            Probe::Alive
                if self.side == Side::Driver
                    && state == SideState::Absent
                    && self.file.pid(Side::Device).is_none() =>
            {
                PeerStatus::Waiting
            }
            Probe::Alive => {
                if self.side == Side::Driver {
                    // Another process in the device's place since we saw it (a device that does
                    // not claim rings, restarted between two looks): the one we served is gone.
                    let pid = self.file.pid(Side::Device).unwrap_or(0);
                    let before = self.seen_pid.load(Ordering::Relaxed);
                    if before != 0 && pid != 0 && pid != before {
                        return PeerStatus::Died { pid: Some(before) };
                    }
                    if pid != 0 {
                        self.seen_pid.store(pid, Ordering::Relaxed);
                    }
                }
                self.seen_peer.store(true, Ordering::Relaxed);
                PeerStatus::Alive
            }
            // Nobody listens at a path the peer bound: killed or crashed.
            Probe::Refused if seen => PeerStatus::Died {
                pid: self.file.pid(self.side.peer()),
            },
            // The path vanished: a clean exit (section 5), even without a "closed" word.
            Probe::Absent if seen => PeerStatus::Closed,
            // Not started yet, or a stale socket of an earlier process.
            Probe::Refused | Probe::Absent => PeerStatus::Waiting,
            Probe::Error(_) if self.seen_peer.load(Ordering::Relaxed) => PeerStatus::Alive,
            Probe::Error(_) => PeerStatus::Waiting,
        }
    }

    /// Waits up to `timeout` for the other side's socket to answer.
    ///
    /// # Errors
    ///
    /// [`HostError::PeerNotRunning`], or the peer's failure if it came and went.
    pub fn wait_for_peer(&self, timeout: Duration) -> Result<(), HostError> {
        let start = Instant::now();
        loop {
            match self.peer() {
                PeerStatus::Alive => return Ok(()),
                PeerStatus::Closed => {
                    return Err(HostError::PeerClosed {
                        side: self.side.peer(),
                    });
                }
                PeerStatus::Died { pid } => {
                    return Err(HostError::PeerDied {
                        side: self.side.peer(),
                        pid,
                    });
                }
                PeerStatus::Waiting if start.elapsed() >= timeout => {
                    return Err(HostError::PeerNotRunning {
                        side: self.side.peer(),
                        socket: self.socket.peer_path().to_path_buf(),
                    });
                }
                PeerStatus::Waiting => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Turns a link error into what happened: the peer died, closed (or, alive, shut the link
    /// down), never came, or is alive but silent (`timeout` is the one that expired); anything
    /// else stays a link error.
    pub fn explain(&self, e: rpmsg::Error, timeout: Duration) -> HostError {
        use rpmsg::Error as E;
        let peer_related = matches!(e, E::Timeout | E::LinkDown | E::NotReady | E::NoBuffer);
        if !peer_related {
            return HostError::Link(e);
        }
        let side = self.side.peer();
        match self.peer() {
            PeerStatus::Died { pid } => HostError::PeerDied { side, pid },
            PeerStatus::Closed => HostError::PeerClosed { side },
            PeerStatus::Waiting => HostError::PeerNotRunning {
                side,
                socket: self.socket.peer_path().to_path_buf(),
            },
            PeerStatus::Alive if matches!(e, E::Timeout | E::NoBuffer) => HostError::PeerSilent {
                side,
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            },
            // Alive, and the link is down: the peer shut it down (a driver resets the device).
            PeerStatus::Alive if e == E::LinkDown => HostError::PeerClosed { side },
            PeerStatus::Alive => HostError::Link(e),
        }
    }

    /// Wakes every thread of ours waiting in the link's environment.
    pub fn wake_local(&self) {
        crate::port::wake(self);
    }

    /// Leaves cleanly: marks us closed in the host block, unlinks our socket, and (driver) the
    /// file. Called by `Drop`; calling it twice does nothing.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.stop_service.store(true, Ordering::Release);
        let peer_died = matches!(self.peer(), PeerStatus::Died { .. });
        self.file.set_state(self.side, SideState::Closed);
        self.socket.unlink();
        if self.owner {
            self.file.remove();
        }
        if peer_died {
            // Tidy up after a dead peer: its stale socket, and the file it created if the path
            // still names our file (a new driver may have replaced it).
            if let Probe::Refused = doorbell::probe(self.socket.peer_path()) {
                let _ = std::fs::remove_file(self.socket.peer_path());
            }
            if !self.owner && self.file.is_at_path() {
                self.file.remove();
            }
        }
    }

    /// Driver side: lays the rings out again as a new epoch after the device died, closed or
    /// was replaced (doorbell.rs section 6): zeroes the whole region, writes it out as at
    /// creation (the resource table with status 0), clears the device's futex waiter count, and
    /// hands the fresh rings to the next device to claim them. Takes `&mut self`, so no link of
    /// this session exists any more: nothing of the old epoch can be delivered in the new one.
    ///
    /// # Errors
    ///
    /// [`HostError::Geometry`] on the device side (the driver owns the layout) or when the
    /// region cannot be written.
    pub fn new_epoch(&mut self) -> Result<(), HostError> {
        if self.side != Side::Driver {
            return Err(HostError::Geometry(
                "only the driver side lays out the rings; a device attaches again instead".into(),
            ));
        }
        let region = self.file.region();
        region
            .fill(0, region.len(), 0)
            .map_err(|e| HostError::Geometry(format!("clearing the region: {e}")))?;
        self.geometry().write_initial(&region)?;
        self.file.waiters(Side::Device).store(0, Ordering::SeqCst);
        // The next device writes "ready" only after it claimed, which it can do only after the
        // store of rings-for below: this cannot hide it. (Its pid, written before it claims,
        // is left alone.)
        self.file.set_state(Side::Device, SideState::Absent);
        self.seen_pid.store(0, Ordering::Relaxed);
        self.file
            .word(crate::file::field::EPOCHS)
            .fetch_add(1, Ordering::Relaxed);
        self.seen_peer.store(false, Ordering::Relaxed);
        self.lost_doorbell.store(false, Ordering::Relaxed);
        self.fresh_epoch.store(true, Ordering::Relaxed);
        *self.end_rings.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // Release: a device that reads 0 here sees the fresh rings.
        self.file.rings_for().store(0, Ordering::Release);
        Ok(())
    }

    /// Device side, before attaching again after its driver went: marks us closed in this
    /// file and unlinks our socket, without [`Session::close`]'s tidying after a dead driver (a
    /// new driver may be binding its socket or renaming its file at this very moment).
    pub fn close_for_restart(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.stop_service.store(true, Ordering::Release);
        self.file.set_state(self.side, SideState::Closed);
        self.socket.unlink();
    }

    /// How many buffers each ring has out at the device now, read from the ring indices in
    /// shared memory (see [`RingCounts`]).
    pub fn ring_counts(&self) -> RingCounts {
        let g = self.geometry();
        let region = self.file.region();
        let vrings = match g.layout {
            LayoutKind::Lite => {
                let (v0, v1, _) = g.lite().offsets();
                [v0, v1]
            }
            LayoutKind::RscTable => g.rsc_offsets().map_or([0, 0], |o| o.vrings),
        };
        let ring = rpmsg::wire::vring::VringLayout::new(g.buffers, g.align as usize).ok();
        let idx = |base: usize, off: Option<usize>| -> u16 {
            off.and_then(|o| region.read_u16(base + o + 2).ok())
                .unwrap_or(0)
        };
        let avail = |v: usize| idx(vrings[v], ring.map(|r| r.avail));
        let used = |v: usize| idx(vrings[v], ring.map(|r| r.used));
        let mut from_driver = avail(1).wrapping_sub(used(1));
        // An RPMsg-Lite master pre-fills vring 1's used ring with its N transmit buffers, so
        // there the difference runs N below ours (our driver posts nothing ahead). A count
        // above N cannot be real: it is that offset.
        if g.layout == LayoutKind::Lite && from_driver > g.buffers {
            from_driver = from_driver.wrapping_add(g.buffers);
        }
        RingCounts {
            at_device_to_driver: avail(0).wrapping_sub(used(0)),
            at_device_from_driver: from_driver,
            buffers: g.buffers,
        }
    }

    /// The rings as the [`Service`](crate::Service) thread found them when it saw the other
    /// side go (after taking what it had published, before our link shut down and announced
    /// the destruction of our endpoints): `None` while the other side is there.
    pub fn ring_counts_at_end(&self) -> Option<RingCounts> {
        *self.end_rings.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn note_end_rings(&self) {
        *self.end_rings.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.ring_counts());
    }

    /// Whether [`Session::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Device side of doorbell.rs section 6: takes the next attach number and waits until the
/// rings are laid out for it (or claims fresh ones), while the driver lives.
fn claim_rings(
    file: &SharedFile,
    driver_socket: &Path,
    wait: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<u32, HostError> {
    let counter = file.attach_counter();
    let mut n = counter.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
    if n == 0 {
        n = counter.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
    }
    let rings_for = file.rings_for();
    let start = Instant::now();
    let mut looked = Instant::now();
    loop {
        let r = rings_for.load(Ordering::Acquire);
        if r == n
            || (r == 0
                && rings_for
                    .compare_exchange(0, n, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok())
        {
            return Ok(n);
        }
        if stop() {
            return Err(HostError::Interrupted);
        }
        if looked.elapsed() >= Duration::from_millis(20) {
            looked = Instant::now();
            if file.state(Side::Driver) == SideState::Closed {
                return Err(HostError::PeerClosed { side: Side::Driver });
            }
            if !matches!(doorbell::probe(driver_socket), Probe::Alive) || !file.is_at_path() {
                return Err(HostError::PeerDied {
                    side: Side::Driver,
                    pid: file.pid(Side::Driver),
                });
            }
            if start.elapsed() >= wait {
                return Err(HostError::PeerSilent {
                    side: Side::Driver,
                    timeout_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                });
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Buffers out at the device on each ring, read from the ring indices in shared memory: what
/// the driver made available and the device has not returned yet. Idle (no message in
/// flight, every received buffer given back) is `at_device_from_driver == 0` and
/// `at_device_to_driver == buffers`: every receive buffer of the driver posted, every transmit
/// buffer returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingCounts {
    /// The driver-to-device ring (vring 1): messages of the driver the device has not returned.
    pub at_device_from_driver: u16,
    /// The device-to-driver ring (vring 0): empty receive buffers of the driver the device may
    /// fill.
    pub at_device_to_driver: u16,
    /// Buffers per direction.
    pub buffers: u16,
}

impl RingCounts {
    /// Whether the rings are idle: nothing in flight, every receive buffer posted.
    pub fn is_idle(&self) -> bool {
        self.at_device_from_driver == 0 && self.at_device_to_driver == self.buffers
    }
}

/// Test hook: runs right after each socket probe of [`Session::peer`], so a test can play the
/// peer's moves at exactly that point. Does nothing outside this crate's unit tests.
#[cfg(not(test))]
#[inline(always)]
fn after_probe() {}

#[cfg(test)]
std::thread_local! {
    static AFTER_PROBE: std::cell::RefCell<Option<Box<dyn FnMut()>>> =
        const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
fn after_probe() {
    AFTER_PROBE.with(|h| {
        if let Some(f) = h.borrow_mut().as_mut() {
            f();
        }
    });
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doorbell::DoorbellSocket;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::atomic::AtomicU32;

    /// A driver session on a scratch file.
    fn driver(tag: &str) -> Session {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "rpmsg-s{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut o = SessionOptions::new(SessionOptions::shm_path(&name), Side::Driver);
        o.socket_dir = dir;
        Session::create(&o).unwrap()
    }

    /// The device, played by hand on its own mapping of the file.
    struct Device {
        file: SharedFile,
        own: PathBuf,
        peer: PathBuf,
        sock: Option<DoorbellSocket>,
    }

    impl Device {
        fn of(s: &Session) -> Self {
            Self {
                file: SharedFile::open(s.file().path()).unwrap(),
                own: s.socket().peer_path().to_path_buf(),
                peer: s.socket().own_path().to_path_buf(),
                sock: None,
            }
        }

        /// Start-up in the order `Session::attach` and doorbell.rs section 2 give: bind the
        /// socket, then write "ready".
        fn come_up(&mut self) {
            self.sock = Some(DoorbellSocket::bind(&self.own, &self.peer, Side::Device).unwrap());
            self.file.set_pid(Side::Device, std::process::id());
            self.file.set_state(Side::Device, SideState::Ready);
        }

        /// A clean exit that only unlinks the socket (doorbell.rs section 5: a vanished path
        /// is a clean exit), without writing "closed".
        fn unlink_only(&mut self) {
            if let Some(s) = self.sock.take() {
                s.unlink();
            }
        }
    }

    /// Runs `f` once, right after the next socket probe of `Session::peer` on this thread.
    fn once_after_probe(f: impl FnOnce() + 'static) {
        let mut f = Some(f);
        AFTER_PROBE.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                if let Some(f) = f.take() {
                    f();
                }
            }));
        });
    }

    fn no_hook() {
        AFTER_PROBE.with(|h| *h.borrow_mut() = None);
    }

    fn cleanup(s: Session) {
        let dir = s.socket().own_path().parent().unwrap().to_path_buf();
        s.close();
        drop(s);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Item 3: the device binds and writes "ready" between our probe (which found no socket)
    /// and our read of its state word. That is a device coming up, not a dead one.
    #[test]
    fn item3_device_coming_up_during_the_probe_is_not_dead() {
        let s = driver("up");
        assert_eq!(s.peer(), PeerStatus::Waiting);
        let dev = Rc::new(RefCell::new(Device::of(&s)));
        let d = Rc::clone(&dev);
        once_after_probe(move || d.borrow_mut().come_up());
        let status = s.peer();
        no_hook();
        assert!(
            dev.borrow().sock.is_some(),
            "the device came up during the probe"
        );
        assert!(
            matches!(status, PeerStatus::Waiting | PeerStatus::Alive),
            "a device that came up during the probe was judged {status:?}"
        );
        assert_eq!(s.peer(), PeerStatus::Alive);
        drop(dev);
        cleanup(s);
    }

    /// Item 3, the other order: the device was seen alive, then its socket path vanished
    /// without a "closed" state word. doorbell.rs section 5 calls that a clean exit.
    #[test]
    fn item3_vanished_socket_path_is_a_clean_exit() {
        let s = driver("gone");
        let mut dev = Device::of(&s);
        dev.come_up();
        assert_eq!(s.peer(), PeerStatus::Alive);
        dev.unlink_only();
        assert_eq!(dev.file.state(Side::Device), SideState::Ready);
        assert_eq!(s.peer(), PeerStatus::Closed);
        // Not seen alive by us, but its state word said ready: the same clean exit.
        let s2 = driver("gone2");
        let mut dev2 = Device::of(&s2);
        dev2.come_up();
        dev2.unlink_only();
        assert_eq!(s2.peer(), PeerStatus::Closed);
        cleanup(s);
        cleanup(s2);
    }

    /// Item 3: a killed device (its socket stays, nobody listens) is still reported dead, and
    /// a stale socket left by an earlier process before this one came up is no death.
    #[test]
    fn item3_refused_socket_after_ready_is_still_a_death() {
        let s = driver("dead");
        let mut dev = Device::of(&s);
        dev.come_up();
        assert_eq!(s.peer(), PeerStatus::Alive);
        // Dropped without unlinking: what a killed process leaves.
        dev.sock = None;
        assert_eq!(
            s.peer(),
            PeerStatus::Died {
                pid: Some(std::process::id())
            }
        );
        cleanup(s);
        // A stale device socket from before, then the new device replaces it and writes
        // "ready" between our probe (refused) and our read of the state word.
        let s = driver("stale");
        let mut old = Device::of(&s);
        old.sock = Some(DoorbellSocket::bind(&old.own, &old.peer, Side::Device).unwrap());
        old.sock = None;
        assert_eq!(
            s.peer(),
            PeerStatus::Waiting,
            "a stale socket is not a peer"
        );
        let dev = Rc::new(RefCell::new(Device::of(&s)));
        let d = Rc::clone(&dev);
        once_after_probe(move || d.borrow_mut().come_up());
        let status = s.peer();
        no_hook();
        assert!(
            matches!(status, PeerStatus::Waiting | PeerStatus::Alive),
            "a device that replaced a stale socket during the probe was judged {status:?}"
        );
        assert_eq!(s.peer(), PeerStatus::Alive);
        drop(dev);
        cleanup(s);
    }

    /// Options for a device attaching to `s`'s file, with its socket directory.
    fn device_opts(s: &Session) -> SessionOptions {
        let mut o = SessionOptions::new(s.file().path(), Side::Device);
        o.socket_dir = s.socket().own_path().parent().unwrap().to_path_buf();
        o.wait_for_driver = Duration::from_secs(120);
        o
    }

    /// Issue 15, doorbell.rs section 6: a device that comes after another one used the rings
    /// waits, touching nothing, until the driver has laid them out again; then it finds them as
    /// new. Before, it attached at once to the rings the previous device left mid-flow.
    #[test]
    fn issue15_next_device_waits_for_fresh_rings() {
        let mut s = driver("claim");
        let opts = device_opts(&s);
        let dev1 = Session::attach(&opts).unwrap();
        assert_eq!(s.file().rings_for().load(Ordering::Relaxed), 1);
        assert_eq!(s.peer(), PeerStatus::Alive);
        // What a session leaves in shared memory.
        {
            let region = s.file().region();
            region.fill(0, region.len(), 0xa5).unwrap();
        }
        dev1.close_for_restart();
        drop(dev1);
        let (tx, rx) = std::sync::mpsc::channel();
        let o = opts.clone();
        let next = std::thread::spawn(move || {
            let r = Session::attach(&o);
            tx.send(()).unwrap();
            r
        });
        let start = Instant::now();
        while s.file().attach_counter().load(Ordering::Acquire) != 2 {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no second attach"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Attach number 2 cannot claim rings laid out for 1.
        assert!(rx.try_recv().is_err(), "the next device did not wait");
        assert_eq!(s.peer(), PeerStatus::Closed, "the first device left");
        s.new_epoch().unwrap();
        let dev2 = next.join().unwrap().unwrap();
        assert_eq!(s.file().rings_for().load(Ordering::Relaxed), 2);
        assert_eq!(s.file().ring_epochs(), 1);
        let g = s.geometry();
        let region = s.file().region();
        let (v0, _, pool) = g.lite().offsets();
        for off in [v0, pool, region.len() - 1] {
            assert_eq!(
                region.read_u8(off).unwrap(),
                0,
                "byte {off:#x} of the old epoch"
            );
        }
        assert_eq!(s.peer(), PeerStatus::Alive);
        drop(dev2);
        cleanup(s);
    }

    /// Issue 15: after a new epoch, the previous device's stale socket is not a death (the
    /// driver would lay the rings out again under the next device); once a device claims the
    /// rings, its leaving is seen again.
    #[test]
    fn issue15_fresh_epoch_ignores_the_previous_device() {
        let mut s = driver("fresh");
        let mut dev = Device::of(&s);
        dev.come_up();
        assert_eq!(s.peer(), PeerStatus::Alive);
        dev.sock = None; // killed: the socket path stays, nobody listens
        assert!(matches!(s.peer(), PeerStatus::Died { .. }));
        s.new_epoch().unwrap();
        assert_eq!(s.peer(), PeerStatus::Waiting);
        let next = Session::attach(&device_opts(&s)).unwrap();
        assert_eq!(s.peer(), PeerStatus::Alive);
        drop(next);
        assert_eq!(s.peer(), PeerStatus::Closed);
        cleanup(s);
    }

    /// Issue 15: a device socket that answers while no device attached to our file (no pid,
    /// no state word) belongs to a device still on an earlier driver's file: not ours yet.
    #[test]
    fn issue15_device_of_another_file_is_not_ours() {
        let s = driver("other");
        let mut dev = Device::of(&s);
        dev.sock = Some(DoorbellSocket::bind(&dev.own, &dev.peer, Side::Device).unwrap());
        assert_eq!(s.peer(), PeerStatus::Waiting);
        dev.file.set_pid(Side::Device, std::process::id());
        dev.file.set_state(Side::Device, SideState::Ready);
        assert_eq!(s.peer(), PeerStatus::Alive);
        drop(dev);
        cleanup(s);
    }

    /// Issue 15: a device whose file a new driver replaced (renamed a new one over the path)
    /// sees its driver gone, although the socket at the path answers.
    #[test]
    fn issue15_device_sees_its_file_replaced() {
        let s = driver("replaced");
        let dev = Session::attach(&device_opts(&s)).unwrap();
        assert_eq!(dev.peer(), PeerStatus::Alive);
        let newer = SharedFile::create(s.file().path(), s.geometry(), s.doorbell()).unwrap();
        assert_eq!(
            dev.peer(),
            PeerStatus::Died {
                pid: Some(std::process::id())
            }
        );
        drop(newer);
        dev.close_for_restart();
        drop(dev);
        cleanup(s);
    }

    /// Issue 15: a device that does not claim rings (a C peer of doorbell.rs sections 1 to 5)
    /// and was restarted between two looks is told apart by its pid word: the one we served is
    /// gone, and after the new epoch the new one is ours.
    #[test]
    fn issue15_device_restarted_between_looks_is_seen_by_its_pid() {
        let mut s = driver("pid");
        let mut dev = Device::of(&s);
        dev.come_up();
        dev.file.set_pid(Side::Device, 1111);
        assert_eq!(s.peer(), PeerStatus::Alive);
        // Killed, and the next process bound the socket and wrote its pid before we looked.
        dev.sock = None;
        dev.come_up();
        dev.file.set_pid(Side::Device, 2222);
        assert_eq!(s.peer(), PeerStatus::Died { pid: Some(1111) });
        s.new_epoch().unwrap();
        assert_eq!(s.peer(), PeerStatus::Alive);
        drop(dev);
        cleanup(s);
    }
}
