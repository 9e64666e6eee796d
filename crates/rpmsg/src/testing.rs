//! Test helpers: memory for a region, a platform whose "other core" is in this process, and a
//! busy-polling environment. Used by the crate's tests, doc examples, benches and fuzzers
//! (feature `test-utils`). [`peers`] holds hand-played peers that replay RPMsg-Lite's,
//! OpenAMP's and Linux's exact order of writes.

extern crate std;

pub mod cache;
pub mod peers;

use crate::endpoint::{Endpoint, EndpointConfig};
use crate::error::Error;
use crate::layout::LiteConfig;
use crate::link::{Config, Link, Role};
use crate::port::{CriticalSectionRawMutex, Environment, Instant, LinearMap, Platform, Timeout};
use crate::shm::SharedRegion;
use core::sync::atomic::{AtomicU32, Ordering};
use std::vec::Vec;

/// Zeroed, 8-byte aligned memory to build a [`SharedRegion`] on.
#[derive(Debug)]
pub struct TestMemory {
    words: Vec<u64>,
    len: usize,
}

impl TestMemory {
    /// `len` bytes of zeroes.
    pub fn new(len: usize) -> Self {
        Self {
            words: std::vec![0; len.div_ceil(8)],
            len,
        }
    }

    /// The region over the memory; copy the handle to give one to each side.
    pub fn region(&mut self) -> SharedRegion<'_> {
        let len = self.len;
        let bytes: &mut [u8] = zerocopy::IntoBytes::as_mut_bytes(self.words.as_mut_slice());
        SharedRegion::from_slice(&mut bytes[..len])
            .unwrap_or_else(|_| unreachable!("Vec<u64> is 8-aligned"))
    }
}

/// A platform for two "cores" in one process: addresses are region offsets (peer address =
/// offset), doorbells are only counted, and each side finds work by polling.
#[derive(Debug)]
pub struct Loopback {
    map: LinearMap,
    notifies: [AtomicU32; 2],
    /// The non-coherent memory system this side's cache hooks drive, and which core we are.
    cache: Option<(std::sync::Arc<cache::CacheModel>, usize)>,
}

impl Loopback {
    /// A platform for `region`.
    pub fn new(region: SharedRegion<'_>) -> Self {
        Self::with_base(region, 0)
    }

    /// The same, with the peer seeing the region at `base` (address translation in use).
    pub fn with_base(region: SharedRegion<'_>, base: u64) -> Self {
        Self {
            map: LinearMap {
                base,
                len: region.len(),
            },
            notifies: [AtomicU32::new(0), AtomicU32::new(0)],
            cache: None,
        }
    }

    /// Core `side` of `model` (its link is built on `model.view(side)`), the peer seeing the
    /// region at `base`: the cache hooks clean and invalidate that core's lines.
    pub fn non_coherent(model: std::sync::Arc<cache::CacheModel>, side: usize, base: u64) -> Self {
        let mut p = Self::with_base(model.view(side), base);
        p.cache = Some((model, side));
        p
    }

    /// Doorbells rung so far for notify ids with an even and an odd number.
    pub fn notifies(&self) -> [u32; 2] {
        [
            self.notifies[0].load(Ordering::Relaxed),
            self.notifies[1].load(Ordering::Relaxed),
        ]
    }
}

impl Platform for Loopback {
    type Map = LinearMap;

    fn address_map(&self) -> &LinearMap {
        &self.map
    }

    fn notify(&self, id: u32) {
        self.notifies[(id & 1) as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn cache_clean(&self, addr: usize, len: usize) {
        if let Some((m, side)) = &self.cache {
            m.clean(*side, addr - m.view(*side).base_addr(), len);
        }
    }

    fn cache_invalidate(&self, addr: usize, len: usize) {
        if let Some((m, side)) = &self.cache {
            m.invalidate(*side, addr - m.view(*side).base_addr(), len);
        }
    }
}

/// A busy-polling environment on `std`'s clock: waiting yields the thread.
#[derive(Debug)]
pub struct TestEnv {
    start: std::time::Instant,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// A new environment.
    pub fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
        }
    }
}

impl Environment for TestEnv {
    type RawMutex = CriticalSectionRawMutex;

    fn now(&self) -> Instant {
        Instant(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    fn wait(&self, _deadline: Option<Instant>) {
        std::thread::yield_now();
    }

    fn wake(&self) {}
}

/// A test link type: busy-polling, `N` descriptors, 8 endpoints.
pub type TestLink<'r, const N: usize> = Link<'r, Loopback, TestEnv, N, 8>;

/// Runs `f` with two started, linked endpoints in one thread: `dev_ep` (address 30 on the
/// device side, default destination `drv_ep`) and `drv_ep` (address 1024 on the driver side,
/// a queue of 2), over RPMsg-Lite's default layout.
///
/// # Panics
///
/// When `f` or the set-up fails: it is for examples and tests.
pub fn pair(f: impl FnOnce(Endpoint<'_>, Endpoint<'_>) -> Result<(), Error>) {
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let run = || -> Result<(), Error> {
        let driver: TestLink<'_, 2> = Link::new(
            region,
            Loopback::new(region),
            TestEnv::new(),
            Config::lite(Role::Driver, lite),
        )?;
        let device: TestLink<'_, 2> = Link::new(
            region,
            Loopback::new(region),
            TestEnv::new(),
            Config::lite(Role::Device, lite),
        )?;
        device.start()?;
        driver.start()?;
        device.wait_link_up(Timeout::Forever)?;
        let drv_ep = driver.create_endpoint(EndpointConfig::new().addr(1024).queue(2))?;
        let dev_ep = device.create_endpoint(EndpointConfig::new().addr(30).dst(1024).queue(2))?;
        f(dev_ep, drv_ep)
    };
    if let Err(e) = run() {
        panic!("test pair failed: {e}");
    }
}

/// Runs a future to completion on this thread, polling it in a loop (the links in these tests
/// are busy-polled, so a wake-up is never needed to make progress).
pub fn block_on<F: core::future::Future>(f: F) -> F::Output {
    let mut f = core::pin::pin!(f);
    let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    loop {
        if let core::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}
