//! The device side of a split virtqueue: [`DeviceQueue`] takes the buffers the driver made
//! available and returns them on the used ring, checking every index and id the driver wrote.

use super::*;

/// A buffer the device took from the available ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Popped {
    /// Head descriptor id, to return on the used ring.
    pub id: u16,
    /// Peer address of the buffer (untranslated, unchecked).
    pub addr: u64,
    /// Buffer length as the descriptor says.
    pub len: u32,
    /// Descriptor flags.
    pub flags: u16,
}

/// The device side of one virtqueue.
#[derive(Debug, Clone)]
pub struct DeviceQueue<const N: usize> {
    ring: Vring,
    last_avail: u16,
    used_idx: u16,
    /// `used_idx` was taken from memory in this session (see [`DeviceQueue::attach`]).
    used_known: bool,
    held: Outstanding<N>,
}

impl<const N: usize> DeviceQueue<N> {
    /// A device queue over `ring`. Call [`DeviceQueue::attach`] when the link comes up.
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
            last_avail: 0,
            used_idx: 0,
            used_known: false,
            held: Outstanding::new(),
        })
    }

    /// The same, for a caller that has checked `ring.num() <= N` already (an unchecked ring
    /// larger than `N` would only lose track of the descriptors above `N`, never index outside).
    pub(crate) const fn new_checked_by_caller(ring: Vring) -> Self {
        Self {
            ring,
            last_avail: 0,
            used_idx: 0,
            used_known: false,
            held: Outstanding::new(),
        }
    }

    /// The ring.
    pub fn ring(&self) -> &Vring {
        &self.ring
    }

    /// Synchronises with a ring the driver has just set up: our avail position starts at 0, and
    /// our used index will continue from what is in memory (an RPMsg-Lite master pre-fills
    /// vring 1's used ring, wire.md 13 #8).
    ///
    /// The used index is not read here but at the first [`DeviceQueue::pop_avail`] that finds
    /// a buffer, after the acquire fence that makes the driver's publication visible: the
    /// driver may still be writing its used ring when we attach (`rpmsg_lite_master_init`
    /// posts vring 0's buffers before it pre-fills vring 1's used ring, so a device that
    /// attaches in between would otherwise cache 0 and later overwrite the master's count),
    /// and a driver publishes a buffer only once its set-up is done. We need the used index
    /// only to return a buffer, which we must have popped first. The result is `Ok` always
    /// now; it stays a `Result` for the callers that check it.
    pub fn attach(&mut self, r: &SharedRegion<'_>) -> Result<(), Violation> {
        let _ = r;
        self.last_avail = 0;
        self.used_idx = 0;
        self.used_known = false;
        self.held = Outstanding::new();
        Ok(())
    }

    /// Whether the driver has laid this ring out again for a new session (see
    /// docs/architecture.md, "Sessions and epochs"). Two signs, either enough:
    ///
    /// * the used ring no longer holds the index we last stored there (only the device writes
    ///   `used.idx` within a session; a re-laid ring is zeroed, or an RPMsg-Lite master
    ///   pre-fills it). Not before we have taken the used index in this session
    ///   ([`DeviceQueue::attach`]): until then we hold no used position to contradict;
    /// * `avail.idx` went back behind our position to a fresh ring's state: at most `num`,
    ///   with `used.idx` 0. Within a session `avail.idx` never goes back; a fresh ring is
    ///   what Linux's `rp_find_vq` leaves (zeroed, then only buffers posted).
    ///
    /// A hostile jump of `avail.idx` forwards shows neither and stays an `IndexJump`.
    pub fn relaid(&self, r: &SharedRegion<'_>) -> bool {
        self.relaid_with(r, &Coherent)
    }

    /// [`DeviceQueue::relaid`] on a memory system `m`.
    pub fn relaid_with(&self, r: &SharedRegion<'_>, m: &impl Coherence) -> bool {
        m.invalidate(self.ring.used(used::IDX), 2);
        let Ok(used) = self.ring.used_idx(r) else {
            return false;
        };
        if self.used_known && used != self.used_idx {
            return true;
        }
        if self.last_avail == 0 || used != 0 {
            return false;
        }
        m.invalidate(self.ring.avail(avail::IDX), 2);
        let Ok(avail) = self.ring.avail_idx(r) else {
            return false;
        };
        let back = self.last_avail.wrapping_sub(avail);
        back != 0 && back <= self.last_avail && avail <= self.ring.num()
    }

    /// Descriptors we hold now.
    pub fn held(&self) -> u16 {
        self.held.count
    }

    /// Whether the driver has made something available we have not taken.
    pub fn has_avail(&self, r: &SharedRegion<'_>) -> Result<bool, Violation> {
        self.has_avail_with(r, &Coherent)
    }

    /// [`DeviceQueue::has_avail`] on a memory system `m`.
    pub fn has_avail_with(
        &self,
        r: &SharedRegion<'_>,
        m: &impl Coherence,
    ) -> Result<bool, Violation> {
        m.invalidate(self.ring.avail(avail::IDX), 2);
        Ok(self.ring.avail_idx(r)? != self.last_avail)
    }

    /// Takes the next available buffer and reads its descriptor once.
    ///
    /// A head out of range is consumed and reported (there is nothing to return); a head we
    /// still hold is consumed and reported (returning it would return it twice). An index that
    /// ran ahead by more than `num` is reported without consuming anything.
    ///
    /// # Errors
    ///
    /// The [`Violation`] found.
    pub fn pop_avail(&mut self, r: &SharedRegion<'_>) -> Result<Option<Popped>, Violation> {
        self.pop_avail_with(r, &Coherent)
    }

    /// [`DeviceQueue::pop_avail`] on a memory system `m`: the index is invalidated and read,
    /// then (after the acquire barrier) the slot and the descriptor.
    ///
    /// # Errors
    ///
    /// As [`DeviceQueue::pop_avail`].
    pub fn pop_avail_with(
        &mut self,
        r: &SharedRegion<'_>,
        m: &impl Coherence,
    ) -> Result<Option<Popped>, Violation> {
        m.invalidate(self.ring.avail(avail::IDX), 2);
        let idx = self.ring.avail_idx(r)?;
        let pending = idx.wrapping_sub(self.last_avail);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.ring.num() {
            return Err(Violation::IndexJump {
                idx,
                shadow: self.last_avail,
                num: self.ring.num(),
            });
        }
        // Acquire: the slot, descriptor and buffer are read after the index that published
        // them; pairs with the driver's release before its `avail.idx` store.
        m.barrier(Barrier::Acquire);
        if !self.used_known {
            // The driver's first publication of this session: whatever it wrote into the used
            // ring during its set-up is visible now (see `attach`).
            m.invalidate(self.ring.used(used::IDX), 2);
            self.used_idx = self.ring.used_idx(r)?;
            self.used_known = true;
        }
        let slot = self.last_avail & self.ring.mask();
        m.invalidate(self.ring.avail(avail::ring(slot)), 2);
        let id = r.read_u16(self.ring.avail(avail::ring(slot)))?;
        self.last_avail = self.last_avail.wrapping_add(1);
        if id >= self.ring.num() {
            return Err(Violation::IdOutOfRange {
                id: u32::from(id),
                num: self.ring.num(),
            });
        }
        if self.held.get(id) {
            return Err(Violation::AlreadyHeld { id });
        }
        m.invalidate(self.ring.desc(id), 16);
        let (addr, len, flags) = self.ring.read_desc(r, id)?;
        self.held.set(id, true);
        Ok(Some(Popped {
            id,
            addr,
            len,
            flags,
        }))
    }

    /// Undoes the [`DeviceQueue::pop_avail`] that just returned `id`: the buffer stays
    /// available, to be taken (and read afresh) by the next `pop_avail`. Nothing was written
    /// to the ring by the pop, so the driver cannot tell.
    pub(crate) fn unpop(&mut self, id: u16) {
        self.last_avail = self.last_avail.wrapping_sub(1);
        self.held.set(id, false);
    }

    /// Returns descriptor `id` with `len` on the used ring: element, release fence, index.
    ///
    /// # Errors
    ///
    /// [`Violation::NotOutstanding`] if we do not hold `id` (our own misuse, refused rather
    /// than corrupting the ring), [`Violation::OutOfRegion`] if the ring is not in the region.
    pub fn push_used(&mut self, r: &SharedRegion<'_>, id: u16, len: u32) -> Result<(), Violation> {
        self.push_used_with(r, id, len, &Coherent)
    }

    /// [`DeviceQueue::push_used`] on a memory system `m`: the element is cleaned before the
    /// release barrier, the index after its store.
    ///
    /// # Errors
    ///
    /// As [`DeviceQueue::push_used`].
    pub fn push_used_with(
        &mut self,
        r: &SharedRegion<'_>,
        id: u16,
        len: u32,
        m: &impl Coherence,
    ) -> Result<(), Violation> {
        if !self.held.get(id) {
            return Err(Violation::NotOutstanding { id });
        }
        let slot = self.used_idx & self.ring.mask();
        // The element: id, then len.
        r.write_words(self.ring.used(used::id(slot)), [u32::from(id), len])?;
        m.clean(self.ring.used(used::id(slot)), 8);
        // Release: the element and what we wrote into the buffer are visible before the index
        // that returns them; pairs with the driver's acquire after it reads `used.idx`.
        m.barrier(Barrier::Release);
        self.used_idx = self.used_idx.wrapping_add(1);
        r.write_u16(self.ring.used(used::IDX), self.used_idx)?;
        m.clean(self.ring.used(used::IDX), 2);
        self.held.set(id, false);
        Ok(())
    }

    /// Whether the driver wants an interrupt now (it did not set `VRING_AVAIL_F_NO_INTERRUPT`).
    pub fn needs_notify(&self, r: &SharedRegion<'_>) -> Result<bool, Violation> {
        self.needs_notify_with(r, &Coherent)
    }

    /// [`DeviceQueue::needs_notify`] on a memory system `m`.
    pub fn needs_notify_with(
        &self,
        r: &SharedRegion<'_>,
        m: &impl Coherence,
    ) -> Result<bool, Violation> {
        // Full fence: our `used.idx` store is ordered before the `avail.flags` load (3.7 step 5).
        m.barrier(Barrier::Full);
        m.invalidate(self.ring.avail(avail::FLAGS), 2);
        Ok(r.read_u16(self.ring.avail(avail::FLAGS))? & VRING_AVAIL_F_NO_INTERRUPT == 0)
    }

    /// Asks the driver to notify us again and tells whether it already published something
    /// meanwhile: clears `VRING_USED_F_NO_NOTIFY`, full fence, re-reads `avail.idx`. Call it
    /// before sleeping on the available ring (virtio's enable-notification step).
    pub fn enable_notify(&self, r: &SharedRegion<'_>) -> Result<bool, Violation> {
        self.enable_notify_with(r, &Coherent)
    }

    /// [`DeviceQueue::enable_notify`] on a memory system `m`.
    pub fn enable_notify_with(
        &self,
        r: &SharedRegion<'_>,
        m: &impl Coherence,
    ) -> Result<bool, Violation> {
        self.set_no_notify_with(r, false, m)?;
        // Full fence: the flag store is ordered before the `avail.idx` load; pairs with the
        // driver's full fence between its `avail.idx` store and its flag load.
        m.barrier(Barrier::Full);
        self.has_avail_with(r, m)
    }

    /// Asks the driver not to notify us (`VRING_USED_F_NO_NOTIFY`), or to notify again.
    pub fn set_no_notify(&self, r: &SharedRegion<'_>, on: bool) -> Result<(), Violation> {
        self.set_no_notify_with(r, on, &Coherent)
    }

    /// [`DeviceQueue::set_no_notify`] on a memory system `m`.
    pub fn set_no_notify_with(
        &self,
        r: &SharedRegion<'_>,
        on: bool,
        m: &impl Coherence,
    ) -> Result<(), Violation> {
        r.write_u16(
            self.ring.used(used::FLAGS),
            if on { VRING_USED_F_NO_NOTIFY } else { 0 },
        )?;
        m.clean(self.ring.used(used::FLAGS), 2);
        Ok(())
    }
}
