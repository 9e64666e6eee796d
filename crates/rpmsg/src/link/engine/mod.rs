//! The protocol engine under [`Link`](super::Link): the state of one link and every step of
//! the protocol on it, as `&mut self` methods of [`State`] that take no lock and do no I/O
//! beyond the shared region and the platform hooks ([`Io`]).
//!
//! The shell (`Link`) holds the state behind the environment's lock, runs one step per
//! critical section or several, and performs the [`Effects`] a step asks for (doorbells,
//! wake-ups) after releasing it; callbacks a step hands back ([`Next`]) run outside too.
//!
//! * `mod.rs`: the state, the link-up and session steps (driver set-up, device attach).
//! * `rx.rs`: the receive half: take a message, check it, dispatch it, give its buffer back.
//! * `tx.rs`: the transmit half: take a free buffer, publish a message.

mod rx;
mod tx;

use super::{Config, LinkStats, Role};
use crate::buffer::RxInfo;
use crate::endpoint::{RxHandler, RxMode};
use crate::error::Error;
use crate::layout::{LayoutConfig, LiteConfig, RscConfig};
use crate::ns::{Announcement, NsHandler};
use crate::port::{AddressMap, Barrier, Platform};
use crate::shm::SharedRegion;
use crate::virtqueue::{Coherence, DeviceQueue, DriverQueue, Mem, Violation, Vring};
use crate::wire::ns::Name;
use crate::wire::rpmsg::{HEADER_LEN, RPMSG_ADDR_ANY};
use crate::wire::rsc::{FW_RSC_ADDR_ANY, VdevInfo, vdev_field};
use crate::wire::vring::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_RPMSG_F_NS, VRING_DESC_F_WRITE, VringLayout,
};
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::Waker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Idle,
    Waiting,
    Up,
    /// The driver reset the device after a session: calls fail with `LinkDown` until the
    /// driver starts a new session.
    Reset,
    Down,
    Broken(Violation),
}

pub(crate) const NIL: u16 = u16::MAX;

/// Callbacks of one link that may run at the same time in different threads and still be
/// told apart (more are handled conservatively: see `State::callers_overflow`).
pub(crate) const CALLERS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RxState {
    Free,
    Queued,
    Held,
    Parked,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct RxMeta {
    pub(crate) state: RxState,
    pub(crate) next: u16,
    pub(crate) offset: usize,
    pub(crate) len: u16,
    pub(crate) src: u32,
    pub(crate) dst: u32,
    pub(crate) ret_len: u32,
}

impl RxMeta {
    pub(crate) const EMPTY: Self = Self {
        state: RxState::Free,
        next: NIL,
        offset: 0,
        len: 0,
        src: 0,
        dst: 0,
        ret_len: 0,
    };
}

#[cfg(feature = "role-driver")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pool {
    pub(crate) offset: usize,
    pub(crate) size: u32,
    pub(crate) count: u16,
}

#[cfg(feature = "role-driver")]
impl Pool {
    pub(crate) fn buffer(&self, id: u16) -> usize {
        // id < count <= 32768 and the pool was checked to fit in the region at set-up.
        self.offset + usize::from(id) * self.size as usize
    }
}

/// The rings as our role sees them (a variant per role compiled in).
pub(crate) enum Queues<const N: usize> {
    None,
    #[cfg(feature = "role-driver")]
    Driver {
        rx: DriverQueue<N>,
        tx: DriverQueue<N>,
        rx_pool: Pool,
        tx_pool: Pool,
    },
    #[cfg(feature = "role-device")]
    Device {
        rx: DeviceQueue<N>,
        tx: DeviceQueue<N>,
    },
}

#[derive(Clone, Copy)]
pub(crate) struct Slot<'r> {
    pub(crate) in_use: bool,
    pub(crate) generation: u16,
    pub(crate) addr: u32,
    pub(crate) dst: u32,
    pub(crate) name: Name,
    pub(crate) announce: bool,
    pub(crate) announced: bool,
    pub(crate) mode: RxMode<'r>,
    pub(crate) q_head: u16,
    pub(crate) q_tail: u16,
    pub(crate) q_len: u16,
}

impl Slot<'_> {
    pub(crate) const EMPTY: Self = Self {
        in_use: false,
        generation: 0,
        addr: 0,
        dst: RPMSG_ADDR_ANY,
        name: Name::EMPTY,
        announce: false,
        announced: false,
        mode: RxMode::Queue(0),
        q_head: NIL,
        q_tail: NIL,
        q_len: 0,
    };
}

pub(crate) struct State<'r, const N: usize, const EPTS: usize> {
    pub(crate) phase: Phase,
    pub(crate) epoch: u32,
    pub(crate) ns: bool,
    pub(crate) notify_ids: [u32; 2],
    #[cfg(feature = "layout-rsc-table")]
    pub(crate) vdev: Option<VdevInfo>,
    pub(crate) queues: Queues<N>,
    pub(crate) rx_meta: [RxMeta; N],
    pub(crate) tx_desc_len: [u32; N],
    pub(crate) free: [u16; N],
    pub(crate) nfree: usize,
    pub(crate) parked: u16,
    pub(crate) tx_waiters: u32,
    /// Contexts ([`Environment::context_id`]) running one of our callbacks now.
    pub(crate) callers: [Option<usize>; CALLERS],
    /// Callbacks running beyond `callers`' room: while any do, every context counts as inside.
    pub(crate) callers_overflow: u32,
    pub(crate) slots: [Slot<'r>; EPTS],
    pub(crate) ns_handler: Option<&'r dyn NsHandler>,
    pub(crate) wakers: Wakers,
    /// Services the peer announced (one per endpoint slot), for binding by name later.
    pub(crate) seen: [Option<(Name, u32)>; EPTS],
    pub(crate) seen_next: usize,
    pub(crate) stats: LinkStats,
}

/// Side effects to run once the lock is released.
#[derive(Default)]
pub(crate) struct Effects {
    pub(crate) notify: [bool; 2],
    /// A notification of this ring was left out (the driver's `VRING_AVAIL_F_NO_INTERRUPT`).
    pub(crate) suppressed: [bool; 2],
    pub(crate) ids: [u32; 2],
    pub(crate) wake: bool,
}

pub(crate) enum Next<'r> {
    Idle,
    Again,
    Callback(&'r dyn RxHandler, RxInfo),
    Ns(&'r dyn NsHandler, Announcement),
    /// An announcement that bound or unbound the local endpoint at the address given.
    NsBound(&'r dyn NsHandler, Announcement, u32),
}

/// Wakers of async tasks waiting on a link (for a message, a buffer, link-up). Every event that
/// may let one of them go on wakes them all; a task that finds nothing registers again.
pub(crate) struct Wakers {
    slots: [Option<Waker>; Self::K],
    count: u8,
}

impl Wakers {
    const K: usize = 8;

    pub(crate) const fn new() -> Self {
        Self {
            slots: [const { None }; Self::K],
            count: 0,
        }
    }

    pub(crate) fn register(&mut self, w: &Waker) {
        if self.slots.iter().flatten().any(|x| x.will_wake(w)) {
            return;
        }
        if let Some(free) = self.slots.iter_mut().find(|s| s.is_none()) {
            *free = Some(w.clone());
            self.count += 1;
            return;
        }
        // Full: wake everyone (they re-poll and register again), keep the newcomer.
        self.wake_all();
        self.slots[0] = Some(w.clone());
        self.count = 1;
    }

    pub(crate) fn wake_all(&mut self) {
        if self.count == 0 {
            return;
        }
        self.count = 0;
        for w in self.slots.iter_mut().filter_map(Option::take) {
            w.wake();
        }
    }
}

/// What a step may touch besides the state: the shared region, the resource table's region,
/// the platform's hooks (cache maintenance, address map), the configuration, and the flag an
/// interrupt sets when vring 0 is kicked. Borrowed from the shell for each critical section.
pub(crate) struct Io<'a, 'r, P> {
    pub(crate) region: SharedRegion<'r>,
    pub(crate) table: SharedRegion<'r>,
    pub(crate) platform: &'a P,
    pub(crate) cfg: &'a Config,
    pub(crate) kicked: &'a AtomicBool,
}

impl<P: Platform> Io<'_, '_, P> {
    /// Invalidates the resource table's area (before reading what the driver wrote there).
    #[cfg(feature = "layout-rsc-table")]
    pub(crate) fn invalidate_table(&self, r: &RscConfig) {
        let len = r
            .table_len
            .min(self.table.len().saturating_sub(r.table_offset));
        self.platform
            .cache_invalidate(self.table.base_addr() + r.table_offset, len);
    }

    /// The platform's memory system over the shared region.
    #[inline(always)]
    pub(crate) fn mem(&self) -> Mem<'_, P> {
        Mem::new(self.platform, &self.region)
    }

    #[cfg(all(
        any(feature = "role-driver", feature = "role-device"),
        any(feature = "layout-lite", feature = "layout-rsc-table")
    ))]
    pub(crate) fn vring(&self, offset: usize, layout: VringLayout) -> Result<Vring, Error> {
        Vring::new(&self.region, offset, layout)
            .map_err(|_| Error::Config("a vring lies outside the shared region or is misaligned"))
    }

    /// Device, RPMsg-Lite layout, at link-up: is the first buffer the driver posted on vring 0
    /// one of ours (`LiteConfig::buffer`)? A driver with another `VRING_SIZE` or `VRING_ALIGN`
    /// puts its buffers elsewhere, and would seem to work one way only (its vring 1 is not where
    /// we look).
    #[cfg(all(feature = "role-device", feature = "layout-lite"))]
    pub(crate) fn lite_geometry_differs(
        &self,
        ring: &Vring,
        l: &LiteConfig,
    ) -> Result<Option<Violation>, Error> {
        // Acquire: the slot and descriptor are read after the index that published them.
        let m = self.mem();
        m.barrier(Barrier::Acquire);
        let slot0 = ring.avail_range().0 + 4;
        m.invalidate(slot0, 2);
        let head = self.region.read_u16(slot0)?;
        if head >= ring.num() {
            return Ok(None); // pop_avail reports it
        }
        m.invalidate(ring.desc(head), 16);
        let (addr, len, _) = ring.read_desc(&self.region, head)?;
        let found = self.platform.address_map().to_offset(addr, len as usize);
        let start = l.offsets().2;
        let end = l.buffer(usize::from(l.buffer_count));
        let size = l.buffer_size as usize;
        let ours = found.is_some_and(|o| o >= start && o < end && (o - start) % size == 0);
        Ok((!ours).then(|| Violation::GeometryMismatch {
            found: found.map_or(u32::MAX, |o| u32::try_from(o).unwrap_or(u32::MAX)),
            expected: u32::try_from(start).unwrap_or(u32::MAX),
        }))
    }

    #[cfg(feature = "role-device")]
    pub(crate) fn device_notify<const N: usize>(
        &self,
        q: &DeviceQueue<N>,
        which: usize,
        fx: &mut Effects,
    ) {
        // The used ring was cleaned by `push_used_with`, slot before index.
        let want = !self.cfg.honour_no_interrupt
            || q.needs_notify_with(&self.region, &self.mem())
                .unwrap_or(true);
        if want {
            fx.notify[which] = true;
        } else {
            fx.suppressed[which] = true;
        }
    }

    /// A peer buffer of `len` bytes at `addr` that can hold a header: its region offset.
    /// Refuses a buffer that overlaps `rings`: we are about to write into it, and a driver
    /// pointing it at the vrings would have us overwrite them.
    #[cfg(feature = "role-device")]
    pub(crate) fn checked_buffer(
        &self,
        addr: u64,
        len: u32,
        rings: [(usize, usize); 2],
    ) -> Result<usize, Violation> {
        let bad = Violation::BadAddress { addr, len };
        if (len as usize) < HEADER_LEN {
            return Err(bad);
        }
        let off = self
            .platform
            .address_map()
            .to_offset(addr, len as usize)
            .ok_or(bad)?;
        let end = off.checked_add(len as usize).ok_or(bad)?;
        let overlaps = rings
            .iter()
            .any(|&(b, size)| off < b.saturating_add(size) && b < end);
        if !self.region.contains(off, len as usize) || overlaps {
            return Err(bad);
        }
        self.in_buffer_area(off, end)?;
        Ok(off)
    }

    /// Device, RPMsg-Lite layout: a buffer the driver posted must lie in the buffer area our
    /// layout gives (`LiteConfig::buffer`, both directions). One outside it means the two sides
    /// disagree on the geometry, which the link-up check may not have caught (a driver that
    /// posts its first buffers where we expect them and later ones elsewhere).
    pub(crate) fn in_buffer_area(&self, off: usize, end: usize) -> Result<(), Violation> {
        match self.cfg.layout {
            #[cfg(feature = "layout-lite")]
            LayoutConfig::Lite(l) if self.cfg.role == Role::Device => {
                let start = l.offsets().2;
                let limit = l.buffer(2 * usize::from(l.buffer_count));
                if off < start || end > limit {
                    return Err(Violation::GeometryMismatch {
                        found: u32::try_from(off).unwrap_or(u32::MAX),
                        expected: u32::try_from(start).unwrap_or(u32::MAX),
                    });
                }
                Ok(())
            }
            _ => {
                let _ = (off, end);
                Ok(())
            }
        }
    }
}

impl<'r, const N: usize, const EPTS: usize> State<'r, N, EPTS> {
    /// Records context `me` as running one of our callbacks; what it returns goes back to
    /// `leave_callback` when the callback is over.
    pub(crate) fn enter_callback(&mut self, me: usize) -> Option<usize> {
        let slot = self.callers.iter().position(Option::is_none);
        match slot {
            Some(i) => self.callers[i] = Some(me),
            None => self.callers_overflow += 1,
        }
        slot
    }

    /// A callback recorded by `enter_callback` is over.
    pub(crate) fn leave_callback(&mut self, slot: Option<usize>) {
        match slot {
            Some(i) => self.callers[i] = None,
            None => self.callers_overflow = self.callers_overflow.saturating_sub(1),
        }
    }

    pub(crate) fn start_locked<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        fx: &mut Effects,
    ) -> Result<(), Error> {
        match self.phase {
            Phase::Idle => {}
            Phase::Down | Phase::Broken(_) => return Err(Error::LinkDown),
            Phase::Waiting | Phase::Up | Phase::Reset => return Ok(()),
        }
        match (io.cfg.role, io.cfg.layout) {
            #[cfg(all(feature = "role-driver", feature = "layout-lite"))]
            (Role::Driver, LayoutConfig::Lite(l)) => {
                let layout = l.validate(io.region.len())?;
                let (o0, o1, _) = l.offsets();
                let rings = [io.vring(o0, layout)?, io.vring(o1, layout)?];
                let pools = [
                    Pool {
                        offset: l.buffer(0),
                        size: l.buffer_size,
                        count: l.buffer_count,
                    },
                    Pool {
                        offset: l.buffer(usize::from(l.buffer_count)),
                        size: l.buffer_size,
                        count: l.buffer_count,
                    },
                ];
                self.notify_ids = [l.link_id << 1, (l.link_id << 1) | 1];
                self.ns = io.cfg.name_service;
                self.driver_setup(io, rings, pools)?;
                self.driver_up(fx);
                Ok(())
            }
            #[cfg(all(feature = "role-driver", feature = "layout-rsc-table"))]
            (Role::Driver, LayoutConfig::RscTable(r)) => {
                io.invalidate_table(&r);
                let vdev = r.read_vdev(&io.table)?;
                let status = r.vdev_field(&vdev, vdev_field::STATUS);
                io.table.write_u8(status, 0)?;
                // The reset reaches the device before the rings are laid out again.
                io.platform.cache_clean(io.table.base_addr() + status, 1);
                io.platform.barrier(Barrier::Release);
                io.table.write_u8(status, VIRTIO_CONFIG_S_ACKNOWLEDGE)?;
                io.table
                    .write_u8(status, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER)?;
                // Accept only the name service, and only if offered (wire.md 13 #36).
                let ns_bit = if io.cfg.name_service {
                    1 << VIRTIO_RPMSG_F_NS
                } else {
                    0
                };
                let g = vdev.dfeatures & ns_bit;
                io.table
                    .write_u32(r.vdev_field(&vdev, vdev_field::GFEATURES), g)?;
                let mut rings = [None, None];
                for (k, slot) in rings.iter_mut().enumerate() {
                    let v = vdev.vrings[k];
                    let layout = ring_layout(v.num, v.align)?;
                    let off = if v.da == FW_RSC_ADDR_ANY {
                        let off = r.vring_offsets[k].ok_or(Error::Config(
                            "vring address is FW_RSC_ADDR_ANY and no vring offset was configured",
                        ))?;
                        let da = io
                            .platform
                            .address_map()
                            .to_addr(off)
                            .and_then(|a| u32::try_from(a).ok())
                            .ok_or(Error::Config("vring offset has no 32-bit peer address"))?;
                        io.table
                            .write_u32(r.vdev_field(&vdev, vdev_field::vring(k)), da)?;
                        off
                    } else {
                        io.platform
                            .address_map()
                            .to_offset(u64::from(v.da), layout.size)
                            .ok_or(Error::Config(
                                "vring address in the table is outside the region",
                            ))?
                    };
                    *slot = Some(io.vring(off, layout)?);
                    self.notify_ids[k] = v.notifyid;
                }
                let [Some(r0), Some(r1)] = rings else {
                    return Err(Error::Config("vrings missing"));
                };
                let count = |num: u16| num.min(r.max_buffers).max(1);
                let rx_pool = Pool {
                    offset: r.pool_offset,
                    size: r.buffer_size,
                    count: count(r0.num()),
                };
                let tx_pool = Pool {
                    offset: r.pool_offset + usize::from(rx_pool.count) * r.buffer_size as usize,
                    size: r.buffer_size,
                    count: count(r1.num()),
                };
                self.ns = g & (1 << VIRTIO_RPMSG_F_NS) != 0;
                self.vdev = Some(vdev);
                self.driver_setup(io, [r0, r1], [rx_pool, tx_pool])?;
                // Features, vring addresses and rings reach the device before DRIVER_OK.
                io.platform.cache_clean(
                    io.table.base_addr() + r.table_offset,
                    r.table_len
                        .min(io.table.len().saturating_sub(r.table_offset)),
                );
                io.platform.barrier(Barrier::Release);
                io.table.write_u8(
                    status,
                    VIRTIO_CONFIG_S_ACKNOWLEDGE
                        | VIRTIO_CONFIG_S_DRIVER
                        | VIRTIO_CONFIG_S_DRIVER_OK,
                )?;
                io.platform.cache_clean(io.table.base_addr() + status, 1);
                self.driver_up(fx);
                Ok(())
            }
            #[cfg(all(feature = "role-device", feature = "layout-lite"))]
            (Role::Device, LayoutConfig::Lite(l)) => {
                let layout = l.validate(io.region.len())?;
                let (o0, o1, _) = l.offsets();
                let rings = [io.vring(o0, layout)?, io.vring(o1, layout)?];
                self.notify_ids = [l.link_id << 1, (l.link_id << 1) | 1];
                self.ns = io.cfg.name_service;
                self.queues = Queues::Device {
                    tx: DeviceQueue::new(rings[0])
                        .map_err(|_| Error::Config("vring larger than N"))?,
                    rx: DeviceQueue::new(rings[1])
                        .map_err(|_| Error::Config("vring larger than N"))?,
                };
                self.phase = Phase::Waiting;
                self.check_device_up(io, fx)
            }
            #[cfg(all(feature = "role-device", feature = "layout-rsc-table"))]
            (Role::Device, LayoutConfig::RscTable(_)) => {
                self.phase = Phase::Waiting;
                self.check_device_up(io, fx)
            }
            // `Link::new` refused this configuration already.
            #[cfg(not(all(
                feature = "role-driver",
                feature = "role-device",
                feature = "layout-lite",
                feature = "layout-rsc-table"
            )))]
            _ => {
                let _ = fx;
                Err(Error::Config(
                    io.cfg
                        .missing_feature()
                        .unwrap_or("role or layout compiled out"),
                ))
            }
        }
    }

    /// Driver: a new session on the same memory (`Link::restart`): the old one is forgotten
    /// (`new_epoch`) and the set-up of `start_locked` runs again from scratch.
    pub(crate) fn restart_locked<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        fx: &mut Effects,
    ) -> Result<(), Error> {
        if io.cfg.role != Role::Driver {
            return Err(Error::Config(
                "only the driver restarts a link; a device follows the driver's sessions",
            ));
        }
        if self.phase == Phase::Down {
            return Err(Error::LinkDown);
        }
        self.new_epoch();
        self.phase = Phase::Idle;
        fx.wake = true;
        self.start_locked(io, fx)
    }

    /// Driver: the rings are laid out and the buffers posted; the link is up.
    #[cfg(all(
        feature = "role-driver",
        any(feature = "layout-lite", feature = "layout-rsc-table")
    ))]
    pub(crate) fn driver_up(&mut self, fx: &mut Effects) {
        self.phase = Phase::Up;
        self.stats.sessions = self.stats.sessions.wrapping_add(1);
        // "Driver ready": the first vring 0 kick is RPMsg-Lite's link-up signal and Linux's
        // post-DRIVER_OK kick; the device never sets NO_NOTIFY before link-up (wire.md 13 #4).
        fx.notify[0] = true;
        fx.wake = true;
    }
    #[cfg(all(
        feature = "role-driver",
        any(feature = "layout-lite", feature = "layout-rsc-table")
    ))]
    pub(crate) fn driver_setup<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        rings: [Vring; 2],
        pools: [Pool; 2],
    ) -> Result<(), Error> {
        for p in &pools {
            let len = usize::from(p.count) * p.size as usize;
            if !io.region.contains(p.offset, len) || p.size < 16 {
                return Err(Error::Config("buffer pool lies outside the shared region"));
            }
        }
        let map = io.platform.address_map();
        let mut rx =
            DriverQueue::new(rings[0]).map_err(|_| Error::Config("vring 0 larger than N"))?;
        let tx = DriverQueue::new(rings[1]).map_err(|_| Error::Config("vring 1 larger than N"))?;
        for r in &rings {
            r.zero(&io.region)?;
        }
        for (k, p) in pools.iter().enumerate() {
            if p.count > rings[k].num() {
                return Err(Error::Config("more buffers than vring entries"));
            }
            for id in 0..p.count {
                let addr = map
                    .to_addr(p.buffer(id))
                    .ok_or(Error::Config("buffer has no peer address"))?;
                let flags = if k == 0 { VRING_DESC_F_WRITE } else { 0 };
                rings[k].write_desc(&io.region, id, addr, p.size, flags)?;
            }
        }
        let m = io.mem();
        for id in 0..pools[0].count {
            io.region.fill(pools[0].buffer(id), HEADER_LEN, 0)?;
            m.clean(pools[0].buffer(id), HEADER_LEN);
        }
        // The zeroed rings and every descriptor reach the device before the first index
        // that publishes any of them.
        for r in &rings {
            m.clean(r.base, r.layout.size);
        }
        for id in 0..pools[0].count {
            rx.publish_with(&io.region, id, &m)?;
        }
        // No sender waits yet: ask the device not to interrupt us for returned tx buffers.
        tx.set_no_interrupt_with(&io.region, true, &m)?;
        self.nfree = 0;
        for id in (0..pools[1].count).rev() {
            if let Some(f) = self.free.get_mut(self.nfree) {
                *f = id;
                self.nfree += 1;
            }
        }
        self.queues = Queues::Driver {
            rx,
            tx,
            rx_pool: pools[0],
            tx_pool: pools[1],
        };
        Ok(())
    }

    /// Device: is the driver there yet (or gone)?
    pub(crate) fn check_device_up<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        fx: &mut Effects,
    ) -> Result<(), Error> {
        if io.cfg.role != Role::Device {
            return Ok(());
        }
        match io.cfg.layout {
            #[cfg(all(feature = "role-device", feature = "layout-lite"))]
            LayoutConfig::Lite(l) => {
                if self.device_rings_relaid(io) {
                    self.device_new_session(io, fx)?;
                }
                if !matches!(self.phase, Phase::Waiting) {
                    return Ok(());
                }
                let Queues::Device { tx, .. } = &self.queues else {
                    return Ok(());
                };
                let kicked = io.kicked.load(Ordering::Acquire);
                io.mem().invalidate(tx.ring().avail_idx_at(), 2);
                let posted = tx.ring().avail_idx(&io.region)?;
                if kicked || posted != 0 {
                    if posted != 0 {
                        if let Some(v) = io.lite_geometry_differs(tx.ring(), &l)? {
                            return Err(self.fatal(fx, v));
                        }
                    }
                    let Queues::Device { rx, tx } = &mut self.queues else {
                        return Ok(());
                    };
                    tx.attach(&io.region)?;
                    rx.attach(&io.region)?;
                    self.phase = Phase::Up;
                    self.stats.sessions = self.stats.sessions.wrapping_add(1);
                    fx.wake = true;
                }
            }
            #[cfg(all(feature = "role-device", feature = "layout-rsc-table"))]
            LayoutConfig::RscTable(r) => {
                let status_at = match self.vdev {
                    Some(v) => r.vdev_field(&v, vdev_field::STATUS),
                    None => {
                        // Find the status byte once; the table shape is ours and stays put.
                        io.invalidate_table(&r);
                        let v = r.read_vdev(&io.table)?;
                        self.vdev = Some(v);
                        r.vdev_field(&v, vdev_field::STATUS)
                    }
                };
                if self.device_rings_relaid(io) {
                    self.device_new_session(io, fx)?;
                    // The status is read after the index that showed the new session
                    // (acquire), so a `DRIVER_OK` seen below is the new session's: Linux
                    // zeroes the rings after writing 0 and before writing 0x07.
                    io.platform.barrier(Barrier::Acquire);
                }
                io.platform
                    .cache_invalidate(io.table.base_addr() + status_at, 1);
                let ok = io.table.read_u8(status_at)? & VIRTIO_CONFIG_S_DRIVER_OK != 0;
                match (self.phase, ok) {
                    (Phase::Waiting | Phase::Reset, true) => {
                        // Read what the driver wrote only now, after DRIVER_OK (wire.md 13 #16),
                        // and behind an acquire barrier that pairs with the driver's release
                        // before it (tests/two_threads.rs under Miri found none here).
                        // Whatever is wrong in it now is the driver's doing.
                        io.platform.barrier(Barrier::Acquire);
                        if let Err(e) = self.attach_device_rsc(io, &r) {
                            let e = match e {
                                Error::Config(what) => {
                                    Error::PeerViolation(Violation::BadTable(what))
                                }
                                e => e,
                            };
                            if let Error::PeerViolation(v) = e {
                                Self::violation(&mut self.stats, v);
                            }
                            return Err(e);
                        }
                        self.phase = Phase::Up;
                        self.stats.sessions = self.stats.sessions.wrapping_add(1);
                        fx.wake = true;
                    }
                    (Phase::Up | Phase::Broken(_), false) => {
                        // The driver reset the device: forget this session, wait for the next.
                        self.new_epoch();
                        self.phase = Phase::Reset;
                        fx.wake = true;
                    }
                    _ => {}
                }
            }
            // A device link of a layout compiled out is never built.
            #[cfg(not(all(
                feature = "role-device",
                feature = "layout-lite",
                feature = "layout-rsc-table"
            )))]
            _ => {
                let _ = (self, fx);
            }
        }
        Ok(())
    }
    /// Device, resource table: takes the vrings the driver placed and the features it chose.
    #[cfg(all(feature = "role-device", feature = "layout-rsc-table"))]
    pub(crate) fn attach_device_rsc<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        r: &RscConfig,
    ) -> Result<(), Error> {
        // What the driver wrote before DRIVER_OK (features, vring addresses): read afresh.
        io.invalidate_table(r);
        let v = r.read_vdev(&io.table)?;
        let mut rings = [None, None];
        for (k, slot) in rings.iter_mut().enumerate() {
            let vr = v.vrings[k];
            let layout = ring_layout(vr.num, vr.align)?;
            let off = io
                .platform
                .address_map()
                .to_offset(u64::from(vr.da), layout.size)
                .ok_or(Error::PeerViolation(Violation::BadAddress {
                    addr: u64::from(vr.da),
                    len: layout.size as u32,
                }))?;
            *slot = Some(io.vring(off, layout)?);
            self.notify_ids[k] = vr.notifyid;
        }
        let [Some(r0), Some(r1)] = rings else {
            return Err(Error::Config("vrings missing"));
        };
        let mut tx = DeviceQueue::new(r0).map_err(|_| Error::Config("vring larger than N"))?;
        let mut rx = DeviceQueue::new(r1).map_err(|_| Error::Config("vring larger than N"))?;
        tx.attach(&io.region)?;
        rx.attach(&io.region)?;
        let nsbit = 1 << VIRTIO_RPMSG_F_NS;
        self.ns = io.cfg.name_service && v.dfeatures & v.gfeatures & nsbit != 0;
        self.vdev = Some(v);
        self.queues = Queues::Device { rx, tx };
        Ok(())
    }

    /// Device: did the driver lay the rings out again for a new session, whether or not we
    /// saw its reset? The rule (docs/architecture.md, "Sessions and epochs"): only the
    /// device writes `used.idx` within a session, so a used index that is no longer the one we
    /// stored means the driver started over (Linux's `rp_find_vq` zeroes the ring,
    /// `rpmsg_lite_master_init` zeroes and pre-fills it, our `Link::restart` zeroes it). A
    /// hostile jump of `avail.idx` leaves `used.idx` alone and stays a fatal `IndexJump`; a
    /// driver that rewrites `used.idx` only costs itself its session. Asked when the shell
    /// asks whether the driver is there (`check_device_up`), in `Up` and in `Broken`.
    pub(crate) fn device_rings_relaid<P: Platform>(&self, io: &Io<'_, 'r, P>) -> bool {
        if !matches!(self.phase, Phase::Up | Phase::Broken(_)) {
            return false;
        }
        #[cfg(feature = "role-device")]
        if let Queues::Device { tx, rx } = &self.queues {
            let m = io.mem();
            return [tx, rx].into_iter().any(|q| q.relaid_with(&io.region, &m));
        }
        let _ = io;
        false
    }

    /// Device: the driver laid the rings out again (`device_rings_relaid`): forget this
    /// session and wait for the new one. Resource table: `Reset`, until `DRIVER_OK` (which
    /// Linux writes after laying out the rings). RPMsg-Lite layout: `Waiting` on the same
    /// rings, up again by the start-up rule; the kick we noted may be the old session's, so
    /// only a new kick counts, or a buffer posted on vring 0 (which the master posts only
    /// after zeroing both rings).
    pub(crate) fn device_new_session<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        fx: &mut Effects,
    ) -> Result<(), Error> {
        #[cfg(all(feature = "role-device", feature = "layout-lite"))]
        let rings = match &self.queues {
            Queues::Device { tx, rx } => Some([*tx.ring(), *rx.ring()]),
            _ => None,
        };
        self.new_epoch();
        fx.wake = true;
        match io.cfg.layout {
            #[cfg(all(feature = "role-device", feature = "layout-lite"))]
            LayoutConfig::Lite(_) => {
                io.kicked.store(false, Ordering::Release);
                if let Some([r0, r1]) = rings {
                    self.queues = Queues::Device {
                        tx: DeviceQueue::new(r0)
                            .map_err(|_| Error::Config("vring larger than N"))?,
                        rx: DeviceQueue::new(r1)
                            .map_err(|_| Error::Config("vring larger than N"))?,
                    };
                }
                self.phase = Phase::Waiting;
            }
            _ => self.phase = Phase::Reset,
        }
        Ok(())
    }

    /// Device: the ring fault `v` breaks the link, unless the driver has laid the rings out
    /// again (`device_rings_relaid`): then the new session starts instead (`Ok`).
    pub(crate) fn ring_fault<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        fx: &mut Effects,
        v: Violation,
    ) -> Result<(), Error> {
        if io.cfg.role == Role::Device && self.device_rings_relaid(io) {
            return self.device_new_session(io, fx);
        }
        Err(self.fatal(fx, v))
    }

    pub(crate) fn new_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.seen = [None; EPTS];
        self.queues = Queues::None;
        self.rx_meta = [RxMeta::EMPTY; N];
        self.nfree = 0;
        self.parked = NIL;
        self.stats.held = 0;
        for s in self.slots.iter_mut() {
            s.q_head = NIL;
            s.q_tail = NIL;
            s.q_len = 0;
            s.announced = false;
        }
    }

    pub(crate) fn violation(stats: &mut LinkStats, v: Violation) {
        stats.peer_violations = stats.peer_violations.wrapping_add(1);
        stats.last_violation = Some(v);
    }

    pub(crate) fn fatal(&mut self, fx: &mut Effects, v: Violation) -> Error {
        Self::violation(&mut self.stats, v);
        self.phase = Phase::Broken(v);
        fx.wake = true;
        Error::PeerViolation(v)
    }
}

/// The error a call gets in `phase`.
pub(crate) fn phase_error(phase: Phase) -> Error {
    match phase {
        Phase::Idle | Phase::Waiting => Error::NotReady,
        Phase::Down | Phase::Up | Phase::Reset => Error::LinkDown,
        Phase::Broken(v) => Error::PeerViolation(v),
    }
}

#[cfg(all(
    feature = "layout-rsc-table",
    any(feature = "role-driver", feature = "role-device")
))]
pub(crate) fn ring_layout(num: u32, align: u32) -> Result<VringLayout, Error> {
    let num = u16::try_from(num).map_err(|_| Error::Config("vring num above 32768"))?;
    VringLayout::new(num, align as usize).map_err(|_| Error::Config("vring num or align invalid"))
}
