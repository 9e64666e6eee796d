//! Harnesses of the fuzz targets (fuzz_targets/): the fuzzer plays the other core.

#[allow(unreachable_pub, clippy::all)]
#[path = "../../crates/rpmsg/tests/common/mod.rs"]
mod common;
pub mod compact;
pub mod guard;
pub mod link;

use std::cell::RefCell;

/// Bytes of the receive buffers the harnesses pass to `recv`: more than any message can hold.
pub(crate) const SCRATCH: usize = 0x1_0000;

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

/// Runs `f` with a receive buffer of [`SCRATCH`] bytes kept for the whole process (zeroing
/// 64 KiB for every `recv` was a tenth of an execution). Its content is whatever the last
/// receive left: callers read only the bytes a receive reports. A nested use gets a fresh one.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH_BUF.with(|b| match b.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut vec![0; SCRATCH]),
    })
}

use rpmsg::port::{CriticalSectionRawMutex, Environment, Instant};
use rpmsg::testing::Loopback;
use rpmsg::{Config, Link, SharedRegion};
use std::sync::atomic::{AtomicU64, Ordering};

/// The harnesses' environment: a virtual clock that a wait moves to its deadline at once.
///
/// Nothing runs concurrently in a harness, so a wait has nothing to wait for: `TestEnv`'s
/// `yield_now` was a system call per wait (7% of a `link_driver` execution) and its wall clock
/// made an input's path depend on the machine's load. Here time moves only when a call waits,
/// so every input replays the same way; a wait without a deadline moves it by a microsecond
/// (a loop that waits for ever still ends in the fuzzer's `-timeout`).
#[derive(Debug, Default)]
pub struct FuzzEnv {
    micros: AtomicU64,
}

impl Environment for FuzzEnv {
    type RawMutex = CriticalSectionRawMutex;

    fn now(&self) -> Instant {
        Instant(self.micros.load(Ordering::Relaxed))
    }

    fn wait(&self, deadline: Option<Instant>) {
        let now = self.micros.load(Ordering::Relaxed);
        let to = deadline.map_or(now + 1, |d| d.0.max(now + 1));
        self.micros.fetch_max(to, Ordering::Relaxed);
    }

    fn wake(&self) {}
}

/// A link of the harnesses: `N` descriptors, 8 endpoints, on the virtual clock.
pub type FuzzLink<'r, const N: usize> = Link<'r, Loopback, FuzzEnv, N, 8>;

/// A link with configuration `cfg` over `region`, the peer seeing the region at `base`.
pub(crate) fn fuzz_link<'r, const N: usize>(
    region: SharedRegion<'r>,
    base: u64,
    cfg: Config,
) -> FuzzLink<'r, N> {
    Link::new(
        region,
        Loopback::with_base(region, base),
        FuzzEnv::default(),
        cfg,
    )
    .expect("valid link config")
}
