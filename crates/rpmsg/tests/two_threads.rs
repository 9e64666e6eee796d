//! Two threads acting as the two cores over one region, small enough for Miri (`.ci/run` runs
//! it under Miri's data-race detector): a driver thread and a device thread start at the same
//! moment (so the driver's set-up and the device's link-up checks run concurrently), then the
//! driver sends messages of lengths that cross every word boundary, written at odd offsets,
//! and the device echoes each one back through a zero-copy buffer; both layouts, rings of 4
//! entries so every buffer changes hands several times.
//!
//! What it shows under Miri: the accesses of different widths to the same bytes (headers as
//! `u32`, payloads by `usize` and `u8` copies, rings zeroed by `fill` and read as `u16`/`u32`)
//! never race while both sides follow the protocol; see `shm.rs`'s module docs.
//!
//! Each core has its own lock ([`CoreLock`]), like two real cores. With the `std`
//! `critical-section` lock that `TestEnv` and `StdEnvironment` use, both links would share one
//! process-wide mutex, and since the rings are read and written inside the links' critical
//! sections, every hand-over would also be ordered by that mutex: Miri could not see a race
//! that two cores would have.

mod common;

use common::Geometry;
use rpmsg::port::{Environment, Instant as RpmsgInstant, RawMutex};
use rpmsg::testing::{Loopback, TestMemory};
use rpmsg::{EndpointConfig, Error, Link, LiteConfig, Role, Timeout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Hang guard: minutes (Miri runs this about a thousand times slower than native code).
const HANG_GUARD: Duration = Duration::from_secs(600);

/// Payload lengths: around the word boundaries, the empty message and a full buffer.
const LENS: [usize; 9] = [0, 1, 7, 8, 9, 15, 17, 100, 496];

/// Driver and device addresses.
const DRV: u32 = 0x400;
const DEV: u32 = 0x500;

/// A lock of one core only: a spin lock per instance, so the two links share no lock.
struct CoreLock(AtomicBool);

// SAFETY: `lock` runs `f` only while this instance's flag is held (taken with acquire, given
// back with release by the drop guard, also on unwinding), so no two callers of one instance
// run `f` at the same time. The links never lock recursively (their critical sections call
// nothing outside the link).
unsafe impl RawMutex for CoreLock {
    const INIT: Self = Self(AtomicBool::new(false));

    fn lock<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Unlock<'a>(&'a AtomicBool);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        while self
            .0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
        let _unlock = Unlock(&self.0);
        f()
    }
}

/// One core's environment: its own lock, `std`'s clock, waiting yields.
struct CoreEnv(Instant);

impl Environment for CoreEnv {
    type RawMutex = CoreLock;

    fn now(&self) -> RpmsgInstant {
        RpmsgInstant(u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    fn wait(&self, _deadline: Option<RpmsgInstant>) {
        std::thread::yield_now();
    }

    fn wake(&self) {}
}

type CoreLink<'r> = Link<'r, Loopback, CoreEnv, 4, 8>;

fn core_link<'r>(geo: &Geometry, region: rpmsg::SharedRegion<'r>, role: Role) -> CoreLink<'r> {
    Link::new(
        region,
        geo.platform(region),
        CoreEnv(Instant::now()),
        geo.config(role),
    )
    .expect("valid link config")
}

/// Byte `i` of message `seq`.
fn byte(seq: usize, i: usize) -> u8 {
    (seq * 37 + i * 11 + 1) as u8
}

/// `device_first`: the driver starts only once the device's `start` returned (the device has
/// read its resource table); otherwise both start at once.
fn round_trips(geo: &Geometry, device_first: bool) {
    let mut mem = TestMemory::new(geo.region_len());
    let region = mem.region();
    geo.prepare(&region);
    let drv = core_link(geo, region, Role::Driver);
    let dev = core_link(geo, region, Role::Device);
    let d_ep = drv
        .create_endpoint(EndpointConfig::new().addr(DRV).dst(DEV).queue(4))
        .unwrap();
    let v_ep = dev
        .create_endpoint(EndpointConfig::new().addr(DEV).dst(DRV).queue(4))
        .unwrap();
    let t0 = Instant::now();
    let dev_started = AtomicBool::new(false);
    let guard = |what: &str| assert!(t0.elapsed() < HANG_GUARD, "hung: {what}");

    std::thread::scope(|s| {
        // The device core: comes up, then echoes every message through a zero-copy buffer.
        s.spawn(|| {
            dev.start().unwrap();
            dev_started.store(true, Ordering::Release);
            dev.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();
            let mut echoed = 0;
            while echoed < LENS.len() {
                guard("device echo");
                dev.poll().unwrap();
                let msg = match v_ep.recv_zero_copy(Timeout::NoWait) {
                    Ok(m) => m,
                    Err(Error::NoBuffer) => {
                        std::thread::yield_now();
                        continue;
                    }
                    Err(e) => panic!("device recv: {e}"),
                };
                let mut data = vec![0u8; msg.len()];
                assert_eq!(msg.copy_to(&mut data), data.len());
                let src = msg.src();
                // Give the receive buffer back before taking a transmit one.
                drop(msg);
                let mut tx = loop {
                    guard("device alloc");
                    match v_ep.alloc_tx(Timeout::NoWait) {
                        Ok(tx) => break tx,
                        Err(Error::NoBuffer) => {
                            dev.poll().unwrap();
                            std::thread::yield_now();
                        }
                        Err(e) => panic!("device alloc: {e}"),
                    }
                };
                // In two pieces, the second at an odd offset.
                let cut = (data.len() / 2) | 1;
                let cut = cut.min(data.len());
                tx.write(0, &data[..cut]).unwrap();
                tx.write(cut, &data[cut..]).unwrap();
                tx.send_to(src, data.len()).unwrap();
                echoed += 1;
            }
        });

        // The driver core: sets up (concurrently with the device's checks), sends each
        // message (a copy send and a zero-copy one at odd offsets, in turn) and checks its echo.
        s.spawn(|| {
            while device_first && !dev_started.load(Ordering::Acquire) {
                guard("driver waiting for the device to start");
                std::thread::yield_now();
            }
            drv.start().unwrap();
            let mut sent = 0;
            let mut got = 0;
            let mut buf = [0u8; 512];
            while got < LENS.len() {
                guard("driver round trips");
                if sent < LENS.len() && sent - got < 2 {
                    let data: Vec<u8> = (0..LENS[sent]).map(|i| byte(sent, i)).collect();
                    let r = if sent % 2 == 0 {
                        d_ep.try_send(&data)
                    } else {
                        d_ep.alloc_tx(Timeout::NoWait).and_then(|mut tx| {
                            let cut = 3.min(data.len());
                            tx.write(cut, &data[cut..])?;
                            tx.write(0, &data[..cut])?;
                            tx.send(data.len()).map_err(|e| e.error)
                        })
                    };
                    match r {
                        Ok(()) => sent += 1,
                        Err(Error::NoBuffer) => {}
                        Err(e) => panic!("driver send {sent}: {e}"),
                    }
                }
                drv.poll().unwrap();
                match d_ep.recv(&mut buf, Timeout::NoWait) {
                    Ok((n, src)) => {
                        assert_eq!(src, DEV);
                        let want: Vec<u8> = (0..LENS[got]).map(|i| byte(got, i)).collect();
                        assert_eq!(&buf[..n], &want[..], "echo {got}");
                        got += 1;
                    }
                    Err(Error::NoBuffer) => std::thread::yield_now(),
                    Err(e) => panic!("driver recv: {e}"),
                }
            }
        });
    });

    for (link, who) in [(&drv, "driver"), (&dev, "device")] {
        let st = link.stats();
        assert_eq!(st.tx_messages as usize, LENS.len(), "{who}: {st:?}");
        assert_eq!(st.rx_messages as usize, LENS.len(), "{who}: {st:?}");
        assert_eq!(st.peer_violations, 0, "{who}: {st:?}");
        assert_eq!(st.rx_malformed, 0, "{who}: {st:?}");
        assert_eq!(st.held, 0, "{who}: {st:?}");
    }
}

#[test]
fn lite_layout_round_trips_on_two_threads() {
    // Both start at once: the driver zeroes the rings while the device polls vring 0's
    // `avail.idx` (it comes up on a non-zero one).
    round_trips(&Geometry::lite(LiteConfig::new(4, 496, 16)), false);
}

#[test]
fn rsc_layout_round_trips_on_two_threads() {
    // The device reads its whole resource table once, at start, with word-sized loads; the
    // driver writes the status byte and the features into it. Started at once, the two overlap
    // (a mixed-size race in one process, see shm.rs); a firmware reads its table at boot.
    round_trips(&Geometry::rsc(4, 16, false, 0x8000_0000), true);
}
