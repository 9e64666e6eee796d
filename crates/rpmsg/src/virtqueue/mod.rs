//! The split virtqueue, both sides: [`DriverQueue`] (adds buffers to the available ring, takes
//! them back from the used ring) and [`DeviceQueue`] (takes buffers from the available ring,
//! returns them on the used ring).
//!
//! Indices are free-running `u16` counters that wrap; a slot is `idx & (num - 1)`. Every number the
//! peer writes (its ring index, a head id, a used id) is read once into a local, checked, and only
//! then used: an index that runs ahead by more than the queue size, an id out of range, or an id
//! that is not outstanding becomes a [`Violation`]; nothing the peer writes can make us index
//! outside the ring or the region (the region's accessors check every offset again).
//!
//! Fences follow wire.md section 3.7: the producer writes the slot, issues a release fence, then
//! bumps the index; the consumer reads the index, issues an acquire fence, then reads the slot and
//! the buffer. A full fence separates our index store from reading the peer's suppression flag.
//!
//! Capacity `N` bounds the queue size we accept (`num <= N`); it sizes the per-descriptor
//! bookkeeping, so a 2-entry MCU link pays for 2 entries, not 256.

use crate::port::{Barrier, Platform};
use crate::shm::{AccessError, SharedRegion, fence};
use crate::wire::vring::{
    VRING_AVAIL_F_NO_INTERRUPT, VRING_USED_F_NO_NOTIFY, VringLayout, avail, used,
};
use core::fmt;

#[cfg(all(test, not(loom)))]
mod index_tests;
#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

mod device;
pub use device::{DeviceQueue, Popped};

/// How a queue reaches shared memory beyond the region's accessors: the cache maintenance and
/// the barriers of the memory system. Offsets are region offsets.
///
/// Every queue operation cleans what it wrote and invalidates what it is about to read of the
/// ring (index, slot, element, descriptor, flags) in publish order: slot written and cleaned,
/// [`Barrier::Release`], index written and cleaned; index invalidated and read,
/// [`Barrier::Acquire`], slot invalidated and read. The buffers are the caller's. The plain
/// methods (`publish`, `pop_avail`, ...) use [`Coherent`]; the `_with` forms take the
/// platform's (the link passes its `Platform`'s hooks).
pub trait Coherence {
    /// Writes back `len` bytes at region offset `offset` (a store the peer must see).
    fn clean(&self, offset: usize, len: usize);
    /// Discards our cached copy of `len` bytes at `offset` (before reading what the peer wrote).
    fn invalidate(&self, offset: usize, len: usize);
    /// Orders our shared-memory accesses as `kind` says.
    fn barrier(&self, kind: Barrier);
}

/// Coherent shared memory (or uncached): no maintenance, the language's fences.
#[derive(Debug, Clone, Copy, Default)]
pub struct Coherent;

impl Coherence for Coherent {
    #[inline(always)]
    fn clean(&self, _offset: usize, _len: usize) {}
    #[inline(always)]
    fn invalidate(&self, _offset: usize, _len: usize) {}
    #[inline(always)]
    fn barrier(&self, kind: Barrier) {
        match kind {
            Barrier::Release => fence::release(),
            Barrier::Acquire => fence::acquire(),
            Barrier::Full => fence::full(),
        }
    }
}

/// A [`Platform`]'s cache hooks and barrier as the queues need them: region offsets turned
/// into our addresses.
pub(crate) struct Mem<'a, P> {
    platform: &'a P,
    base: usize,
}

impl<'a, P: Platform> Mem<'a, P> {
    /// `platform`'s memory system over `region`.
    #[inline(always)]
    pub(crate) fn new(platform: &'a P, region: &SharedRegion<'_>) -> Self {
        Self {
            platform,
            base: region.base_addr(),
        }
    }
}

impl<P: Platform> Coherence for Mem<'_, P> {
    #[inline(always)]
    fn clean(&self, offset: usize, len: usize) {
        self.platform.cache_clean(self.base + offset, len);
    }
    #[inline(always)]
    fn invalidate(&self, offset: usize, len: usize) {
        self.platform.cache_invalidate(self.base + offset, len);
    }
    #[inline(always)]
    fn barrier(&self, kind: Barrier) {
        self.platform.barrier(kind);
    }
}

/// A fault of the peer found in the rings. Each names the offending values.
// A 4-byte tag: every payload then starts 4-aligned, so a violation moves between results,
// errors and the counters as whole words (a 2-byte tag left 14 unaligned bytes, copied by a
// `memcpy` call on Cortex-M). Fields are declared smallest-aligned first, which keeps it 16
// bytes. Tags start at 1, so `None::<Violation>` is tag 0 and a zeroed `LinkStats` is its
// default: a remote's counters start as part of one zero fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[repr(u32)]
pub enum Violation {
    /// The peer's ring index ran ahead of ours by more than the queue holds.
    IndexJump {
        /// Index the peer published.
        idx: u16,
        /// Our consumer position.
        shadow: u16,
        /// Queue size.
        num: u16,
    } = 1,
    /// A head or used id not below the queue size.
    IdOutOfRange {
        /// The id found.
        id: u32,
        /// Queue size.
        num: u16,
    } = 2,
    /// The device returned a descriptor we had not made available (or returned it twice).
    NotOutstanding {
        /// The id found.
        id: u16,
    } = 3,
    /// The driver made available a descriptor the device still holds.
    AlreadyHeld {
        /// The head found.
        id: u16,
    } = 4,
    /// A descriptor points outside shared memory.
    BadAddress {
        /// Length found.
        len: u32,
        /// Peer address found.
        addr: u64,
    } = 5,
    /// A descriptor is chained or indirect; RPMsg uses one descriptor per message.
    Chained {
        /// The head.
        id: u16,
        /// Its flags.
        flags: u16,
    } = 6,
    /// A message header claims more payload than its buffer holds.
    LengthTooLarge {
        /// Payload length the header claims.
        len: u32,
        /// Payload bytes the buffer holds.
        cap: u32,
    } = 7,
    /// A ring or buffer lies outside the region.
    OutOfRegion(AccessError) = 8,
    /// A resource-table field the driver writes (vring address, size, alignment) holds
    /// something impossible.
    BadTable(&'static str) = 9,
    /// The resource table in shared memory is malformed: its `field` holds `value` (an
    /// offset, an end or a count), which the table's format or its area does not allow. The
    /// table is the other side's (or its area, `RscConfig::table_len`, is configured too
    /// short for it).
    MalformedTable {
        /// What is wrong, e.g. "vdev" (running past the table's end) or "num".
        field: &'static str,
        /// The value found (saturated to 32 bits).
        value: u32,
    } = 10,
    /// RPMsg-Lite layout: a buffer the driver posted (at link-up, its first one) is not where
    /// our layout puts the buffers, so the two sides disagree on `VRING_SIZE` or `VRING_ALIGN`
    /// (or the buffer size or count).
    GeometryMismatch {
        /// Region offset of the driver's buffer (`u32::MAX`: outside the region).
        found: u32,
        /// Region offset of our first buffer.
        expected: u32,
    } = 11,
    /// The device returned a receive buffer with a used length below the 16-byte header: it
    /// wrote no message there, and what the buffer holds is an old one.
    ShortUsed {
        /// The descriptor returned.
        id: u16,
        /// The used length it came with.
        len: u32,
    } = 12,
}

impl Violation {
    /// Whether the ring itself can no longer be used: an index we cannot trust any more, or a
    /// ring outside the region. Every other violation costs one buffer (returned where a peer
    /// cannot misread it, otherwise kept).
    pub fn breaks_ring(&self) -> bool {
        matches!(self, Self::IndexJump { .. } | Self::OutOfRegion(_))
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::IndexJump { idx, shadow, num } => write!(
                f,
                "peer ring index {idx} runs {} entries ahead of {shadow}, more than the {num} the queue holds",
                idx.wrapping_sub(shadow)
            ),
            Self::IdOutOfRange { id, num } => {
                write!(f, "descriptor id {id} is out of range for a queue of {num}")
            }
            Self::NotOutstanding { id } => {
                write!(
                    f,
                    "descriptor {id} returned by the peer was not outstanding"
                )
            }
            Self::AlreadyHeld { id } => {
                write!(f, "descriptor {id} made available again while still held")
            }
            Self::BadAddress { addr, len } => {
                write!(
                    f,
                    "buffer at {addr:#x} ({len} bytes) lies outside shared memory"
                )
            }
            Self::Chained { id, flags } => {
                write!(
                    f,
                    "descriptor {id} has flags {flags:#x}: chained or indirect buffers are not rpmsg"
                )
            }
            Self::LengthTooLarge { len, cap } => {
                write!(
                    f,
                    "message claims {len} payload bytes in a buffer that holds {cap}"
                )
            }
            Self::OutOfRegion(e) => write!(f, "ring access outside shared memory: {e}"),
            Self::BadTable(what) => write!(f, "driver wrote an invalid resource table: {what}"),
            Self::GeometryMismatch { found, expected } => write!(
                f,
                "a buffer the driver posted is at offset {found:#x} but our layout puts buffers from {expected:#x}: VRING_SIZE (--vring-size) or VRING_ALIGN (--align) differ between the two sides (or the buffer size or count); configure both alike"
            ),
            Self::MalformedTable { field, value } => write!(
                f,
                "the peer's resource table is malformed: {field} {value:#x}; fix the table the other side writes (or give it a larger area, RscConfig::table_len)"
            ),
            Self::ShortUsed { id, len } => write!(
                f,
                "device returned buffer {id} with used length {len}, shorter than a message header"
            ),
        }
    }
}

impl core::error::Error for Violation {}

impl From<AccessError> for Violation {
    fn from(e: AccessError) -> Self {
        Self::OutOfRegion(e)
    }
}

/// One vring placed in the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vring {
    /// Region offset of the descriptor table (the ring's start).
    pub base: usize,
    /// Where the parts lie relative to `base`.
    pub layout: VringLayout,
}

impl Vring {
    /// A ring of size 0 at offset 0, for state not yet set up (every access through it is
    /// still bounds-checked by the region).
    pub(crate) const UNPLACED: Self = Self {
        base: 0,
        layout: VringLayout {
            num: 0,
            align: 0,
            avail: 0,
            used: 0,
            size: 0,
        },
    };

    /// Places a ring of `layout` at region offset `base`.
    ///
    /// # Errors
    ///
    /// [`AccessError`] when the ring does not fit in `region`, `base` is not 16-byte aligned,
    /// or `layout` is not the one [`VringLayout::new`] gives for its `num` and `align` (its
    /// fields are public; a size that is not a power of two, or parts that do not match the
    /// size, would break the slot arithmetic).
    pub fn new(
        region: &SharedRegion<'_>,
        base: usize,
        layout: VringLayout,
    ) -> Result<Self, AccessError> {
        if base % 16 != 0
            || !region.contains(base, layout.size)
            || VringLayout::new(layout.num, layout.align).ok() != Some(layout)
        {
            return Err(AccessError {
                offset: base,
                len: layout.size,
                region_len: region.len(),
            });
        }
        Ok(Self { base, layout })
    }

    /// Queue size.
    pub fn num(&self) -> u16 {
        self.layout.num
    }

    fn mask(&self) -> u16 {
        self.layout.num - 1
    }

    /// Region offset of descriptor `i`.
    pub fn desc(&self, i: u16) -> usize {
        self.base + self.layout.desc(i)
    }

    fn avail(&self, field: usize) -> usize {
        self.base + self.layout.avail + field
    }

    fn used(&self, field: usize) -> usize {
        self.base + self.layout.used + field
    }

    /// Region range of the available ring (for cache maintenance).
    pub fn avail_range(&self) -> (usize, usize) {
        (
            self.base + self.layout.avail,
            6 + 2 * usize::from(self.layout.num),
        )
    }

    /// Region range of the used ring (for cache maintenance).
    pub fn used_range(&self) -> (usize, usize) {
        (
            self.base + self.layout.used,
            6 + 8 * usize::from(self.layout.num),
        )
    }

    /// Region offset of `avail.idx`.
    pub fn avail_idx_at(&self) -> usize {
        self.avail(avail::IDX)
    }

    /// Region offset of `used.idx`.
    pub fn used_idx_at(&self) -> usize {
        self.used(used::IDX)
    }

    /// Writes descriptor `i`.
    pub fn write_desc(
        &self,
        r: &SharedRegion<'_>,
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
    ) -> Result<(), AccessError> {
        // `next` is meaningless without NEXT; keep the `i + 1` chain other peers leave there.
        let next = i.wrapping_add(1) & self.mask();
        r.write_words(
            self.desc(i),
            [
                addr as u32,
                (addr >> 32) as u32,
                len,
                u32::from(flags) | (u32::from(next) << 16),
            ],
        )
    }

    /// Reads descriptor `i`: (addr, len, flags).
    pub fn read_desc(&self, r: &SharedRegion<'_>, i: u16) -> Result<(u64, u32, u16), AccessError> {
        // addr (low, high), len, flags | next << 16: one bounds check for the whole entry.
        let [lo, hi, len, flags] = r.read_words(self.desc(i))?;
        Ok((u64::from(lo) | (u64::from(hi) << 32), len, flags as u16))
    }

    /// Zeroes the whole ring (the driver does this before first use).
    ///
    /// The descriptor table by word-sized copies; the avail and used rings by `u16` stores. The
    /// other core may be polling their flags and indices (`u16`) while we zero them (a device
    /// comes up on a non-zero `avail.idx`), and two unordered accesses to the same bytes must
    /// have the same width to be defined (shm.rs, "Accesses of different widths"); Miri's race
    /// detector caught the word-sized zeroing here (tests/two_threads.rs).
    pub fn zero(&self, r: &SharedRegion<'_>) -> Result<(), AccessError> {
        let rings = self.layout.avail;
        if !r.contains(self.base, self.layout.size) {
            return Err(AccessError {
                offset: self.base,
                len: self.layout.size,
                region_len: r.len(),
            });
        }
        r.fill(self.base, rings, 0)?;
        for off in (rings..self.layout.size).step_by(2) {
            r.write_u16(self.base + off, 0)?;
        }
        Ok(())
    }

    /// Reads `avail.idx` as it is in memory.
    pub fn avail_idx(&self, r: &SharedRegion<'_>) -> Result<u16, AccessError> {
        r.read_u16(self.avail(avail::IDX))
    }

    /// Reads `used.idx` as it is in memory.
    pub fn used_idx(&self, r: &SharedRegion<'_>) -> Result<u16, AccessError> {
        r.read_u16(self.used(used::IDX))
    }
}

/// Per-descriptor bookkeeping: is it with the peer right now?
#[derive(Debug, Clone, Copy)]
struct Outstanding<const N: usize> {
    bits: [bool; N],
    count: u16,
}

impl<const N: usize> Outstanding<N> {
    const fn new() -> Self {
        Self {
            bits: [false; N],
            count: 0,
        }
    }

    fn get(&self, i: u16) -> bool {
        self.bits.get(usize::from(i)).copied().unwrap_or(false)
    }

    fn set(&mut self, i: u16, v: bool) {
        if let Some(b) = self.bits.get_mut(usize::from(i)) {
            if *b != v {
                self.count = if v {
                    self.count.wrapping_add(1)
                } else {
                    self.count.wrapping_sub(1)
                };
            }
            *b = v;
        }
    }
}

/// Why a queue could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// The ring's size.
    pub num: u16,
    /// The capacity compiled in.
    pub capacity: usize,
}

/// The driver side of one virtqueue.
#[derive(Debug, Clone)]
pub struct DriverQueue<const N: usize> {
    ring: Vring,
    avail_idx: u16,
    last_used: u16,
    out: Outstanding<N>,
}

impl<const N: usize> DriverQueue<N> {
    /// A driver queue over `ring`, with private indices at 0 (call [`DriverQueue::reset`] on a
    /// ring whose memory you have not just zeroed).
    ///
    /// # Errors
    ///
    /// [`TooLarge`] when `ring.num() > N`.
    pub fn new(ring: Vring) -> Result<Self, TooLarge> {
        if usize::from(ring.num()) > N {
            return Err(TooLarge {
                num: ring.num(),
                capacity: N,
            });
        }
        Ok(Self {
            ring,
            avail_idx: 0,
            last_used: 0,
            out: Outstanding::new(),
        })
    }

    /// The ring.
    pub fn ring(&self) -> &Vring {
        &self.ring
    }

    /// Starts over on a ring that is all zeroes: indices 0, nothing outstanding.
    pub fn reset(&mut self) {
        self.avail_idx = 0;
        self.last_used = 0;
        self.out = Outstanding::new();
    }

    /// Descriptors the device holds now.
    pub fn outstanding(&self) -> u16 {
        self.out.count
    }

    /// Whether descriptor `id` is with the device.
    pub fn is_outstanding(&self, id: u16) -> bool {
        self.out.get(id)
    }

    /// Makes descriptor `id` (already written) available: slot, release fence, index.
    ///
    /// # Errors
    ///
    /// [`Violation::IdOutOfRange`] or [`Violation::AlreadyHeld`] on our own misuse (never the
    /// peer's), [`Violation::OutOfRegion`] if the ring is not in the region.
    pub fn publish(&mut self, r: &SharedRegion<'_>, id: u16) -> Result<(), Violation> {
        self.publish_with(r, id, &Coherent)
    }

    /// [`DriverQueue::publish`] on a memory system `m`: the descriptor and the slot are
    /// cleaned before the release barrier, the index after its store.
    ///
    /// # Errors
    ///
    /// As [`DriverQueue::publish`].
    pub fn publish_with(
        &mut self,
        r: &SharedRegion<'_>,
        id: u16,
        m: &impl Coherence,
    ) -> Result<(), Violation> {
        if id >= self.ring.num() {
            return Err(Violation::IdOutOfRange {
                id: u32::from(id),
                num: self.ring.num(),
            });
        }
        if self.out.get(id) {
            return Err(Violation::AlreadyHeld { id });
        }
        let slot = self.avail_idx & self.ring.mask();
        let at = self.ring.avail(avail::ring(slot));
        r.write_u16(at, id)?;
        m.clean(self.ring.desc(id), 16);
        m.clean(at, 2);
        // Release: the descriptor, the buffer and the slot are visible before the index that
        // hands them over; pairs with the device's acquire after it reads `avail.idx`
        // (virtio 1.2 section 2.7.13.3).
        m.barrier(Barrier::Release);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        r.write_u16(self.ring.avail(avail::IDX), self.avail_idx)?;
        m.clean(self.ring.avail(avail::IDX), 2);
        self.out.set(id, true);
        Ok(())
    }

    /// Whether the device wants a notification now (it did not set `VRING_USED_F_NO_NOTIFY`).
    pub fn needs_notify(&self, r: &SharedRegion<'_>) -> Result<bool, Violation> {
        self.needs_notify_with(r, &Coherent)
    }

    /// [`DriverQueue::needs_notify`] on a memory system `m`.
    pub fn needs_notify_with(
        &self,
        r: &SharedRegion<'_>,
        m: &impl Coherence,
    ) -> Result<bool, Violation> {
        // Full fence: our `avail.idx` store is ordered before the `used.flags` load, so a device
        // that clears NO_NOTIFY and then re-checks `avail.idx` cannot miss both (3.7 step 5).
        m.barrier(Barrier::Full);
        m.invalidate(self.ring.used(used::FLAGS), 2);
        Ok(r.read_u16(self.ring.used(used::FLAGS))? & VRING_USED_F_NO_NOTIFY == 0)
    }

    /// Asks the device not to interrupt us (`VRING_AVAIL_F_NO_INTERRUPT`), or to interrupt again.
    pub fn set_no_interrupt(&self, r: &SharedRegion<'_>, on: bool) -> Result<(), Violation> {
        self.set_no_interrupt_with(r, on, &Coherent)
    }

    /// [`DriverQueue::set_no_interrupt`] on a memory system `m`.
    pub fn set_no_interrupt_with(
        &self,
        r: &SharedRegion<'_>,
        on: bool,
        m: &impl Coherence,
    ) -> Result<(), Violation> {
        r.write_u16(
            self.ring.avail(avail::FLAGS),
            if on { VRING_AVAIL_F_NO_INTERRUPT } else { 0 },
        )?;
        m.clean(self.ring.avail(avail::FLAGS), 2);
        Ok(())
    }

    /// Asks the device to interrupt us again and tells whether it already returned something
    /// meanwhile: clears `VRING_AVAIL_F_NO_INTERRUPT`, full fence, re-reads `used.idx`. Call it
    /// before sleeping on the used ring; without the fence the flag store and the index load
    /// may pass each other and the interrupt be lost (the loom model shows it).
    pub fn enable_interrupt(&self, r: &SharedRegion<'_>) -> Result<bool, Violation> {
        self.enable_interrupt_with(r, &Coherent)
    }

    /// [`DriverQueue::enable_interrupt`] on a memory system `m`.
    pub fn enable_interrupt_with(
        &self,
        r: &SharedRegion<'_>,
        m: &impl Coherence,
    ) -> Result<bool, Violation> {
        self.set_no_interrupt_with(r, false, m)?;
        // Full fence: the flag store is ordered before the `used.idx` load; pairs with the
        // device's full fence between its `used.idx` store and its flag load.
        m.barrier(Barrier::Full);
        self.has_used_with(r, m)
    }

    /// Whether the device has returned something we have not taken yet.
    pub fn has_used(&self, r: &SharedRegion<'_>) -> Result<bool, Violation> {
        self.has_used_with(r, &Coherent)
    }

    /// [`DriverQueue::has_used`] on a memory system `m`.
    pub fn has_used_with(
        &self,
        r: &SharedRegion<'_>,
        m: &impl Coherence,
    ) -> Result<bool, Violation> {
        m.invalidate(self.ring.used(used::IDX), 2);
        Ok(self.ring.used_idx(r)? != self.last_used)
    }

    /// Takes the next returned descriptor: `(id, used.len)`.
    ///
    /// A bad element (id out of range, not outstanding) is consumed and reported, so one bad
    /// entry cannot wedge the queue; an index that ran ahead by more than `num` is reported
    /// without consuming anything (nothing after it can be trusted).
    ///
    /// # Errors
    ///
    /// The [`Violation`] found.
    pub fn pop_used(&mut self, r: &SharedRegion<'_>) -> Result<Option<(u16, u32)>, Violation> {
        self.pop_used_with(r, &Coherent)
    }

    /// [`DriverQueue::pop_used`] on a memory system `m`: the index is invalidated and read,
    /// then (after the acquire barrier) the element.
    ///
    /// # Errors
    ///
    /// As [`DriverQueue::pop_used`].
    pub fn pop_used_with(
        &mut self,
        r: &SharedRegion<'_>,
        m: &impl Coherence,
    ) -> Result<Option<(u16, u32)>, Violation> {
        m.invalidate(self.ring.used(used::IDX), 2);
        let idx = self.ring.used_idx(r)?;
        let pending = idx.wrapping_sub(self.last_used);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.ring.num() {
            return Err(Violation::IndexJump {
                idx,
                shadow: self.last_used,
                num: self.ring.num(),
            });
        }
        // Acquire: the element and the buffer are read after the index that published them;
        // pairs with the device's release before its `used.idx` store.
        m.barrier(Barrier::Acquire);
        self.take_used(r, m).map(Some)
    }

    /// Takes every descriptor the device has returned by now, reading `used.idx` once (a
    /// batch costs one read of that contended line, not one per entry): `f(id, used.len)` for
    /// each, in ring order. `Ok(n)`: how many. A bad element is consumed and reported as
    /// [`DriverQueue::pop_used`] does, ending the batch (call again for the rest); an index
    /// that ran ahead by more than `num` is reported without consuming anything.
    ///
    /// # Errors
    ///
    /// The [`Violation`] found.
    pub fn pop_used_all(
        &mut self,
        r: &SharedRegion<'_>,
        f: impl FnMut(u16, u32),
    ) -> Result<u16, Violation> {
        self.pop_used_all_with(r, &Coherent, f)
    }

    /// [`DriverQueue::pop_used_all`] on a memory system `m`: the index is invalidated and
    /// read once, then (after the acquire barrier) each element.
    ///
    /// # Errors
    ///
    /// As [`DriverQueue::pop_used_all`].
    pub fn pop_used_all_with(
        &mut self,
        r: &SharedRegion<'_>,
        m: &impl Coherence,
        mut f: impl FnMut(u16, u32),
    ) -> Result<u16, Violation> {
        m.invalidate(self.ring.used(used::IDX), 2);
        let idx = self.ring.used_idx(r)?;
        let pending = idx.wrapping_sub(self.last_used);
        if pending > self.ring.num() {
            return Err(Violation::IndexJump {
                idx,
                shadow: self.last_used,
                num: self.ring.num(),
            });
        }
        if pending == 0 {
            return Ok(0);
        }
        // Acquire: every element up to `idx`, and its buffer, is read after the index that
        // published it; pairs with the device's release before its `used.idx` store.
        m.barrier(Barrier::Acquire);
        for _ in 0..pending {
            let (id, len) = self.take_used(r, m)?;
            f(id, len);
        }
        Ok(pending)
    }

    /// Reads and checks the element at `last_used`, which the caller saw published (after
    /// the acquire barrier), and consumes it.
    fn take_used(
        &mut self,
        r: &SharedRegion<'_>,
        m: &impl Coherence,
    ) -> Result<(u16, u32), Violation> {
        let slot = self.last_used & self.ring.mask();
        m.invalidate(self.ring.used(used::id(slot)), 8);
        // The element's id and len, with one bounds check.
        let [id, len] = r.read_words(self.ring.used(used::id(slot)))?;
        self.last_used = self.last_used.wrapping_add(1);
        let id16 = match u16::try_from(id) {
            Ok(i) if i < self.ring.num() => i,
            _ => {
                return Err(Violation::IdOutOfRange {
                    id,
                    num: self.ring.num(),
                });
            }
        };
        if !self.out.get(id16) {
            return Err(Violation::NotOutstanding { id: id16 });
        }
        self.out.set(id16, false);
        Ok((id16, len))
    }
}
