//! The board side of a link: address translation, doorbells, cache maintenance.
//!
//! Both "cores" are this one M4, so a doorbell is a bit in the peer's [`Doorbell`] that the main
//! loop polls (it could as well pend an interrupt). The address map is an offset map: the peer
//! sees the shared region at [`PEER_BASE`], so every address in a descriptor or in the resource
//! table is a peer address, never one this core can dereference. The M4 of QEMU has no data
//! cache; the cache hooks count their calls and check that each one covers local addresses
//! inside the region and that every doorbell follows a clean.
//!
//! The barrier is the Cortex-M one ([`Platform::barrier`]): `dmb` for every kind. On M
//! profile `dmb` orders all explicit memory accesses for every observer in the system (there
//! are no shareability domains to name, unlike the `dmb ish` that `core::sync::atomic::fence`
//! gives on Cortex-A/R), which is what a peer core needs. A Cortex-M7 running its data cache
//! over the shared memory cleans and invalidates with the SCB by-address operations, which
//! complete only at a `dsb`: its `barrier` is `dsb` for [`Barrier::Release`] (the slot's
//! clean completes before the index store) and `dmb` for the others.

use core::sync::atomic::{AtomicU32, Ordering};
use rpmsg::{Barrier, LinearMap, Platform, SharedRegion};

/// Where the peer sees the shared region (a bus alias on a real two-core part).
pub const PEER_BASE: u64 = 0x6000_0000;

/// Notify ids rung and not yet handled, one bit per id (ids 0 to 31).
#[derive(Debug)]
pub struct Doorbell {
    pending: AtomicU32,
}

impl Doorbell {
    /// No doorbell rung.
    pub const fn new() -> Self {
        Self {
            pending: AtomicU32::new(0),
        }
    }

    /// Rings notify id `id` (ids from 32 up are folded onto 31).
    pub fn ring(&self, id: u32) {
        self.pending.fetch_or(1 << id.min(31), Ordering::Release);
    }

    /// The ids rung since the last call, as a bit mask.
    pub fn take(&self) -> u32 {
        self.pending.swap(0, Ordering::Acquire)
    }
}

impl Default for Doorbell {
    fn default() -> Self {
        Self::new()
    }
}

/// What the hooks of one platform saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookStats {
    /// `cache_clean` calls.
    pub cleans: u32,
    /// `cache_invalidate` calls.
    pub invalidates: u32,
    /// `notify` calls.
    pub notifies: u32,
    /// Doorbells rung with no clean since the previous one (must stay 0).
    pub notifies_without_clean: u32,
    /// Clean or invalidate calls outside the region and the table section (must stay 0).
    pub outside_region: u32,
    /// `barrier` calls (a `dmb` each).
    pub barriers: u32,
}

/// The platform of one side of the self-test.
#[derive(Debug)]
pub struct QemuPlatform<'d> {
    map: LinearMap,
    local: (usize, usize),
    peer: &'d Doorbell,
    cleans: AtomicU32,
    invalidates: AtomicU32,
    notifies: AtomicU32,
    cleans_at_notify: AtomicU32,
    notifies_without_clean: AtomicU32,
    outside_region: AtomicU32,
    barriers: AtomicU32,
    /// Other memory shared with the peer: the resource table's own section.
    table: (usize, usize),
}

impl<'d> QemuPlatform<'d> {
    /// The same platform, also accepting cache maintenance on `table` (the resource table in
    /// its own section, which the driver writes too).
    pub fn with_table(mut self, table: &SharedRegion<'_>) -> Self {
        self.table = (table.base_addr(), table.len());
        self
    }

    /// A platform for `region` whose doorbells ring `peer`.
    pub fn new(region: &SharedRegion<'_>, peer: &'d Doorbell) -> Self {
        Self {
            map: LinearMap {
                base: PEER_BASE,
                len: region.len(),
            },
            local: (region.base_addr(), region.len()),
            peer,
            cleans: AtomicU32::new(0),
            invalidates: AtomicU32::new(0),
            notifies: AtomicU32::new(0),
            cleans_at_notify: AtomicU32::new(0),
            notifies_without_clean: AtomicU32::new(0),
            outside_region: AtomicU32::new(0),
            barriers: AtomicU32::new(0),
            table: (region.base_addr(), region.len()),
        }
    }

    /// What the hooks saw so far.
    pub fn stats(&self) -> HookStats {
        HookStats {
            cleans: self.cleans.load(Ordering::Relaxed),
            invalidates: self.invalidates.load(Ordering::Relaxed),
            notifies: self.notifies.load(Ordering::Relaxed),
            notifies_without_clean: self.notifies_without_clean.load(Ordering::Relaxed),
            outside_region: self.outside_region.load(Ordering::Relaxed),
            barriers: self.barriers.load(Ordering::Relaxed),
        }
    }

    fn check_local(&self, addr: usize, len: usize) {
        let within = |(base, size): (usize, usize)| {
            addr >= base && addr - base <= size && len <= size - (addr - base)
        };
        if !within(self.local) && !within(self.table) {
            self.outside_region.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Platform for QemuPlatform<'_> {
    type Map = LinearMap;

    fn address_map(&self) -> &LinearMap {
        &self.map
    }

    fn notify(&self, id: u32) {
        let cleans = self.cleans.load(Ordering::Relaxed);
        if self.cleans_at_notify.swap(cleans, Ordering::Relaxed) == cleans {
            self.notifies_without_clean.fetch_add(1, Ordering::Relaxed);
        }
        self.notifies.fetch_add(1, Ordering::Relaxed);
        self.peer.ring(id);
    }

    fn cache_clean(&self, addr: usize, len: usize) {
        self.check_local(addr, len);
        self.cleans.fetch_add(1, Ordering::Relaxed);
    }

    fn cache_invalidate(&self, addr: usize, len: usize) {
        self.check_local(addr, len);
        self.invalidates.fetch_add(1, Ordering::Relaxed);
    }

    fn barrier(&self, _kind: Barrier) {
        self.barriers.fetch_add(1, Ordering::Relaxed);
        cortex_m::asm::dmb();
    }
}
