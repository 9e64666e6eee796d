//! The one module that touches shared memory.
//!
//! A [`SharedRegion`] is a base pointer and a length that both cores can write. Everything else in
//! the crate is safe code that names places in the region by byte offset; this module checks each
//! offset against the length (and the natural alignment of the field) before it reads or writes,
//! so a wrong offset, whether from a bug, a bad address translation or a hostile peer, becomes an
//! [`AccessError`] instead of a stray access.
//!
//! # How the memory is touched
//!
//! Never through `&`/`&mut` references: the other core may write at any moment, and a Rust
//! reference promises that nobody does. Every access is an atomic load or store with
//! `Ordering::Relaxed` on the field's natural width (`u8`, `u16`, `u32`; a `u64` is two `u32`
//! halves, because Cortex-M has no 64-bit atomics), which compiles to the same single load or
//! store a volatile access would, but is also well defined when the other "core" is a thread of
//! this process. Byte copies in and out use word-sized relaxed atomics where both sides are
//! aligned, byte-sized ones at the edges. The ordering between fields is made explicit with the
//! fences of this module, placed by `virtqueue` exactly where wire.md section 3.7 asks for them.
//!
//! # Accesses of different widths to the same bytes
//!
//! The same bytes are reached at different widths: a buffer's header as `u32` words and its
//! payload by `usize`/`u8` copies, a table or ring zeroed by [`SharedRegion::fill`]'s copies
//! and then read field by field, a buffer the driver wrote word-wise and the device reads at
//! whatever alignment its payload has. Rust's memory model (C++20's) has no meaning for atomic
//! accesses of different sizes to overlapping bytes that *race*, i.e. are not ordered by
//! happens-before; ordered ones are fine. Ours are ordered wherever both sides follow the
//! protocol: a byte changes hands only through a ring index published after a release fence
//! and read before an acquire fence (the fences of this module), so the writer's accesses
//! happen before the reader's, whatever their widths; the only concurrent accesses to the
//! same bytes are to ring indices and flags, which both sides access at one width (`u16`),
//! and to the vdev status byte (`u8` on both sides).
//! A peer that breaks the protocol (writes a buffer it gave away, a thread playing a
//! scribbling core) can race with us at another width: in another process or on another core
//! that is hardware behaviour (each access is a single load or store of its width, never
//! torn below it), and the value read is then validated like any other; within one process it
//! is outside the model, so an in-process test's hostile peer must write between our steps, never
//! concurrently at another width.
//!
//! Miri's data-race detector checks this in `.ci/run`: on the shared-memory and ring unit
//! tests, and on `tests/two_threads.rs`, where a driver thread and a device thread really run
//! concurrently over one region, each link with its own lock. (With the process-wide
//! `critical-section` lock of `TestEnv`/`StdEnvironment` the two links would share one mutex,
//! and every hand-over would look ordered by it.) What it reported, all fixed: the driver
//! zeroed the rings with word-sized stores while the device polled `avail.idx` as `u16`
//! (`Vring::zero` now stores `u16`s over the avail and used rings); the device parsed the
//! table after `DRIVER_OK` with no fence pairing with the driver's feature and vring-address
//! writes (a real ordering bug on weakly ordered cores: now a release fence before the status
//! store and an acquire fence after reading it); and the device's word-sized read of its
//! table covered the status byte the driver writes with byte stores (`RscConfig::read_vdev`
//! now loads bytes). One overlap remains by design: the device reads its whole table once,
//! at `start`, and the driver writes `u32` fields into it (features, vring addresses)
//! without any hand-over, so the two must not run at the same moment within one process: a
//! firmware reads its table at boot, before the other core's driver starts, and
//! the in-process tests start the device first. Between processes or cores that overlap is
//! hardware behaviour like any other.
//!
//! Weak-memory emulation is off in those runs: Miri's store buffers cannot represent
//! mixed-size atomics on the same bytes even when they are ordered (it stops with an internal
//! error on `copies_of_every_alignment_round_trip`, which races nothing).
//!
//! Under `cfg(loom)` the region is a slice of loom's `AtomicU16` instead of raw memory, so the
//! same ring code can be model-checked; the accessors keep their signatures.

#![allow(unsafe_code)]

use core::fmt;

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicUsize, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{AtomicU16, Ordering};

/// A read or write that would leave the region or break a field's alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessError {
    /// Offset of the refused access from the start of the region.
    pub offset: usize,
    /// Its length in bytes.
    pub len: usize,
    /// The region's length.
    pub region_len: usize,
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "access of {} bytes at offset {:#x} is outside the {:#x}-byte shared region or misaligned",
            self.len, self.offset, self.region_len
        )
    }
}

impl core::error::Error for AccessError {}

/// Memory shared with the other core.
///
/// `SharedRegion` is `Copy`: several handles to the same memory (one per link, one per side of a
/// test) are fine, because no access ever forms a reference to the bytes.
#[derive(Clone, Copy)]
pub struct SharedRegion<'r> {
    #[cfg(not(loom))]
    base: core::ptr::NonNull<u8>,
    #[cfg(not(loom))]
    _life: core::marker::PhantomData<&'r [AtomicU8]>,
    #[cfg(loom)]
    units: &'r [AtomicU16],
    len: usize,
}

impl fmt::Debug for SharedRegion<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRegion")
            .field("base", &self.base_addr())
            .field("len", &self.len)
            .finish()
    }
}

// SAFETY: a `SharedRegion` is a pointer and a length; every access through it is atomic, so
// handles may move to and be shared between threads just like `&[AtomicU8]`.
#[cfg(not(loom))]
unsafe impl Send for SharedRegion<'_> {}
// SAFETY: as above: all accesses are atomic operations, never references to the bytes.
#[cfg(not(loom))]
unsafe impl Sync for SharedRegion<'_> {}

/// The alignment the base of every region must have: enough for every field access (`u32`) and
/// for the word-sized copies.
pub const REGION_ALIGN: usize = 8;

#[cfg(not(loom))]
impl<'r> SharedRegion<'r> {
    /// Wraps memory this program owns, e.g. a `static` array or a test buffer.
    ///
    /// The exclusive borrow guarantees nothing else in this program holds a reference to the
    /// bytes for `'r`; the returned handle can be copied and handed to both sides of a test.
    ///
    /// # Errors
    ///
    /// [`AccessError`] if `mem` is not aligned to [`REGION_ALIGN`] bytes.
    pub fn from_slice(mem: &'r mut [u8]) -> Result<Self, AccessError> {
        let len = mem.len();
        Self::aligned(core::ptr::NonNull::from(mem).cast::<u8>(), len)
    }

    /// Wraps a slice of atomics: memory that other contexts may already share, such as a
    /// firmware's `.resource_table` static that Linux remoteproc writes in place.
    ///
    /// # Errors
    ///
    /// [`AccessError`] if the slice is not aligned to [`REGION_ALIGN`] bytes.
    pub fn from_atomics(cells: &'r [AtomicU8]) -> Result<Self, AccessError> {
        // Every access this module makes is atomic, exactly what `&[AtomicU8]` already allows
        // others to do concurrently, so sharing the bytes this way adds nothing unsound.
        let len = cells.len();
        Self::aligned(core::ptr::NonNull::from(cells).cast::<u8>(), len)
    }

    /// Wraps memory this program does not own as a Rust object: a mapping of a shared file, a
    /// physical window the other core also sees, a guest memory map.
    ///
    /// # Errors
    ///
    /// [`AccessError`] if `base` is not aligned to [`REGION_ALIGN`] bytes.
    ///
    /// # Safety
    ///
    /// `base .. base + len` must be mapped readable and writable for all of `'r`, and nothing in
    /// this program may hold a Rust reference (`&`/`&mut`) into it during `'r`; other processes
    /// and cores may write it at any time.
    pub unsafe fn from_raw(base: *mut u8, len: usize) -> Result<Self, AccessError> {
        let err = AccessError {
            offset: 0,
            len,
            region_len: len,
        };
        Self::aligned(core::ptr::NonNull::new(base).ok_or(err)?, len)
    }

    /// The handle over `len` bytes at `ptr`, refused unless `ptr` is [`REGION_ALIGN`]-aligned.
    /// Each caller's contract makes the memory valid and reference-free for `'r`.
    fn aligned(ptr: core::ptr::NonNull<u8>, len: usize) -> Result<Self, AccessError> {
        if ptr.as_ptr().align_offset(REGION_ALIGN) != 0 {
            return Err(AccessError {
                offset: 0,
                len,
                region_len: len,
            });
        }
        Ok(Self {
            base: ptr,
            _life: core::marker::PhantomData,
            len,
        })
    }

    /// The local address of the first byte, for cache maintenance and diagnostics.
    pub fn base_addr(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// Pointer to `offset`, after checking that `size` bytes there lie inside the region and are
    /// aligned to `align`.
    #[inline(always)]
    fn at(&self, offset: usize, size: usize, align: usize) -> Result<*mut u8, AccessError> {
        let err = AccessError {
            offset,
            len: size,
            region_len: self.len,
        };
        let end = offset.checked_add(size).ok_or(err)?;
        if end > self.len || offset % align != 0 {
            return Err(err);
        }
        // The base is REGION_ALIGN-aligned and align <= REGION_ALIGN, so `offset % align == 0`
        // makes the address aligned too.
        // SAFETY: `offset + size <= len` was checked just above, so the result stays within the
        // allocation the constructor's contract describes.
        Ok(unsafe { self.base.as_ptr().add(offset) })
    }

    /// Reads a `u8`.
    #[inline]
    pub fn read_u8(&self, offset: usize) -> Result<u8, AccessError> {
        let p = self.at(offset, 1, 1)?;
        // SAFETY: `at` checked bounds; the constructor's contract makes the byte valid memory
        // that nobody references, so viewing it as an atomic is sound.
        Ok(unsafe { AtomicU8::from_ptr(p) }.load(Ordering::Relaxed))
    }

    /// Writes a `u8`.
    #[inline]
    pub fn write_u8(&self, offset: usize, v: u8) -> Result<(), AccessError> {
        let p = self.at(offset, 1, 1)?;
        // SAFETY: as in `read_u8`.
        unsafe { AtomicU8::from_ptr(p) }.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// Reads a little-endian `u16` at a 2-aligned offset.
    #[inline]
    pub fn read_u16(&self, offset: usize) -> Result<u16, AccessError> {
        let p = self.at(offset, 2, 2)?;
        // SAFETY: `at` checked bounds and 2-byte alignment; valid, unreferenced memory.
        Ok(u16::from_le(
            unsafe { AtomicU16::from_ptr(p.cast()) }.load(Ordering::Relaxed),
        ))
    }

    /// Writes a little-endian `u16` at a 2-aligned offset.
    #[inline]
    pub fn write_u16(&self, offset: usize, v: u16) -> Result<(), AccessError> {
        let p = self.at(offset, 2, 2)?;
        // SAFETY: as in `read_u16`.
        unsafe { AtomicU16::from_ptr(p.cast()) }.store(v.to_le(), Ordering::Relaxed);
        Ok(())
    }

    /// Reads a little-endian `u32` at a 4-aligned offset.
    #[inline]
    pub fn read_u32(&self, offset: usize) -> Result<u32, AccessError> {
        let p = self.at(offset, 4, 4)?;
        // SAFETY: `at` checked bounds and 4-byte alignment; valid, unreferenced memory.
        Ok(u32::from_le(
            unsafe { AtomicU32::from_ptr(p.cast()) }.load(Ordering::Relaxed),
        ))
    }

    /// Writes a little-endian `u32` at a 4-aligned offset.
    #[inline]
    pub fn write_u32(&self, offset: usize, v: u32) -> Result<(), AccessError> {
        let p = self.at(offset, 4, 4)?;
        // SAFETY: as in `read_u32`.
        unsafe { AtomicU32::from_ptr(p.cast()) }.store(v.to_le(), Ordering::Relaxed);
        Ok(())
    }

    /// Reads `K` consecutive little-endian `u32`s at a 4-aligned offset with one bounds check:
    /// a descriptor, a used element, a message header. Each word is its own access (the
    /// words are not read atomically together).
    #[inline]
    pub fn read_words<const K: usize>(&self, offset: usize) -> Result<[u32; K], AccessError> {
        let p = self.at(offset, 4 * K, 4)?;
        let mut words = [0u32; K];
        for (i, w) in words.iter_mut().enumerate() {
            // SAFETY: `at` checked that the 4K bytes at `p` lie in the region and are 4-aligned,
            // and i < K; valid, unreferenced memory.
            let a = unsafe { AtomicU32::from_ptr(p.add(4 * i).cast()) };
            *w = u32::from_le(a.load(Ordering::Relaxed));
        }
        Ok(words)
    }

    /// Writes `K` consecutive little-endian `u32`s at a 4-aligned offset with one bounds check
    /// (nothing is written when it fails).
    #[inline]
    pub fn write_words<const K: usize>(
        &self,
        offset: usize,
        words: [u32; K],
    ) -> Result<(), AccessError> {
        let p = self.at(offset, 4 * K, 4)?;
        for (i, w) in words.into_iter().enumerate() {
            // SAFETY: as in `read_words`.
            let a = unsafe { AtomicU32::from_ptr(p.add(4 * i).cast()) };
            a.store(w.to_le(), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Copies `dst.len()` bytes out of the region, starting at `offset`.
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> Result<(), AccessError> {
        let p = self.at(offset, dst.len(), 1)?;
        const W: usize = core::mem::size_of::<usize>();
        let mut i = 0;
        // Byte by byte up to word alignment of the source, then whole words, then the tail.
        let head = p.align_offset(W).min(dst.len());
        for (k, d) in dst.iter_mut().enumerate().take(head) {
            // SAFETY: k < dst.len() and the whole range was bounds-checked by `at`.
            *d = unsafe { AtomicU8::from_ptr(p.add(k)) }.load(Ordering::Relaxed);
        }
        i += head;
        while i + W <= dst.len() {
            // SAFETY: `p + i` is word-aligned (we advanced to alignment above) and `i + W` is
            // within the checked range.
            let w = unsafe { AtomicUsize::from_ptr(p.add(i).cast()) }.load(Ordering::Relaxed);
            if let Some(chunk) = dst.get_mut(i..i + W) {
                chunk.copy_from_slice(&w.to_ne_bytes());
            }
            i += W;
        }
        while let Some(d) = dst.get_mut(i) {
            // SAFETY: i < dst.len(), inside the checked range.
            *d = unsafe { AtomicU8::from_ptr(p.add(i)) }.load(Ordering::Relaxed);
            i += 1;
        }
        Ok(())
    }

    /// Copies `src` into the region at `offset`.
    pub fn copy_in(&self, offset: usize, src: &[u8]) -> Result<(), AccessError> {
        let p = self.at(offset, src.len(), 1)?;
        const W: usize = core::mem::size_of::<usize>();
        let head = p.align_offset(W).min(src.len());
        let mut i = 0;
        for (k, s) in src.iter().enumerate().take(head) {
            // SAFETY: k < src.len(), inside the range `at` checked.
            unsafe { AtomicU8::from_ptr(p.add(k)) }.store(*s, Ordering::Relaxed);
        }
        i += head;
        while let Some(chunk) = src.get(i..i + W) {
            let mut w = [0u8; W];
            w.copy_from_slice(chunk);
            // SAFETY: `p + i` is word-aligned and the word lies within the checked range.
            unsafe { AtomicUsize::from_ptr(p.add(i).cast()) }
                .store(usize::from_ne_bytes(w), Ordering::Relaxed);
            i += W;
        }
        while let Some(s) = src.get(i) {
            // SAFETY: i < src.len(), inside the checked range.
            unsafe { AtomicU8::from_ptr(p.add(i)) }.store(*s, Ordering::Relaxed);
            i += 1;
        }
        Ok(())
    }
}

#[cfg(loom)]
impl<'r> SharedRegion<'r> {
    /// Under loom: a region made of loom atomics, two bytes each.
    pub fn from_loom(units: &'r [AtomicU16]) -> Self {
        Self {
            units,
            len: units.len() * 2,
        }
    }

    /// A fake address for diagnostics.
    pub fn base_addr(&self) -> usize {
        self.units.as_ptr() as usize
    }

    fn check(&self, offset: usize, size: usize, align: usize) -> Result<(), AccessError> {
        let err = AccessError {
            offset,
            len: size,
            region_len: self.len,
        };
        let end = offset.checked_add(size).ok_or(err)?;
        if end > self.len || offset % align != 0 {
            return Err(err);
        }
        Ok(())
    }

    fn unit(&self, offset: usize) -> &AtomicU16 {
        &self.units[offset / 2]
    }

    /// Reads a `u8`.
    pub fn read_u8(&self, offset: usize) -> Result<u8, AccessError> {
        self.check(offset, 1, 1)?;
        let u = self.unit(offset).load(Ordering::Relaxed).to_le_bytes();
        Ok(u[offset % 2])
    }

    /// Writes a `u8`.
    pub fn write_u8(&self, offset: usize, v: u8) -> Result<(), AccessError> {
        self.check(offset, 1, 1)?;
        let cell = self.unit(offset);
        let mut cur = cell.load(Ordering::Relaxed);
        loop {
            let mut b = cur.to_le_bytes();
            b[offset % 2] = v;
            match cell.compare_exchange(
                cur,
                u16::from_le_bytes(b),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    /// Reads a `u16` at a 2-aligned offset.
    pub fn read_u16(&self, offset: usize) -> Result<u16, AccessError> {
        self.check(offset, 2, 2)?;
        Ok(self.unit(offset).load(Ordering::Relaxed))
    }

    /// Writes a `u16` at a 2-aligned offset.
    pub fn write_u16(&self, offset: usize, v: u16) -> Result<(), AccessError> {
        self.check(offset, 2, 2)?;
        self.unit(offset).store(v, Ordering::Relaxed);
        Ok(())
    }

    /// Reads a `u32` at a 4-aligned offset (two loom atomics).
    pub fn read_u32(&self, offset: usize) -> Result<u32, AccessError> {
        self.check(offset, 4, 4)?;
        let lo = u32::from(self.unit(offset).load(Ordering::Relaxed));
        let hi = u32::from(self.unit(offset + 2).load(Ordering::Relaxed));
        Ok(lo | (hi << 16))
    }

    /// Writes a `u32` at a 4-aligned offset (two loom atomics).
    pub fn write_u32(&self, offset: usize, v: u32) -> Result<(), AccessError> {
        self.check(offset, 4, 4)?;
        self.unit(offset).store(v as u16, Ordering::Relaxed);
        self.unit(offset + 2)
            .store((v >> 16) as u16, Ordering::Relaxed);
        Ok(())
    }

    /// Reads `K` consecutive `u32`s at a 4-aligned offset (two loom atomics each).
    pub fn read_words<const K: usize>(&self, offset: usize) -> Result<[u32; K], AccessError> {
        self.check(offset, 4 * K, 4)?;
        let mut words = [0u32; K];
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.read_u32(offset + 4 * i)?;
        }
        Ok(words)
    }

    /// Writes `K` consecutive `u32`s at a 4-aligned offset (two loom atomics each).
    pub fn write_words<const K: usize>(
        &self,
        offset: usize,
        words: [u32; K],
    ) -> Result<(), AccessError> {
        self.check(offset, 4 * K, 4)?;
        for (i, w) in words.into_iter().enumerate() {
            self.write_u32(offset + 4 * i, w)?;
        }
        Ok(())
    }

    /// Copies bytes out.
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> Result<(), AccessError> {
        self.check(offset, dst.len(), 1)?;
        for (k, d) in dst.iter_mut().enumerate() {
            *d = self.read_u8(offset + k)?;
        }
        Ok(())
    }

    /// Copies bytes in.
    pub fn copy_in(&self, offset: usize, src: &[u8]) -> Result<(), AccessError> {
        self.check(offset, src.len(), 1)?;
        for (k, s) in src.iter().enumerate() {
            self.write_u8(offset + k, *s)?;
        }
        Ok(())
    }
}

impl SharedRegion<'_> {
    /// The region's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads a little-endian `u64` at a 4-aligned offset as two `u32` halves (low half first).
    ///
    /// The halves are not read atomically together; 64-bit fields (descriptor addresses) are
    /// always published before a release fence, so a reader that acquired the index sees both.
    pub fn read_u64(&self, offset: usize) -> Result<u64, AccessError> {
        let lo = self.read_u32(offset)?;
        let hi = self.read_u32(offset.checked_add(4).ok_or(AccessError {
            offset,
            len: 8,
            region_len: self.len,
        })?)?;
        Ok(u64::from(lo) | (u64::from(hi) << 32))
    }

    /// Writes a little-endian `u64` at a 4-aligned offset as two `u32` halves.
    pub fn write_u64(&self, offset: usize, v: u64) -> Result<(), AccessError> {
        let hi_off = offset.checked_add(4).ok_or(AccessError {
            offset,
            len: 8,
            region_len: self.len,
        })?;
        // Check the whole field first so a failure leaves nothing half-written.
        if hi_off.checked_add(4).is_none_or(|end| end > self.len) {
            return Err(AccessError {
                offset,
                len: 8,
                region_len: self.len,
            });
        }
        self.write_u32(offset, v as u32)?;
        self.write_u32(hi_off, (v >> 32) as u32)
    }

    /// Fills `len` bytes at `offset` with `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<(), AccessError> {
        let chunk = [byte; 64];
        let mut done = 0;
        // Check the whole range before writing anything.
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(AccessError {
                offset,
                len,
                region_len: self.len,
            });
        }
        while done < len {
            let n = (len - done).min(chunk.len());
            self.copy_in(offset + done, &chunk[..n])?;
            done += n;
        }
        Ok(())
    }

    /// Whether `len` bytes at `offset` lie inside the region.
    pub fn contains(&self, offset: usize, len: usize) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len)
    }
}

/// Memory fences, from loom's model under `cfg(loom)`.
pub mod fence {
    #[cfg(not(loom))]
    use core::sync::atomic::{Ordering, fence};
    #[cfg(loom)]
    use loom::sync::atomic::{Ordering, fence};

    /// Release: every earlier write (descriptor, buffer, ring slot) is visible before any later
    /// write (the ring index). Pairs with the other core's [`acquire`] after it reads the index.
    #[inline(always)]
    pub fn release() {
        fence(Ordering::Release);
    }

    /// Acquire: reads after this fence (ring slot, descriptor, buffer) see at least what was
    /// written before the other core's [`release`] that preceded the index value we just read.
    #[inline(always)]
    pub fn acquire() {
        fence(Ordering::Acquire);
    }

    /// Full barrier: our index store is ordered before the load of the other core's
    /// notification-suppression flag (wire.md 3.7 step 5), closing the race where both sides
    /// decide the other need not be notified.
    #[inline(always)]
    pub fn full() {
        fence(Ordering::SeqCst);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[repr(align(8))]
    struct Mem([u8; 64]);

    #[test]
    fn field_access_is_little_endian_and_bounded() {
        let mut m = Mem([0; 64]);
        let r = SharedRegion::from_slice(&mut m.0).unwrap();
        r.write_u32(4, 0x1122_3344).unwrap();
        r.write_u16(8, 0xAABB).unwrap();
        r.write_u64(16, 0x0102_0304_0506_0708).unwrap();
        let mut out = [0u8; 12];
        r.copy_out(4, &mut out).unwrap();
        assert_eq!(&out[..6], &[0x44, 0x33, 0x22, 0x11, 0xBB, 0xAA]);
        assert_eq!(r.read_u64(16).unwrap(), 0x0102_0304_0506_0708);
        assert!(r.read_u32(62).is_err());
        assert!(r.read_u32(6).is_err(), "misaligned");
        assert!(r.read_u16(usize::MAX).is_err());
        assert!(r.write_u64(60, 1).is_err());
        assert_eq!(
            r.read_u32(60).unwrap(),
            0,
            "a refused u64 write leaves nothing behind"
        );
        assert!(r.copy_in(60, &[1; 5]).is_err());
        assert!(r.fill(0, 65, 0).is_err());
    }

    #[test]
    fn word_runs_are_little_endian_checked_once_and_all_or_nothing() {
        let mut m = Mem([0; 64]);
        let r = SharedRegion::from_slice(&mut m.0).unwrap();
        r.write_words(8, [0x1122_3344, 0x5566_7788, 0x99AA_BBCC])
            .unwrap();
        let mut out = [0u8; 12];
        r.copy_out(8, &mut out).unwrap();
        assert_eq!(
            out,
            [
                0x44, 0x33, 0x22, 0x11, 0x88, 0x77, 0x66, 0x55, 0xCC, 0xBB, 0xAA, 0x99
            ]
        );
        assert_eq!(
            r.read_words::<3>(8).unwrap(),
            [0x1122_3344, 0x5566_7788, 0x99AA_BBCC]
        );
        assert_eq!(r.read_words::<2>(12).unwrap(), [0x5566_7788, 0x99AA_BBCC]);
        // The last word in the region, and one word past it.
        r.write_words(60, [7]).unwrap();
        assert_eq!(r.read_words::<1>(60).unwrap(), [7]);
        let e = r.read_words::<2>(60).unwrap_err();
        assert_eq!((e.offset, e.len, e.region_len), (60, 8, 64));
        assert!(r.read_words::<4>(usize::MAX - 3).is_err(), "overflow");
        assert!(r.read_words::<2>(10).is_err(), "misaligned");
        // A refused run writes nothing, not even its first words.
        assert!(r.write_words(56, [1, 2, 3]).is_err());
        assert_eq!(r.read_words::<2>(56).unwrap(), [0, 7]);
        assert!(r.write_words(6, [1]).is_err(), "misaligned");
        assert_eq!(r.read_words::<2>(4).unwrap(), [0, 0x1122_3344]);
    }

    #[test]
    fn copies_of_every_alignment_round_trip() {
        let mut m = Mem([0; 64]);
        let r = SharedRegion::from_slice(&mut m.0).unwrap();
        for off in 0..9 {
            for len in 0..40 {
                let src: [u8; 40] = core::array::from_fn(|i| (i * 7 + off + len) as u8);
                r.fill(0, 64, 0xEE).unwrap();
                r.copy_in(off, &src[..len]).unwrap();
                let mut dst = [0u8; 40];
                r.copy_out(off, &mut dst[..len]).unwrap();
                assert_eq!(&dst[..len], &src[..len]);
                if off > 0 {
                    assert_eq!(r.read_u8(off - 1).unwrap(), 0xEE);
                }
                assert_eq!(r.read_u8(off + len).unwrap(), 0xEE);
            }
        }
    }

    #[test]
    fn refuses_misaligned_base() {
        let mut m = Mem([0; 64]);
        assert!(SharedRegion::from_slice(&mut m.0[1..]).is_err());
    }
}
