//! Doorbells between the two processes, and the socket protocol that is their documented
//! default.
//!
//! # The socket protocol
//!
//! Language-neutral, so a C peer implements it with `socket`, `bind`, `sendto` and `recv`:
//!
//! 1. **Paths.** For a shared-memory file whose file name is `NAME` (`/dev/shm/NAME`, or any
//!    path ending in `NAME`), each side has a UNIX datagram socket
//!    `SOCKDIR/rpmsg-NAME.driver.sock` and `SOCKDIR/rpmsg-NAME.device.sock`; `SOCKDIR` is
//!    `/tmp` unless both sides are told otherwise. The whole path must fit `sun_path` (107
//!    bytes).
//! 2. **Who binds what.** Each side binds its *own* path (`SOCK_DGRAM`) and never connects the
//!    receiving socket; it rings the other side by `sendto` to the *other* path. The driver
//!    binds after its shared-memory file is in place; the device binds after it mapped that
//!    file. Before binding, a side `connect`s a scratch socket to its own path: if that
//!    succeeds another process plays this side and we stop; if it is refused the file is a
//!    stale socket of a dead process and is removed. On a clean exit a side unlinks its path.
//! 3. **Bytes.** One datagram per doorbell, exactly 4 bytes: the notify id, little-endian
//!    `u32` (RPMsg-Lite layout: `(link_id << 1) | vring`; resource-table layout: the vring's
//!    `notifyid`, 0 or 1). Datagrams of any other length are ignored and counted.
//! 4. **Semantics.** A doorbell means "look at the rings". Spurious doorbells are harmless, and
//!    a doorbell that finds the receiver's queue full (`EAGAIN`) is dropped: one is already
//!    pending and the receiver scans every ring when it wakes. Senders never block.
//! 5. **Liveness.** A side is alive while its socket accepts a `connect`. `ECONNREFUSED` after
//!    the side was seen alive means it died (killed or crashed: the path stays, nobody
//!    listens); the path vanishing, or its state word in the host block saying "closed", means
//!    it left cleanly. A side binds before it writes "ready" and writes "closed" before it
//!    unlinks, so an observer reads the state word, probes, and reads it again: if the two
//!    readings differ the side moved while it looked, and it looks again (see
//!    [`Session::peer`](crate::Session::peer)).
//! 6. **Restarts.** Either side may die and a new process take its place on the same path, any
//!    number of times; the rings a dead peer touched are never handed to the next one as they
//!    are. Two host-block words arbitrate (see [`file`](crate::file)): the *attach counter*
//!    and *rings-for*, the attach number the rings are laid out for (0: fresh, unclaimed).
//!    * A device binds its socket, then takes `n = attach counter + 1` (atomic increment,
//!      skipping 0), then claims the rings: it may start once rings-for is `n`, or after it
//!      changed rings-for from 0 to `n` itself (compare-and-swap). Until then it waits, and it
//!      touches no ring.
//!    * A driver whose device died or closed (section 5), or whose rings-for is neither 0 nor
//!      the attach counter (a newer device took the socket, so the one the rings are for is
//!      gone), stops using the rings, zeroes the whole region, writes it out again as it did at
//!      creation, clears the device's futex waiter count and state word, and stores
//!      rings-for = 0 (release).
//!      Until a device claims the fresh rings, a dead or closed verdict about the socket path
//!      is about the previous device and is not acted on. A driver reads rings-for *before* it
//!      probes, so a claimed value means the probe saw the claimant's socket.
//!    * A new driver creates a new file (a new inode, renamed over the path). A device whose
//!      mapped file no longer is the one at the path treats its driver as gone, even when the
//!      socket at the path answers (that is the new driver's).
//!
//!    A device that ignores these words (a C peer of sections 1 to 5) leaves the counter and
//!    rings-for at 0. A driver tells its restarts apart by the pid word: a different non-zero
//!    pid behind a live socket means the device it served is gone. Such a device must not read
//!    ring indices before the driver's first kick (RPMsg-Lite's remote waits for it).
//!
//! The receiving side runs one thread that `recv`s datagrams and calls
//! [`Link::handle_notify`](rpmsg::Link::handle_notify) with the id; see
//! [`Service`](crate::Service).
//!
//! # Other modes
//!
//! [`DoorbellMode::Futex`] rings by incrementing the other side's 32-bit word in the host block
//! and calling `FUTEX_WAKE` (shared, not private) only when that side sleeps in `FUTEX_WAIT`;
//! [`DoorbellMode::BusyPoll`] does not ring at all, and waiting spins. In every mode each side
//! still binds its socket, for liveness.

use crate::error::HostError;
use std::fmt;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A side of the link, as the socket and host-block names spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The virtio driver (host, master): creates the file, owns the buffers.
    Driver,
    /// The virtio device (remote).
    Device,
}

impl Side {
    /// The other side.
    pub fn peer(self) -> Self {
        match self {
            Self::Driver => Self::Device,
            Self::Device => Self::Driver,
        }
    }

    /// `"driver"` or `"device"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Driver => "driver",
            Self::Device => "device",
        }
    }

    /// The core's role.
    pub fn role(self) -> rpmsg::Role {
        match self {
            Self::Driver => rpmsg::Role::Driver,
            Self::Device => rpmsg::Role::Device,
        }
    }
}

impl From<rpmsg::Role> for Side {
    fn from(r: rpmsg::Role) -> Self {
        match r {
            rpmsg::Role::Driver => Self::Driver,
            rpmsg::Role::Device => Self::Device,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Side {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "driver" | "host" => Ok(Self::Driver),
            "device" | "remote" => Ok(Self::Device),
            _ => Err(format!("unknown role {s:?}; use driver or device")),
        }
    }
}

/// How one side rings the other and waits to be rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DoorbellMode {
    /// A 4-byte datagram to the other side's UNIX socket; a thread receives ours. The default.
    #[default]
    Socket,
    /// A futex word per side in the host block: no system call while both sides are busy.
    Futex,
    /// No doorbell: both sides poll the rings. Lowest latency, one core busy per side.
    BusyPoll,
}

impl DoorbellMode {
    /// The command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Socket => "socket",
            Self::Futex => "futex",
            Self::BusyPoll => "busy-poll",
        }
    }

    pub(crate) fn code(self) -> u32 {
        match self {
            Self::Socket => 1,
            Self::Futex => 2,
            Self::BusyPoll => 3,
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::Socket),
            2 => Some(Self::Futex),
            3 => Some(Self::BusyPoll),
            _ => None,
        }
    }
}

impl fmt::Display for DoorbellMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DoorbellMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "socket" => Ok(Self::Socket),
            "futex" => Ok(Self::Futex),
            "busy-poll" | "busy" | "poll" => Ok(Self::BusyPoll),
            _ => Err(format!(
                "unknown doorbell {s:?}; use socket, futex or busy-poll"
            )),
        }
    }
}

/// Bytes of one doorbell datagram.
pub const DOORBELL_LEN: usize = 4;
/// Longest socket path (`sun_path` is 108 bytes with the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// The datagram that rings notify id `id`.
pub fn encode(id: u32) -> [u8; DOORBELL_LEN] {
    id.to_le_bytes()
}

/// The notify id a datagram carries, if it is a doorbell (exactly 4 bytes).
pub fn decode(datagram: &[u8]) -> Option<u32> {
    let bytes: [u8; DOORBELL_LEN] = datagram.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// The socket path of `side` for the shared-memory file named `name` (its file name), in
/// `dir`.
///
/// # Errors
///
/// [`HostError::PathTooLong`] when the path does not fit a UNIX socket address.
pub fn socket_path(dir: &Path, name: &str, side: Side) -> Result<PathBuf, HostError> {
    let path = dir.join(format!("rpmsg-{name}.{side}.sock"));
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(HostError::PathTooLong { path });
    }
    Ok(path)
}

/// What a `connect` to a side's socket says about it.
#[derive(Debug)]
pub enum Probe {
    /// Someone is bound there and listening.
    Alive,
    /// No socket file: not started yet, or left cleanly.
    Absent,
    /// The file is there but nobody listens: the process died without unlinking it.
    Refused,
    /// Something else went wrong (permissions, not a socket).
    Error(io::Error),
}

/// Looks whether a process is bound at `path`.
pub fn probe(path: &Path) -> Probe {
    let sock = match UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => return Probe::Error(e),
    };
    match sock.connect(path) {
        Ok(()) => Probe::Alive,
        Err(e) => match e.kind() {
            io::ErrorKind::NotFound => Probe::Absent,
            io::ErrorKind::ConnectionRefused => Probe::Refused,
            _ => Probe::Error(e),
        },
    }
}

/// The outcome of one ring.
#[derive(Debug, PartialEq, Eq)]
pub enum Rang {
    /// Delivered to the other side's queue.
    Sent,
    /// Its queue was full: a doorbell is already pending there.
    Coalesced,
    /// Nobody listens there (not started, left, or died).
    NoPeer,
}

/// One side's doorbell sockets: the bound receiver and a non-blocking sender.
#[derive(Debug)]
pub struct DoorbellSocket {
    rx: UnixDatagram,
    tx: UnixDatagram,
    own: PathBuf,
    peer: PathBuf,
    /// The receive timeout last set, in microseconds, to skip repeating `setsockopt`.
    rx_timeout_us: AtomicU64,
}

impl DoorbellSocket {
    /// Binds `own` (after checking that no live process holds it and removing a stale socket
    /// file), ready to ring `peer`.
    ///
    /// # Errors
    ///
    /// [`HostError::AlreadyRunning`] when a live process is bound at `own`, [`HostError::Io`]
    /// when binding fails.
    pub fn bind(own: &Path, peer: &Path, side: Side) -> Result<Self, HostError> {
        match probe(own) {
            Probe::Alive => {
                return Err(HostError::AlreadyRunning {
                    side,
                    socket: own.to_path_buf(),
                });
            }
            Probe::Refused => {
                std::fs::remove_file(own)
                    .map_err(|e| HostError::io("remove the stale socket", own, e))?;
            }
            Probe::Absent => {}
            Probe::Error(e) => return Err(HostError::io("check the socket", own, e)),
        }
        let rx = UnixDatagram::bind(own)
            .map_err(|e| HostError::io("bind the doorbell socket", own, e))?;
        let tx = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|e| HostError::io("create the sending socket for", peer, e))?;
        Ok(Self {
            rx,
            tx,
            own: own.to_path_buf(),
            peer: peer.to_path_buf(),
            rx_timeout_us: AtomicU64::new(0),
        })
    }

    /// Our socket's path.
    pub fn own_path(&self) -> &Path {
        &self.own
    }

    /// The other side's socket path.
    pub fn peer_path(&self) -> &Path {
        &self.peer
    }

    /// Rings notify id `id` on the other side. Never blocks.
    pub fn ring(&self, id: u32) -> Rang {
        match self.tx.send_to(&encode(id), &self.peer) {
            Ok(_) => Rang::Sent,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Rang::Coalesced,
            Err(_) => Rang::NoPeer,
        }
    }

    /// Waits up to `timeout` for one datagram and returns it decoded: `Ok(Some(Some(id)))` for
    /// a doorbell, `Ok(Some(None))` for a datagram of the wrong length, `Ok(None)` when the
    /// time ran out.
    ///
    /// # Errors
    ///
    /// The socket's error.
    pub fn recv(&self, timeout: Duration) -> io::Result<Option<Option<u32>>> {
        let timeout = timeout.max(Duration::from_micros(1));
        let us = u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX);
        if self.rx_timeout_us.swap(us, Ordering::Relaxed) != us {
            self.rx.set_read_timeout(Some(timeout))?;
        }
        let mut buf = [0u8; 16];
        match self.rx.recv(&mut buf) {
            Ok(n) => Ok(Some(buf.get(..n).and_then(decode))),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends a doorbell to our own socket, so a thread blocked in [`DoorbellSocket::recv`]
    /// returns at once.
    pub fn poke_self(&self) {
        let _ = self.tx.send_to(&encode(u32::MAX), &self.own);
    }

    /// Removes our socket file (a clean exit).
    pub fn unlink(&self) {
        let _ = std::fs::remove_file(&self.own);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn scratch_dir() -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "rpmsg-db-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn pair(dir: &Path) -> (DoorbellSocket, DoorbellSocket) {
        let drv = socket_path(dir, "t", Side::Driver).unwrap();
        let dev = socket_path(dir, "t", Side::Device).unwrap();
        let a = DoorbellSocket::bind(&drv, &dev, Side::Driver).unwrap();
        let b = DoorbellSocket::bind(&dev, &drv, Side::Device).unwrap();
        (a, b)
    }

    #[test]
    fn notify_id_is_four_little_endian_bytes() {
        assert_eq!(encode(0x0102_0304), [4, 3, 2, 1]);
        assert_eq!(decode(&[1, 0, 0, 0]), Some(1));
        assert_eq!(decode(&[1, 0, 0]), None);
        assert_eq!(decode(&[1, 0, 0, 0, 0]), None);
        assert_eq!(decode(&encode(u32::MAX)), Some(u32::MAX));
    }

    #[test]
    fn socket_paths_follow_the_shm_name() {
        let p = socket_path(Path::new("/tmp"), "demo", Side::Device).unwrap();
        assert_eq!(p, Path::new("/tmp/rpmsg-demo.device.sock"));
        let long = "x".repeat(120);
        assert!(matches!(
            socket_path(Path::new("/tmp"), &long, Side::Driver),
            Err(HostError::PathTooLong { .. })
        ));
    }

    #[test]
    fn rings_cross_in_both_directions() {
        let dir = scratch_dir();
        let (a, b) = pair(&dir);
        assert_eq!(a.ring(1), Rang::Sent);
        assert_eq!(b.recv(Duration::from_secs(120)).unwrap(), Some(Some(1)));
        assert_eq!(b.ring(0), Rang::Sent);
        assert_eq!(a.recv(Duration::from_secs(120)).unwrap(), Some(Some(0)));
        assert_eq!(
            a.recv(Duration::from_millis(10)).unwrap(),
            None,
            "nothing else"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ignores_datagrams_of_the_wrong_length() {
        let dir = scratch_dir();
        let (a, b) = pair(&dir);
        let raw = UnixDatagram::unbound().unwrap();
        raw.send_to(&[1, 2, 3], b.own_path()).unwrap();
        raw.send_to(&[1, 2, 3, 4, 5], b.own_path()).unwrap();
        assert_eq!(b.recv(Duration::from_secs(120)).unwrap(), Some(None));
        assert_eq!(b.recv(Duration::from_secs(120)).unwrap(), Some(None));
        assert_eq!(a.ring(7), Rang::Sent);
        assert_eq!(b.recv(Duration::from_secs(120)).unwrap(), Some(Some(7)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_queue_coalesces_instead_of_blocking() {
        let dir = scratch_dir();
        let (a, b) = pair(&dir);
        let mut coalesced = false;
        // The receiver never reads: its queue fills up, and ringing must not block.
        for _ in 0..100_000 {
            if a.ring(1) == Rang::Coalesced {
                coalesced = true;
                break;
            }
        }
        assert!(coalesced);
        assert_eq!(b.recv(Duration::from_secs(120)).unwrap(), Some(Some(1)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn probe_tells_alive_absent_and_dead_apart() {
        let dir = scratch_dir();
        let drv = socket_path(&dir, "p", Side::Driver).unwrap();
        let dev = socket_path(&dir, "p", Side::Device).unwrap();
        assert!(matches!(probe(&drv), Probe::Absent));
        let a = DoorbellSocket::bind(&drv, &dev, Side::Driver).unwrap();
        assert!(matches!(probe(&drv), Probe::Alive));
        assert!(matches!(a.ring(0), Rang::NoPeer), "no device yet");
        // Dropped without unlinking: what a killed process leaves behind.
        drop(a);
        assert!(matches!(probe(&drv), Probe::Refused));
        // A new driver replaces the stale socket.
        let a = DoorbellSocket::bind(&drv, &dev, Side::Driver).unwrap();
        assert!(matches!(probe(&drv), Probe::Alive));
        // ... and a second live one is refused.
        assert!(matches!(
            DoorbellSocket::bind(&drv, &dev, Side::Driver),
            Err(HostError::AlreadyRunning { .. })
        ));
        a.unlink();
        assert!(matches!(probe(&drv), Probe::Absent));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn poke_self_wakes_the_receiver() {
        let dir = scratch_dir();
        let (a, _b) = pair(&dir);
        a.poke_self();
        assert_eq!(
            a.recv(Duration::from_secs(120)).unwrap(),
            Some(Some(u32::MAX))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
