//! The shared-memory file: the rpmsg region followed by a one-page host block.
//!
//! # File layout
//!
//! ```text
//! 0                      region_len             region_len + 4096
//! | rpmsg region (rings, buffers, table) | host block |
//! ```
//!
//! `region_len` is the layout's size rounded up to 4096, so the host block is page-aligned and
//! the region starts at file offset 0, where RPMsg-Lite's `shmem_addr` or a resource table
//! would. The driver side builds the whole file under a temporary name and renames it into
//! place, so an opener sees either no file or a complete one.
//!
//! # Host block (version 2, all fields little-endian, offsets from the block's start)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x000 | 8 | magic `b"rpmsgHB1"` |
//! | 0x008 | 4 | version: 2 (1: as 2 with `VRING_SIZE` 0; still read) |
//! | 0x00c | 4 | layout: 1 RPMsg-Lite, 2 resource table |
//! | 0x010 | 4 | buffers per direction |
//! | 0x014 | 4 | buffer size (header included) |
//! | 0x018 | 4 | vring alignment |
//! | 0x01c | 4 | doorbell: 1 socket, 2 futex, 3 busy-poll |
//! | 0x020 | 8 | region length |
//! | 0x028, 0x02c | 4 each | process id of the driver, of the device (0: unknown) |
//! | 0x030, 0x034 | 4 each | state of the driver, of the device: 0 absent, 1 ready, 2 closed |
//! | 0x038 | 4 | RPMsg-Lite `VRING_SIZE` (0: computed from buffers and alignment); since version 2 |
//! | 0x040, 0x044 | 4 each | driver's futex doorbell word, driver's sleeping-waiter count |
//! | 0x080, 0x084 | 4 each | device's futex doorbell word, device's sleeping-waiter count |
//! | 0x0c0 | 4 | device attach counter: each device bumps it once its socket is bound (doorbell.rs section 6) |
//! | 0x0c4 | 4 | rings-for: the attach number the rings are laid out for, 0 while unclaimed (section 6) |
//! | 0x0c8 | 4 | ring epochs: how many times the driver laid the rings out again (information) |
//! | 0x100 .. 0x240 | | baseline words (bench only), one 64-byte line each |
//!
//! Every field is read and written with atomic operations of its size. A C peer needs only
//! the magic and geometry to check the file, and may ignore the rest.

use crate::doorbell::{DoorbellMode, Side};
use crate::error::HostError;
use crate::geometry::{Geometry, LayoutKind};
use crate::sys::Mapping;
use rpmsg::SharedRegion;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bytes of the host block at the end of the file.
pub const HOST_BLOCK_LEN: usize = 4096;
/// The host block's first 8 bytes.
pub const HOST_BLOCK_MAGIC: [u8; 8] = *b"rpmsgHB1";
/// The host block version this crate writes and reads.
pub const HOST_BLOCK_VERSION: u32 = 2;

/// Field offsets in the host block.
pub mod field {
    /// Magic, 8 bytes.
    pub const MAGIC: usize = 0x00;
    /// Version.
    pub const VERSION: usize = 0x08;
    /// Layout code.
    pub const LAYOUT: usize = 0x0c;
    /// Buffers per direction.
    pub const BUFFERS: usize = 0x10;
    /// Buffer size.
    pub const BUFFER_SIZE: usize = 0x14;
    /// Vring alignment.
    pub const ALIGN: usize = 0x18;
    /// RPMsg-Lite `VRING_SIZE` (version 2).
    pub const VRING_SIZE: usize = 0x38;
    /// Doorbell code.
    pub const DOORBELL: usize = 0x1c;
    /// Region length, 8 bytes.
    pub const REGION_LEN: usize = 0x20;
    /// Process ids: driver, device.
    pub const PID: [usize; 2] = [0x28, 0x2c];
    /// States: driver, device.
    pub const STATE: [usize; 2] = [0x30, 0x34];
    /// Futex doorbell words: driver's, device's.
    pub const BELL: [usize; 2] = [0x40, 0x80];
    /// Sleeping-waiter counts: driver's, device's.
    pub const WAITERS: [usize; 2] = [0x44, 0x84];
    /// Device attach counter (doorbell.rs section 6).
    pub const ATTACH: usize = 0xc0;
    /// The attach number the rings are laid out for; 0: unclaimed (doorbell.rs section 6).
    pub const RINGS_FOR: usize = 0xc4;
    /// Times the driver laid the rings out again.
    pub const EPOCHS: usize = 0xc8;
    /// Baseline ping-pong: the driver's word, the device's word.
    pub const RAW_PINGPONG: [usize; 2] = [0x100, 0x140];
    /// Baseline ring: head (producer), tail (consumer).
    pub const RAW_RING: [usize; 2] = [0x180, 0x1c0];
    /// Baseline control word (who is ready, stop).
    pub const RAW_CONTROL: usize = 0x200;
}

/// A side's state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideState {
    /// Not attached (yet).
    Absent,
    /// Attached and serving.
    Ready,
    /// Left cleanly.
    Closed,
}

impl SideState {
    fn code(self) -> u32 {
        match self {
            Self::Absent => 0,
            Self::Ready => 1,
            Self::Closed => 2,
        }
    }

    fn from_code(c: u32) -> Self {
        match c {
            1 => Self::Ready,
            2 => Self::Closed,
            _ => Self::Absent,
        }
    }
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Driver => 0,
        Side::Device => 1,
    }
}

/// A mapped shared-memory file: the rpmsg region and the host block.
#[derive(Debug)]
pub struct SharedFile {
    map: Mapping,
    fd: OwnedFd,
    path: PathBuf,
    /// The name sockets derive from.
    name: String,
    geometry: Geometry,
    doorbell: DoorbellMode,
    region_len: usize,
}

fn round_up_page(n: usize) -> Option<usize> {
    n.checked_add(HOST_BLOCK_LEN - 1)
        .map(|v| v & !(HOST_BLOCK_LEN - 1))
}

impl SharedFile {
    /// File bytes for `geometry`: the region rounded up to a page, plus the host block.
    ///
    /// # Errors
    ///
    /// [`HostError::Geometry`] for an invalid geometry.
    pub fn file_len(geometry: &Geometry) -> Result<usize, HostError> {
        let region = round_up_page(geometry.region_len()?)
            .ok_or_else(|| HostError::Geometry("layout does not fit in memory".into()))?;
        Ok(region + HOST_BLOCK_LEN)
    }

    /// Creates the file at `path` (replacing what was there) for `geometry` and `doorbell`,
    /// with the host block filled in and, for the resource-table layout, the table written.
    /// Built under a temporary name and renamed into place.
    ///
    /// # Errors
    ///
    /// [`HostError::Geometry`], [`HostError::Io`].
    pub fn create(
        path: &Path,
        geometry: Geometry,
        doorbell: DoorbellMode,
    ) -> Result<Self, HostError> {
        let len = Self::file_len(&geometry)?;
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| HostError::Geometry(format!("{} has no file name", path.display())))?;
        let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| HostError::io("create", &tmp, e))?;
        let built = Self::build(file, &tmp, file_name, len, geometry, doorbell);
        let mut this = match built {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = std::fs::rename(&tmp, path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(HostError::io("rename the new file to", path, e));
        }
        this.path = path.to_path_buf();
        Ok(this)
    }

    /// Creates an anonymous file (`memfd_create`) sealed against shrinking. Another process
    /// opens it as `/proc/PID/fd/FD` (see [`SharedFile::proc_path`]); sockets derive from
    /// `name`.
    ///
    /// # Errors
    ///
    /// [`HostError::Geometry`], [`HostError::Io`].
    pub fn create_memfd(
        name: &str,
        geometry: Geometry,
        doorbell: DoorbellMode,
    ) -> Result<Self, HostError> {
        let len = Self::file_len(&geometry)?;
        let fd = rustix::fs::memfd_create(
            name,
            rustix::fs::MemfdFlags::ALLOW_SEALING, // inherited by children: no CLOEXEC
        )
        .map_err(|e| HostError::io("create memfd", name, e.into()))?;
        let file = File::from(fd);
        let mut this = Self::build(file, Path::new(name), name, len, geometry, doorbell)?;
        rustix::fs::fcntl_add_seals(&this.fd, rustix::fs::SealFlags::SHRINK)
            .map_err(|e| HostError::io("seal memfd", name, e.into()))?;
        this.path = this.proc_path();
        Ok(this)
    }

    fn build(
        file: File,
        path: &Path,
        name: &str,
        len: usize,
        geometry: Geometry,
        doorbell: DoorbellMode,
    ) -> Result<Self, HostError> {
        file.set_len(len as u64)
            .map_err(|e| HostError::io("size", path, e))?;
        let map = Mapping::map(file.as_fd(), len).map_err(|e| HostError::io("map", path, e))?;
        let region_len = len - HOST_BLOCK_LEN;
        let this = Self {
            map,
            fd: file.into(),
            path: path.to_path_buf(),
            name: name.to_string(),
            geometry,
            doorbell,
            region_len,
        };
        let w = |off, v| this.word(off).store(v, Ordering::Relaxed);
        w(field::VERSION, HOST_BLOCK_VERSION);
        w(field::LAYOUT, geometry.layout.code());
        w(field::BUFFERS, u32::from(geometry.buffers));
        w(field::BUFFER_SIZE, geometry.buffer_size);
        w(field::ALIGN, geometry.align);
        w(field::VRING_SIZE, geometry.vring_size);
        w(field::DOORBELL, doorbell.code());
        this.word64(field::REGION_LEN)
            .store(region_len as u64, Ordering::Relaxed);
        geometry.write_initial(&this.region())?;
        // The magic last, after a release store: whoever sees it sees the fields (the rename
        // orders this for other processes anyway).
        this.word64(field::MAGIC)
            .store(u64::from_le_bytes(HOST_BLOCK_MAGIC), Ordering::Release);
        Ok(this)
    }

    /// Opens and maps an existing file, checks its host block, and reads its geometry.
    ///
    /// # Errors
    ///
    /// [`HostError::MissingFile`], [`HostError::TooSmall`], [`HostError::NotOurs`],
    /// [`HostError::Version`], [`HostError::Io`].
    pub fn open(path: &Path) -> Result<Self, HostError> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(HostError::MissingFile {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(HostError::io("open", path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| HostError::io("stat", path, e))?
            .len();
        let min = (HOST_BLOCK_LEN + HOST_BLOCK_LEN) as u64;
        if len < min {
            return Err(HostError::TooSmall {
                path: path.to_path_buf(),
                len,
                need: min,
            });
        }
        let len = usize::try_from(len).map_err(|_| HostError::NotOurs {
            path: path.to_path_buf(),
        })?;
        let map = Mapping::map(file.as_fd(), len).map_err(|e| HostError::io("map", path, e))?;
        let block = (len - HOST_BLOCK_LEN) & !63;
        let word = |off: usize| {
            map.atomic_u32(block + off)
                .map_or(0, |w| w.load(Ordering::Acquire))
        };
        let magic = map
            .atomic_u64(block + field::MAGIC)
            .map_or(0, |w| w.load(Ordering::Acquire));
        if magic != u64::from_le_bytes(HOST_BLOCK_MAGIC) {
            return Err(HostError::NotOurs {
                path: path.to_path_buf(),
            });
        }
        let version = word(field::VERSION);
        // Version 1 differs only in having no VRING_SIZE word (there it reads 0, the default).
        if version != HOST_BLOCK_VERSION && version != 1 {
            return Err(HostError::Version {
                path: path.to_path_buf(),
                found: version,
            });
        }
        let not_ours = || HostError::NotOurs {
            path: path.to_path_buf(),
        };
        let geometry = Geometry {
            layout: LayoutKind::from_code(word(field::LAYOUT)).ok_or_else(not_ours)?,
            buffers: u16::try_from(word(field::BUFFERS)).map_err(|_| not_ours())?,
            buffer_size: word(field::BUFFER_SIZE),
            align: word(field::ALIGN),
            vring_size: word(field::VRING_SIZE),
        };
        geometry.validate()?;
        let doorbell = DoorbellMode::from_code(word(field::DOORBELL)).ok_or_else(not_ours)?;
        let region_len = map
            .atomic_u64(block + field::REGION_LEN)
            .map_or(0, |w| w.load(Ordering::Relaxed));
        let need = Self::file_len(&geometry)?;
        if region_len != block as u64 || len < need {
            return Err(HostError::TooSmall {
                path: path.to_path_buf(),
                len: len as u64,
                need: need as u64,
            });
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("rpmsg")
            .to_string();
        Ok(Self {
            map,
            fd: file.into(),
            path: path.to_path_buf(),
            name,
            geometry,
            doorbell,
            region_len: block,
        })
    }

    /// The rpmsg region: file offsets `0 .. region_len`.
    pub fn region(&self) -> SharedRegion<'_> {
        self.map
            .region(self.region_len)
            .unwrap_or_else(|_| unreachable!("region_len < mapping length by construction"))
    }

    /// Bytes of the region.
    pub fn region_len(&self) -> usize {
        self.region_len
    }

    /// Bytes of the whole file.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never: a file holds at least its host block.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The path it was created at or opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name socket paths derive from (the file name, or the memfd's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The geometry the host block records.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The doorbell the host block records.
    pub fn doorbell(&self) -> DoorbellMode {
        self.doorbell
    }

    /// The open file, e.g. to hand a memfd to a child process.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// `/proc/PID/fd/FD` of this file, which another process can open.
    pub fn proc_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.fd.as_raw_fd()
        ))
    }

    /// A 32-bit host-block word.
    pub(crate) fn word(&self, off: usize) -> &AtomicU32 {
        self.map
            .atomic_u32(self.region_len + off)
            .unwrap_or_else(|| unreachable!("host-block fields lie inside the block"))
    }

    /// A 64-bit host-block word.
    pub(crate) fn word64(&self, off: usize) -> &AtomicU64 {
        self.map
            .atomic_u64(self.region_len + off)
            .unwrap_or_else(|| unreachable!("host-block fields lie inside the block"))
    }

    /// The mapping, for the baselines' raw copies.
    pub(crate) fn mapping(&self) -> &Mapping {
        &self.map
    }

    /// Records `side`'s state.
    pub fn set_state(&self, side: Side, state: SideState) {
        self.word(field::STATE[side_index(side)])
            .store(state.code(), Ordering::Release);
    }

    /// `side`'s state.
    pub fn state(&self, side: Side) -> SideState {
        SideState::from_code(
            self.word(field::STATE[side_index(side)])
                .load(Ordering::Acquire),
        )
    }

    /// Records `side`'s process id.
    pub fn set_pid(&self, side: Side, pid: u32) {
        self.word(field::PID[side_index(side)])
            .store(pid, Ordering::Relaxed);
    }

    /// `side`'s process id, if recorded.
    pub fn pid(&self, side: Side) -> Option<u32> {
        let p = self
            .word(field::PID[side_index(side)])
            .load(Ordering::Relaxed);
        (p != 0).then_some(p)
    }

    /// `side`'s futex doorbell word.
    pub(crate) fn bell(&self, side: Side) -> &AtomicU32 {
        self.word(field::BELL[side_index(side)])
    }

    /// `side`'s count of threads asleep on its doorbell word.
    pub(crate) fn waiters(&self, side: Side) -> &AtomicU32 {
        self.word(field::WAITERS[side_index(side)])
    }

    /// The device attach counter (doorbell.rs section 6).
    pub(crate) fn attach_counter(&self) -> &AtomicU32 {
        self.word(field::ATTACH)
    }

    /// The attach number the rings are laid out for, 0 while unclaimed (doorbell.rs section 6).
    pub(crate) fn rings_for(&self) -> &AtomicU32 {
        self.word(field::RINGS_FOR)
    }

    /// How many times the driver laid the rings out again since it created the file.
    pub fn ring_epochs(&self) -> u32 {
        self.word(field::EPOCHS).load(Ordering::Relaxed)
    }

    /// Whether the path still names this very file (same device and inode).
    pub fn is_at_path(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(&self.path), rustix::fs::fstat(&self.fd)) {
            (Ok(a), Ok(b)) => a.dev() == b.st_dev && a.ino() == b.st_ino,
            _ => false,
        }
    }

    /// Unlinks the file's path (a no-op for a memfd).
    pub fn remove(&self) {
        if !self.path.starts_with("/proc/") {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("rpmsg-file-{}-{name}", std::process::id()))
    }

    #[test]
    fn create_then_open_reads_the_same_geometry() {
        let p = scratch("roundtrip");
        let g = Geometry {
            layout: LayoutKind::RscTable,
            buffers: 8,
            buffer_size: 256,
            align: 0x40,
            vring_size: 0,
        };
        let a = SharedFile::create(&p, g, DoorbellMode::Futex).unwrap();
        assert_eq!(a.len() % 4096, 0);
        let b = SharedFile::open(&p).unwrap();
        assert_eq!(b.geometry(), g);
        assert_eq!(b.doorbell(), DoorbellMode::Futex);
        assert_eq!(b.region_len(), a.region_len());
        a.set_state(Side::Device, SideState::Ready);
        assert_eq!(b.state(Side::Device), SideState::Ready);
        // The resource table is in place for the device to read.
        let vdev = g
            .layout_config()
            .map(|c| match c {
                rpmsg::layout::LayoutConfig::RscTable(r) => r.read_vdev(&b.region()).unwrap(),
                rpmsg::layout::LayoutConfig::Lite(_) => unreachable!(),
            })
            .unwrap();
        assert_eq!(vdev.vrings[1].num, 8);
        a.remove();
        assert!(matches!(
            SharedFile::open(&p),
            Err(HostError::MissingFile { .. })
        ));
    }

    #[test]
    fn refuses_small_and_foreign_files() {
        let p = scratch("small");
        std::fs::write(&p, [0u8; 100]).unwrap();
        assert!(matches!(
            SharedFile::open(&p),
            Err(HostError::TooSmall { len: 100, .. })
        ));
        std::fs::write(&p, vec![0u8; 3 * 4096]).unwrap();
        assert!(matches!(
            SharedFile::open(&p),
            Err(HostError::NotOurs { .. })
        ));
        // One of ours, cut short: the host block moves and the magic is gone.
        let g = Geometry::LITE_DEFAULT;
        let f = SharedFile::create(&p, g, DoorbellMode::Socket).unwrap();
        drop(f);
        let file = OpenOptions::new().write(true).open(&p).unwrap();
        file.set_len(2 * 4096 + 512).unwrap();
        assert!(SharedFile::open(&p).unwrap_err().is_usage());
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn memfd_opens_through_proc() {
        let a = SharedFile::create_memfd(
            "rpmsg-memfd-test",
            Geometry::LITE_DEFAULT,
            DoorbellMode::BusyPoll,
        )
        .unwrap();
        let b = SharedFile::open(&a.proc_path()).unwrap();
        b.set_pid(Side::Driver, 42);
        assert_eq!(a.pid(Side::Driver), Some(42));
        assert_eq!(b.doorbell(), DoorbellMode::BusyPoll);
    }
}
