//! The one module with `unsafe`: mapping a shared file, wrapping it into a
//! [`SharedRegion`], the few raw accesses outside that region (the host block's atomic words
//! and the baseline ring's slot copies), the link lock ([`HostRawMutex`], whose trait is
//! `unsafe`), and the ioctls of the kernel's rpmsg character devices (for `chardev`).
//!
//! # Contract
//!
//! A [`Mapping`] is `len` bytes of a file mapped `MAP_SHARED`, readable and writable, from its
//! creation until it is dropped. This program never forms a `&`/`&mut [u8]` reference to any of
//! those bytes: the core's region accesses them with atomics, the host block is read and written
//! through `&AtomicU32`/`&AtomicU64` only, and the baseline copies use raw pointers. Other
//! processes may write any byte at any time; every byte pattern is a valid `u8`, so the worst a
//! misbehaving peer can cause is wrong data, never undefined behaviour in this process.
//!
//! What this module cannot guard against: another process *shrinking* the file while it is
//! mapped makes the pages past the new end raise `SIGBUS` on access. The crate seals the memfds
//! it creates against shrinking; a file in `/dev/shm` relies on its users (see the crate's
//! Assumptions).

#![allow(unsafe_code)]

use rpmsg::SharedRegion;
use rpmsg::port::RawMutex;
use rustix::mm::{MapFlags, ProtFlags};
use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// A shared mapping of a file.
#[derive(Debug)]
pub(crate) struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` is an address range; every access through it is atomic or a raw copy
// (never a reference to the bytes), so moving the handle to another thread is as sound as
// sending a `&[AtomicU8]`.
unsafe impl Send for Mapping {}
// SAFETY: as above: shared use from several threads only ever performs atomic operations or raw
// byte copies on memory that other processes write too.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd` shared, read and write.
    ///
    /// # Errors
    ///
    /// The `mmap` error; `InvalidInput` for a zero length.
    pub(crate) fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        Self::map_at(fd, 0, len)
    }

    /// Maps `len` bytes of `fd` from file offset `offset` (a multiple of the page size) shared,
    /// read and write.
    ///
    /// # Errors
    ///
    /// The `mmap` error (`EINVAL` for an unaligned offset); `InvalidInput` for a zero length.
    pub(crate) fn map_at(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map zero bytes",
            ));
        }
        // SAFETY: a fresh mapping at an address the kernel picks (null hint) cannot overlap any
        // memory Rust already uses; `fd` is a valid open file for the duration of the call.
        let p = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                offset,
            )
        }?;
        let base = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        Ok(Self { base, len })
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first `len` bytes as the core's region.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `len` exceeds the mapping.
    pub(crate) fn region(&self, len: usize) -> io::Result<SharedRegion<'_>> {
        if len > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "region longer than the mapping",
            ));
        }
        // SAFETY: `base .. base + len` lies inside the mapping (checked above), which stays
        // mapped read-write until `self` is dropped, and the region borrows `self`, so it cannot
        // outlive the mapping. Nothing in this program forms a reference to these bytes (module
        // contract): the host block and the baseline slots are reached by atomics and raw copies.
        // The base is page-aligned, which satisfies REGION_ALIGN.
        unsafe { SharedRegion::from_raw(self.base.as_ptr(), len) }
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
    }

    /// Pointer to `size` bytes at `offset` if they lie inside the mapping and `offset` is a
    /// multiple of `align`.
    fn at(&self, offset: usize, size: usize, align: usize) -> Option<*mut u8> {
        let end = offset.checked_add(size)?;
        if end > self.len || offset % align != 0 {
            return None;
        }
        // SAFETY: `offset + size <= len`, so the pointer stays inside the mapping.
        Some(unsafe { self.base.as_ptr().add(offset) })
    }

    /// The 32-bit word at `offset` (4-aligned), as an atomic shared with the other process.
    pub(crate) fn atomic_u32(&self, offset: usize) -> Option<&AtomicU32> {
        let p = self.at(offset, 4, 4)?;
        // SAFETY: `at` checked bounds and alignment (the base is page-aligned); the memory stays
        // mapped for the borrow of `self`; every access to these bytes, here and in the peer
        // process, is atomic (module contract), which is what `from_ptr` requires.
        Some(unsafe { AtomicU32::from_ptr(p.cast()) })
    }

    /// The 64-bit word at `offset` (8-aligned), as an atomic shared with the other process.
    pub(crate) fn atomic_u64(&self, offset: usize) -> Option<&AtomicU64> {
        let p = self.at(offset, 8, 8)?;
        // SAFETY: as in `atomic_u32`, with 8-byte bounds and alignment.
        Some(unsafe { AtomicU64::from_ptr(p.cast()) })
    }

    /// `memcpy` of `src` into the mapping at `offset` (the baseline ring's producer).
    pub(crate) fn copy_in_raw(&self, offset: usize, src: &[u8]) -> Option<()> {
        let p = self.at(offset, src.len(), 1)?;
        // SAFETY: the destination range lies inside the mapping (`at`); it is not referenced
        // anywhere in this program, and `src` is ordinary memory of ours, so they cannot overlap.
        // The ring protocol gives the slot to the producer until it publishes the head index.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) };
        Some(())
    }

    /// `memcpy` out of the mapping at `offset` into `dst` (the baseline ring's consumer).
    pub(crate) fn copy_out_raw(&self, offset: usize, dst: &mut [u8]) -> Option<()> {
        let p = self.at(offset, dst.len(), 1)?;
        // SAFETY: the source range lies inside the mapping (`at`) and `dst` is ordinary memory
        // of ours, so they do not overlap. Any byte the peer writes meanwhile is a valid `u8`.
        unsafe { std::ptr::copy_nonoverlapping(p, dst.as_mut_ptr(), dst.len()) };
        Some(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base .. base + len` is exactly the range `mmap` returned, and every borrow of
        // it (regions, atomics) borrowed `self`, so none is alive any more.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

impl Mapping {
    /// Maps several file ranges `(fd, file offset, len)` side by side in one address range
    /// (the vhost-user back-end's guest memory regions): each starts at a page boundary, and
    /// the start of each (from the mapping's base) is returned with the mapping. The gaps
    /// after a segment whose length is not a page multiple stay inaccessible. File offsets must
    /// be page multiples.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for no segment, a zero length or a total that overflows; the `mmap` error.
    pub(crate) fn map_segments(
        segs: &[(BorrowedFd<'_>, u64, usize)],
    ) -> io::Result<(Self, Vec<usize>)> {
        let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_string());
        let page = rustix::param::page_size();
        let mut starts = Vec::with_capacity(segs.len());
        let mut total = 0usize;
        for &(_, _, len) in segs {
            if len == 0 {
                return Err(invalid("cannot map zero bytes"));
            }
            starts.push(total);
            total = len
                .checked_next_multiple_of(page)
                .and_then(|l| total.checked_add(l))
                .ok_or_else(|| invalid("segments too large"))?;
        }
        if total == 0 {
            return Err(invalid("no segment to map"));
        }
        // SAFETY: a fresh inaccessible reservation at an address the kernel picks (null hint)
        // cannot overlap memory Rust already uses.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                total,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }?;
        let base = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        // From here on, dropping `this` unmaps the whole range, whatever fails below.
        let this = Self { base, len: total };
        for (&(fd, offset, len), &start) in segs.iter().zip(&starts) {
            // SAFETY: `start + len <= total` (computed above), so the target lies inside our own
            // reservation, which nothing else uses and to which no reference exists (module
            // contract); MAP_FIXED only replaces those reserved pages. `fd` is a valid open file
            // for the duration of the call.
            unsafe {
                rustix::mm::mmap(
                    this.base.as_ptr().add(start).cast(),
                    len,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::SHARED | MapFlags::FIXED,
                    fd,
                    offset,
                )
            }?;
        }
        Ok((this, starts))
    }
}

/// The lock around one link's bookkeeping ([`HostEnv`](crate::HostEnv)'s `RawMutex`): one
/// word per link, taken with a compare-and-swap and released with a store.
///
/// `critical-section`'s std implementation, the alternative, is one mutex for the whole
/// process plus a thread-local flag: about twice the instructions per lock, and every link of
/// the process shares it. Here an uncontended lock costs one atomic read-modify-write; a
/// contended one (socket mode: the service thread and the application) spins briefly, then
/// yields. Like `critical-section`'s, it is re-entrant on one thread (the link's `RefCell`
/// then refuses the inner borrow with `Error::Busy`), as embassy's `RawMutex` permits.
#[derive(Debug)]
pub struct HostRawMutex {
    /// 0 when free, else the owning thread's token.
    owner: AtomicUsize,
}

std::thread_local! {
    static TOKEN: u8 = const { 0 };
}

/// A non-zero number unique among the threads alive now: the address of a thread-local.
#[inline]
fn thread_token() -> usize {
    TOKEN.with(|t| core::ptr::from_ref(t) as usize)
}

/// Releases the lock when dropped, so a panic inside the critical section unlocks it too.
struct Unlock<'a>(&'a AtomicUsize);

impl Drop for Unlock<'_> {
    #[inline]
    fn drop(&mut self) {
        // Release: everything written under the lock is visible to the next owner's Acquire.
        self.0.store(0, Ordering::Release);
    }
}

// SAFETY: while `owner` holds thread T's token, no other thread can store its own token (the
// compare-and-swap only succeeds from 0), so no two threads run `f` concurrently; the token is
// only cleared by the owner's `Unlock` when its `f` returns or unwinds. Re-entry by T itself
// runs `f` without taking the lock, which `RawMutex` allows (it promises exclusion from other
// threads only). Tokens are addresses of a live thread's thread-local, so no other live thread
// has the owner's token.
unsafe impl RawMutex for HostRawMutex {
    const INIT: Self = Self {
        owner: AtomicUsize::new(0),
    };

    #[inline]
    fn lock<R>(&self, f: impl FnOnce() -> R) -> R {
        let me = thread_token();
        if self.owner.load(Ordering::Relaxed) == me {
            return f();
        }
        let mut spins = 0u32;
        // Acquire pairs with the previous owner's Release in `Unlock`.
        while self
            .owner
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins = spins.wrapping_add(1);
            if spins < 128 {
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let _unlock = Unlock(&self.owner);
        f()
    }
}

// =============================================================================================
// rpmsg character devices: the ioctls of /dev/rpmsg_ctrlN and /dev/rpmsgN (used by `chardev`).
//
// The kernel side is drivers/rpmsg/rpmsg_ctrl.c and rpmsg_char.c; the numbers and the 40-byte
// `struct rpmsg_endpoint_info` are in include/uapi/linux/rpmsg.h and `chardev`'s constants. This
// section stays self-contained (placed before the test module only because clippy's
// `items_after_test_module` forbids items after it).
// =============================================================================================

/// The three `rpmsg_ctrl` ioctls that take a `struct rpmsg_endpoint_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InfoIoctl {
    /// `RPMSG_CREATE_EPT_IOCTL`: a new endpoint device under the control device.
    CreateEndpoint,
    /// `RPMSG_CREATE_DEV_IOCTL`: a new local channel on the rpmsg bus.
    CreateChannel,
    /// `RPMSG_RELEASE_DEV_IOCTL`: remove a channel from the rpmsg bus.
    ReleaseChannel,
}

/// Issues `which` on the control device `fd` with the encoded `struct rpmsg_endpoint_info`.
///
/// # Errors
///
/// The ioctl's errno (`ENOTTY` or `EINVAL` from a device that does not know it).
pub(crate) fn rpmsg_info_ioctl(
    fd: BorrowedFd<'_>,
    which: InfoIoctl,
    info: &crate::chardev::RawEndpointInfo,
) -> io::Result<()> {
    use crate::chardev::{
        RPMSG_CREATE_DEV_IOCTL, RPMSG_CREATE_EPT_IOCTL, RPMSG_RELEASE_DEV_IOCTL, RawEndpointInfo,
    };
    use rustix::ioctl::{Updater, ioctl};
    // A copy the kernel may read (and, were a foreign driver to misread the number, write):
    // `Updater` passes it as a mutable pointer, so neither case can touch memory we still use.
    let mut buf: RawEndpointInfo = *info;
    // SAFETY: each opcode is the uapi's `_IOW(0xb5, n, struct rpmsg_endpoint_info)`, computed by
    // rustix for this architecture from the size of `RawEndpointInfo`, which is exactly the
    // 40-byte struct (32-byte name, then two native-endian u32; `chardev` tests the layout).
    // `buf` is a live, exclusively borrowed 40-byte buffer for the whole call, which is all
    // the kernel dereferences: `copy_from_user(&eptinfo, argp, sizeof(eptinfo))`. `fd` is a
    // valid open descriptor for the call (a borrow); a device that does not implement the
    // number fails with an errno and never reads past the 40 bytes the number encodes.
    let r = unsafe {
        match which {
            InfoIoctl::CreateEndpoint => ioctl(
                fd,
                Updater::<{ RPMSG_CREATE_EPT_IOCTL }, RawEndpointInfo>::new(&mut buf),
            ),
            InfoIoctl::CreateChannel => ioctl(
                fd,
                Updater::<{ RPMSG_CREATE_DEV_IOCTL }, RawEndpointInfo>::new(&mut buf),
            ),
            InfoIoctl::ReleaseChannel => ioctl(
                fd,
                Updater::<{ RPMSG_RELEASE_DEV_IOCTL }, RawEndpointInfo>::new(&mut buf),
            ),
        }
    };
    r.map_err(io::Error::from)
}

/// `RPMSG_DESTROY_EPT_IOCTL` on an endpoint device: removes the endpoint and its device node.
///
/// # Errors
///
/// The ioctl's errno: `EINVAL` for a channel's default endpoint (or an unknown number).
pub(crate) fn rpmsg_destroy_ept_ioctl(fd: BorrowedFd<'_>) -> io::Result<()> {
    use crate::chardev::RPMSG_DESTROY_EPT_IOCTL;
    use rustix::ioctl::{NoArg, ioctl};
    // SAFETY: the opcode is the uapi's `_IO(0xb5, 0x2)`, which takes no argument: rustix passes a
    // null pointer that no implementation of this number dereferences. `fd` is a valid open
    // descriptor for the duration of the call.
    let r = unsafe { ioctl(fd, NoArg::<{ RPMSG_DESTROY_EPT_IOCTL }>::new()) };
    r.map_err(io::Error::from)
}

/// Registers an endpoint with tokio's reactor for readable and writable events.
///
/// # Errors
///
/// The registration's error (no runtime with IO enabled, or a descriptor epoll refuses).
#[cfg(feature = "tokio")]
pub(crate) fn register_endpoint(
    ep: crate::chardev::Endpoint,
) -> io::Result<tokio::io::unix::AsyncFd<crate::chardev::Endpoint>> {
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;
    // SAFETY: `Endpoint` owns its descriptor (an `OwnedFd` it never replaces or closes before
    // it is dropped), and `as_raw_fd` always returns that descriptor; the `AsyncFd` owns the
    // `Endpoint`, so the descriptor stays open and refers to the same file description until
    // the `AsyncFd` is dropped or gives the `Endpoint` back with `into_inner`.
    let r = unsafe { AsyncFd::register_with_interest(ep, Interest::READABLE | Interest::WRITABLE) };
    r.map_err(|e| e.into_parts().1)
}

// ================================ end of the rpmsg character devices ========================

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_memfd_and_bounds_every_access() {
        let fd = rustix::fs::memfd_create("sys-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 8192).unwrap();
        let m = Mapping::map(std::os::fd::AsFd::as_fd(&fd), 8192).unwrap();
        let other = Mapping::map(std::os::fd::AsFd::as_fd(&fd), 8192).unwrap();
        m.atomic_u64(4096).unwrap().store(0x1122, Ordering::Relaxed);
        assert_eq!(
            other.atomic_u64(4096).unwrap().load(Ordering::Relaxed),
            0x1122,
            "two mappings of one file see the same bytes"
        );
        assert!(m.atomic_u32(8190).is_none());
        assert!(m.atomic_u32(2).is_none(), "misaligned");
        assert!(m.atomic_u64(usize::MAX - 3).is_none());
        m.copy_in_raw(100, b"abc").unwrap();
        let mut out = [0u8; 3];
        other.copy_out_raw(100, &mut out).unwrap();
        assert_eq!(&out, b"abc");
        assert!(m.copy_in_raw(8190, b"abc").is_none());
        assert_eq!(m.region(8192).unwrap().len(), 8192);
        assert!(m.region(8193).is_err());
    }

    #[test]
    fn host_raw_mutex_excludes_other_threads_and_reenters() {
        let m = HostRawMutex::INIT;
        let inside = AtomicU32::new(0);
        let total = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        m.lock(|| {
                            assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0, "exclusive");
                            // Re-entry on the same thread does not deadlock.
                            m.lock(|| total.fetch_add(1, Ordering::Relaxed));
                            inside.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 40_000);
        assert_eq!(m.owner.load(Ordering::Relaxed), 0, "released");
    }

    #[test]
    fn host_raw_mutex_unlocks_on_panic() {
        let m = HostRawMutex::INIT;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            m.lock(|| panic!("inside the critical section"));
        }));
        assert!(r.is_err());
        assert_eq!(std::thread::spawn(move || m.lock(|| 7)).join().unwrap(), 7);
    }
}
