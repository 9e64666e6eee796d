//! The porting traits: what the chip provides ([`Platform`]) kept apart from what the operating
//! environment provides ([`Environment`]).
//!
//! * **Platform** (the silicon and the board): ring the other core's doorbell for a queue, clean
//!   and invalidate data-cache lines over shared memory, translate the peer's buffer addresses
//!   into places in our region ([`AddressMap`]).
//! * **Environment** (bare metal, an RTOS, hosted std): a lock around the link's bookkeeping, a
//!   monotonic clock, and a way to wait with a deadline and to wake waiters.
//!
//! Soundness never rests on these: a wrong address translation meets the region's bounds check;
//! a clock that stands still makes timeouts never expire but cannot corrupt anything. The lock is
//! embassy-sync's `RawMutex`, an `unsafe trait` whose implementations promise mutual exclusion.
//!
//! # Porting to an RTOS
//!
//! A FreeRTOS or Zephyr port implements [`Environment`] with the kernel's tick for `now`, a
//! binary semaphore or event group for `wait`/`wake` (give from `wake`, take with a timeout in
//! `wait`), and uses `CriticalSectionRawMutex` with the kernel's `critical-section`
//! implementation. Its [`Platform`] writes the mailbox or IPI register in `notify`, and its ISR
//! calls [`Link::handle_notify`](crate::Link::handle_notify).

pub use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex, RawMutex};

use core::time::Duration;

/// A point on the environment's monotonic clock, in microseconds since an arbitrary start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }
}

/// How long an operation may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Timeout {
    /// Do not wait: fail at once (`try_*`, RPMsg-Lite's `RL_DONT_BLOCK`).
    NoWait,
    /// Wait up to this long.
    After(Duration),
    /// Wait as long as it takes (`RL_BLOCK`); still ends when the link goes down.
    #[default]
    Forever,
}

impl Timeout {
    /// A timeout of `ms` milliseconds, `0` meaning [`Timeout::NoWait`] as in RPMsg-Lite.
    pub const fn from_millis(ms: u64) -> Self {
        if ms == 0 {
            Self::NoWait
        } else {
            Self::After(Duration::from_millis(ms))
        }
    }

    /// The deadline this timeout sets, seen from `now` (`None` for forever).
    pub fn deadline(self, now: Instant) -> Option<Instant> {
        match self {
            Self::NoWait => Some(now),
            Self::After(d) => Some(now.saturating_add(d)),
            Self::Forever => None,
        }
    }
}

/// Translation between the peer's buffer addresses and offsets in our region.
///
/// Linux writes CPU physical addresses into descriptors, OpenAMP libmetal physical addresses,
/// RPMsg-Lite 32-bit addresses from `env_map_vatopa`; the other core may see the region at a
/// different address than we do. The result is checked against the region again, so a wrong
/// translation is an error, never a stray access.
pub trait AddressMap {
    /// The region offset of the peer address `addr`, if `len` bytes there are in the region.
    fn to_offset(&self, addr: u64, len: usize) -> Option<usize>;
    /// The peer address of region offset `offset`.
    fn to_addr(&self, offset: usize) -> Option<u64>;
}

/// The usual map: the peer sees the region as one block starting at `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearMap {
    /// Peer address of region offset 0.
    pub base: u64,
    /// Region length.
    pub len: usize,
}

impl AddressMap for LinearMap {
    fn to_offset(&self, addr: u64, len: usize) -> Option<usize> {
        let off = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        (off.checked_add(len)? <= self.len).then_some(off)
    }

    fn to_addr(&self, offset: usize) -> Option<u64> {
        (offset <= self.len)
            .then(|| self.base.checked_add(offset as u64))
            .flatten()
    }
}

/// A region made of several windows of the peer's address space, laid side by side in our
/// region (a guest memory map under vhost-user, mapped contiguously).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMap<const K: usize> {
    /// `(peer address, region offset, length)` of each window.
    pub segments: [(u64, usize, usize); K],
}

impl<const K: usize> AddressMap for SegmentMap<K> {
    fn to_offset(&self, addr: u64, len: usize) -> Option<usize> {
        self.segments.iter().find_map(|&(base, off, seg_len)| {
            let rel = usize::try_from(addr.checked_sub(base)?).ok()?;
            (rel.checked_add(len)? <= seg_len)
                .then(|| off.checked_add(rel))
                .flatten()
        })
    }

    fn to_addr(&self, offset: usize) -> Option<u64> {
        self.segments.iter().find_map(|&(base, off, seg_len)| {
            let rel = offset.checked_sub(off)?;
            (rel < seg_len)
                .then(|| base.checked_add(rel as u64))
                .flatten()
        })
    }
}

/// A memory barrier between our accesses to shared memory, as the ring protocol needs it.
/// [`Platform::barrier`] chooses the instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Barrier {
    /// Before the store of a ring index: everything written before it (descriptor, buffer,
    /// ring slot, and their cache cleaning) reaches the other core first.
    Release,
    /// After the load of a ring index: what is read after it (slot, descriptor, buffer) is at
    /// least what the other core wrote before publishing that index.
    Acquire,
    /// Between our index store and the load of the other core's notification-suppression
    /// flag (and between a flag store and an index load): stores before, loads after.
    Full,
}

/// What the chip provides.
///
/// `Sync`, because a link is shared by the contexts that use it (the doorbell interrupt and
/// tasks or threads), and endpoints and buffers borrowed from it move between them.
pub trait Platform: Sync {
    /// How peer addresses map onto our region.
    type Map: AddressMap;

    /// The address map.
    fn address_map(&self) -> &Self::Map;

    /// Rings the other core's doorbell for notify id `id` (a vring's `notifyid`, or
    /// RPMsg-Lite's `(link_id << 1) | queue`). Called without any lock held. Spurious calls are
    /// harmless to every peer.
    fn notify(&self, id: u32);

    /// Writes back dirty cache lines over `len` bytes at local address `addr` before the other
    /// core reads them. Default: nothing (uncached or coherent shared memory).
    fn cache_clean(&self, addr: usize, len: usize) {
        let _ = (addr, len);
    }

    /// Discards cache lines over `len` bytes at local address `addr` before we read what the
    /// other core wrote. Default: nothing.
    fn cache_invalidate(&self, addr: usize, len: usize) {
        let _ = (addr, len);
    }

    /// The barrier `kind` over shared memory. The link calls it between a ring slot and its
    /// index (and around the suppression flags), after cleaning what the index publishes.
    ///
    /// Default: `core::sync::atomic::fence` (release, acquire, sequentially consistent),
    /// enough for two cores in one inner-shareable domain (an SMP host, the tests). On
    /// AArch64 and ARMv7-A/R that fence is `dmb ish`, which does not order accesses seen by a
    /// core outside the inner-shareable domain: a Linux host talking to a Cortex-M or R5
    /// (or the R5 talking back) supplies `dmb osh` for all three kinds, as Linux's
    /// `dma_wmb`/`dma_rmb`/`mb` on such memory do, and `dsb sy` when its `cache_clean` and
    /// `cache_invalidate` use `dc cvac`/`dc ivac` (cache maintenance is complete only after a
    /// `dsb`), so the clean of a slot completes before the index store. A Cortex-M7 with its
    /// data cache on uses `dsb` after SCB clean/invalidate; a Cortex-M without a cache needs
    /// only `dmb` (`firmware/` shows one). It runs inside the link's critical sections: it must
    /// not block.
    fn barrier(&self, kind: Barrier) {
        crate::virtqueue::Coherence::barrier(&crate::virtqueue::Coherent, kind);
    }
}

/// What the operating environment provides.
///
/// `Sync` like [`Platform`], and so is its lock.
pub trait Environment: Sync {
    /// The lock around a link's bookkeeping: `CriticalSectionRawMutex` (interrupts or threads
    /// share the link), or a `Sync` mutex of the RTOS. It must be `Sync` because the link is
    /// shared, which rules out embassy's `NoopRawMutex`.
    type RawMutex: RawMutex + Sync;

    /// The monotonic clock.
    fn now(&self) -> Instant;

    /// Blocks until [`Environment::wake`] is called, `deadline` passes, or earlier (spurious
    /// returns are fine: callers re-check). `None` means no deadline. Busy-polling
    /// environments simply return.
    fn wait(&self, deadline: Option<Instant>);

    /// Wakes every waiter (a buffer was returned, a message queued, the link changed state).
    fn wake(&self);

    /// Which thread or task is calling: any number that differs between contexts that use a
    /// link at the same time (an RTOS task handle, say). A link uses it to tell one of its
    /// receive callbacks calling back into it (refused with
    /// [`Error::InCallback`](crate::Error::InCallback), see [`Link::poll`](crate::Link::poll))
    /// from another thread that uses the link meanwhile (served).
    ///
    /// The default is the calling thread with the `std` feature, and one context for every
    /// caller without it: then, while a callback runs, calls that take messages fail with
    /// `InCallback` in every context (the poll running the callback takes those messages
    /// when it returns), which is exact on bare metal and conservative under an RTOS.
    fn context_id(&self) -> usize {
        default_context_id()
    }
}

/// The calling thread (`std`): the address of a thread-local, distinct between threads that
/// live at the same time.
#[cfg(feature = "std")]
fn default_context_id() -> usize {
    extern crate std;
    std::thread_local!(static HERE: u8 = const { 0 });
    HERE.with(|h| core::ptr::from_ref(h) as usize)
}

/// One context for every caller (bare metal).
#[cfg(not(feature = "std"))]
fn default_context_id() -> usize {
    0
}

/// A bare-metal environment that spins: the clock comes from a function (a SysTick or timer
/// counter in microseconds), waiting is a spin-loop hint, waking is nothing.
#[derive(Debug, Clone, Copy)]
pub struct SpinEnvironment<C: Fn() -> u64> {
    clock: C,
}

impl<C: Fn() -> u64> SpinEnvironment<C> {
    /// An environment reading microseconds from `clock`.
    pub const fn new(clock: C) -> Self {
        Self { clock }
    }
}

impl<C: Fn() -> u64 + Sync> Environment for SpinEnvironment<C> {
    type RawMutex = CriticalSectionRawMutex;

    fn now(&self) -> Instant {
        Instant((self.clock)())
    }

    fn wait(&self, _deadline: Option<Instant>) {
        core::hint::spin_loop();
    }

    fn wake(&self) {}
}

#[cfg(feature = "std")]
pub use self::std_env::StdEnvironment;

#[cfg(feature = "std")]
mod std_env {
    extern crate std;
    use super::{CriticalSectionRawMutex, Environment, Instant};
    use std::sync::{Condvar, Mutex};

    /// A hosted environment: `std::time::Instant` for the clock, a condition variable for
    /// waiting, `critical-section`'s std implementation for the lock.
    #[derive(Debug)]
    pub struct StdEnvironment {
        start: std::time::Instant,
        generation: Mutex<u64>,
        cv: Condvar,
    }

    impl Default for StdEnvironment {
        fn default() -> Self {
            Self::new()
        }
    }

    impl StdEnvironment {
        /// A new environment; its clock starts now.
        pub fn new() -> Self {
            Self {
                start: std::time::Instant::now(),
                generation: Mutex::new(0),
                cv: Condvar::new(),
            }
        }
    }

    impl Environment for StdEnvironment {
        type RawMutex = CriticalSectionRawMutex;

        fn now(&self) -> Instant {
            Instant(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
        }

        fn wait(&self, deadline: Option<Instant>) {
            let guard = self.generation.lock().unwrap_or_else(|p| p.into_inner());
            let seen = *guard;
            let dur = match deadline {
                Some(d) => std::time::Duration::from_micros(d.0.saturating_sub(self.now().0)),
                None => std::time::Duration::from_secs(3600),
            };
            if dur.is_zero() {
                return;
            }
            let _ = self
                .cv
                .wait_timeout_while(guard, dur, |g| *g == seen)
                .map_err(|p| p.into_inner());
        }

        fn wake(&self) {
            let mut g = self.generation.lock().unwrap_or_else(|p| p.into_inner());
            *g = g.wrapping_add(1);
            self.cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_map_checks_bounds() {
        let m = LinearMap {
            base: 0x8000_0000,
            len: 0x1000,
        };
        assert_eq!(m.to_offset(0x8000_0010, 16), Some(0x10));
        assert_eq!(m.to_offset(0x8000_0FF0, 17), None);
        assert_eq!(m.to_offset(0x7FFF_FFFF, 1), None);
        assert_eq!(m.to_offset(u64::MAX, 2), None);
        assert_eq!(m.to_addr(0x20), Some(0x8000_0020));
    }

    #[test]
    fn segment_map_translates_each_window() {
        let m = SegmentMap {
            segments: [(0x1000, 0, 0x100), (0x9000, 0x100, 0x200)],
        };
        assert_eq!(m.to_offset(0x1010, 8), Some(0x10));
        assert_eq!(m.to_offset(0x9010, 8), Some(0x110));
        assert_eq!(
            m.to_offset(0x10FC, 8),
            None,
            "straddles the end of a window"
        );
        assert_eq!(m.to_addr(0x150), Some(0x9050));
    }

    #[test]
    fn timeouts() {
        assert_eq!(Timeout::from_millis(0), Timeout::NoWait);
        assert_eq!(
            Timeout::After(Duration::from_millis(2)).deadline(Instant(5)),
            Some(Instant(2005))
        );
        assert_eq!(Timeout::Forever.deadline(Instant(5)), None);
    }
}
