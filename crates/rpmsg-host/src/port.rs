//! The core's porting traits for two processes of one PC.
//!
//! * [`HostPlatform`]: the address map (peer address = region offset) and `notify`, which rings
//!   the other side the way the session's [`DoorbellMode`] says: a datagram, a futex word, or
//!   nothing.
//! * [`HostEnv`]: `std`'s monotonic clock (a vDSO read), a per-link lock ([`HostRawMutex`]),
//!   and waiting: a
//!   condition variable that the service thread signals on doorbells (socket mode), a
//!   `FUTEX_WAIT` on our own doorbell word (futex mode), or a spin (busy-poll mode).
//!
//! # The busy-polling path
//!
//! With [`DoorbellMode::BusyPoll`], `notify` and `wake` do nothing and `wait` is one
//! `spin_loop` hint: a message costs no system call, no allocation, and no lock another thread
//! of ours contends for (the service thread only `connect`s a scratch socket every watch period
//! and never touches the link until the peer is gone). Spinning on the ring indices inside
//! `wait` instead of returning to the link's poll was tried and measured no faster: the time
//! goes into the link's work per message, not into noticing it.

use crate::doorbell::{DoorbellMode, Rang};
use crate::geometry::Geometry;
use crate::session::Session;
pub use crate::sys::HostRawMutex;
use rpmsg::{Environment, Instant, LinearMap, Link, Platform};
use rustix::thread::futex;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The link type of a session: `N` descriptors per ring at most, `EPTS` endpoints.
pub type HostLink<'s, const N: usize = 256, const EPTS: usize = 8> =
    Link<'s, HostPlatform<'s>, HostEnv<'s>, N, EPTS>;

/// The chip side of the port: address map and doorbells.
#[derive(Debug)]
pub struct HostPlatform<'s> {
    session: &'s Session,
    map: LinearMap,
}

impl<'s> HostPlatform<'s> {
    pub(crate) fn new(session: &'s Session) -> Self {
        Self {
            session,
            map: Geometry::address_map(session.file().region_len()),
        }
    }

    /// The session it rings for.
    pub fn session(&self) -> &'s Session {
        self.session
    }
}

impl Platform for HostPlatform<'_> {
    type Map = LinearMap;

    fn address_map(&self) -> &LinearMap {
        &self.map
    }

    fn notify(&self, id: u32) {
        let s = self.session;
        match s.doorbell() {
            DoorbellMode::BusyPoll => {}
            DoorbellMode::Socket => {
                let c = match s.socket().ring(id) {
                    Rang::Sent => &s.counters.rung,
                    Rang::Coalesced => &s.counters.coalesced,
                    Rang::NoPeer => {
                        s.lost_doorbell.store(true, Ordering::Relaxed);
                        &s.counters.no_peer
                    }
                };
                c.fetch_add(1, Ordering::Relaxed);
            }
            DoorbellMode::Futex => {
                s.counters.rung.fetch_add(1, Ordering::Relaxed);
                ring_futex(s, s.side().peer());
            }
        }
    }
}

/// Bumps `side`'s doorbell word and wakes it if it sleeps.
fn ring_futex(s: &Session, side: crate::doorbell::Side) {
    let bell = s.file().bell(side);
    // SeqCst pairs with the waiter's SeqCst increment of its waiter count and re-load of the
    // bell (Dekker): either it sees our increment and does not sleep, or we see it waiting.
    bell.fetch_add(1, Ordering::SeqCst);
    if s.file().waiters(side).load(Ordering::SeqCst) != 0 {
        s.counters.futex_wakes.fetch_add(1, Ordering::Relaxed);
        // Shared futex (no FUTEX_PRIVATE_FLAG): the word is in a file two processes map.
        let _ = futex::wake(bell, futex::Flags::empty(), u32::MAX);
    }
}

/// Wakes the local waiters of `s` (what [`Environment::wake`] does).
pub(crate) fn wake(s: &Session) {
    match s.doorbell() {
        DoorbellMode::BusyPoll => {}
        DoorbellMode::Socket => {
            let mut g = s.generation.lock().unwrap_or_else(|p| p.into_inner());
            *g = g.wrapping_add(1);
            s.cv.notify_all();
        }
        DoorbellMode::Futex => ring_futex(s, s.side()),
    }
}

/// The core's clock reading: microseconds since `start`. `CLOCK_MONOTONIC` through glibc's
/// vDSO (no system call), and u64 arithmetic rather than `as_micros`' u128.
#[inline]
pub(crate) fn micros_since(start: std::time::Instant) -> Instant {
    let d = start.elapsed();
    Instant(
        d.as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(d.subsec_micros())),
    )
}

/// The operating-system side of the port: clock, lock, wait and wake.
#[derive(Debug)]
pub struct HostEnv<'s> {
    session: &'s Session,
    /// The clock's origin.
    start: std::time::Instant,
}

impl<'s> HostEnv<'s> {
    pub(crate) fn new(session: &'s Session) -> Self {
        Self {
            session,
            start: std::time::Instant::now(),
        }
    }

    /// The session it waits for.
    pub fn session(&self) -> &'s Session {
        self.session
    }

    fn until(&self, deadline: Option<Instant>) -> Duration {
        match deadline {
            Some(d) => Duration::from_micros(d.0.saturating_sub(self.now().0)),
            None => Duration::from_secs(3600),
        }
    }

    /// Spins up to the session's spin time while `changed` is false; `true` if it changed.
    fn spin(&self, changed: impl Fn() -> bool) -> bool {
        let spin = self.session.spin;
        if spin.is_zero() {
            return changed();
        }
        let t0 = std::time::Instant::now();
        loop {
            for _ in 0..64 {
                if changed() {
                    return true;
                }
                core::hint::spin_loop();
            }
            if t0.elapsed() >= spin {
                return false;
            }
        }
    }

    fn wait_condvar(&self, deadline: Option<Instant>) {
        let s = self.session;
        let generation = || *s.generation.lock().unwrap_or_else(|p| p.into_inner());
        let now = generation();
        // Woken since the last wait: return at once so the caller looks at the rings.
        if s.consumed.swap(now, Ordering::Relaxed) != now || self.spin(|| generation() != now) {
            s.consumed.store(generation(), Ordering::Relaxed);
            return;
        }
        let dur = self.until(deadline);
        if dur.is_zero() {
            return;
        }
        let guard = s.generation.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) =
            s.cv.wait_timeout_while(guard, dur, |g| *g == now)
                .unwrap_or_else(|p| p.into_inner());
        s.consumed.store(*guard, Ordering::Relaxed);
    }

    fn wait_futex(&self, deadline: Option<Instant>) {
        let s = self.session;
        let side = s.side();
        let bell = s.file().bell(side);
        // Acquire pairs with the ringer's SeqCst increment, after its ring writes.
        let now = bell.load(Ordering::Acquire);
        if s.futex_consumed.swap(now, Ordering::Relaxed) != now
            || self.spin(|| bell.load(Ordering::Acquire) != now)
        {
            s.futex_consumed
                .store(bell.load(Ordering::Acquire), Ordering::Relaxed);
            return;
        }
        let dur = self.until(deadline);
        if dur.is_zero() {
            return;
        }
        let waiters = s.file().waiters(side);
        waiters.fetch_add(1, Ordering::SeqCst);
        // Re-check after announcing ourselves (pairs with `ring_futex`); FUTEX_WAIT compares
        // the word again, atomically, in the kernel.
        if bell.load(Ordering::SeqCst) == now {
            let ts = futex::Timespec {
                tv_sec: i64::try_from(dur.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(dur.subsec_nanos()),
            };
            let _ = futex::wait(bell, futex::Flags::empty(), now, Some(&ts));
        }
        waiters.fetch_sub(1, Ordering::SeqCst);
        s.futex_consumed
            .store(bell.load(Ordering::Acquire), Ordering::Relaxed);
    }
}

impl Environment for HostEnv<'_> {
    type RawMutex = HostRawMutex;

    #[inline]
    fn now(&self) -> Instant {
        micros_since(self.start)
    }

    fn wait(&self, deadline: Option<Instant>) {
        match self.session.doorbell() {
            DoorbellMode::BusyPoll => core::hint::spin_loop(),
            DoorbellMode::Socket => self.wait_condvar(deadline),
            DoorbellMode::Futex => self.wait_futex(deadline),
        }
    }

    #[inline]
    fn wake(&self) {
        wake(self.session);
    }
}
