//! Loom models of the ring handshake, run on the real [`DriverQueue`], [`DeviceQueue`] and
//! [`Vring`] over a region of loom atomics (`SharedRegion::from_loom`).
//!
//! Every region access is a relaxed atomic, so the only ordering between the descriptor, the
//! buffer and the ring index is the one `shm::fence` provides; loom explores the interleavings
//! *and* the stale values a relaxed load may return, so a missing fence shows up as a payload or
//! descriptor read before it was written.
//!
//! Run in release with a small preemption bound (tokio's loom CI does the same):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p rpmsg --release --lib loom
//! ```
//!
//! `LOOM_MAX_PREEMPTIONS` overrides the default bound of 3.

use super::*;
use crate::wire::vring::{VRING_DESC_F_WRITE, VringLayout};
use loom::sync::Arc;
use loom::sync::atomic::AtomicU16;
use loom::thread;
use std::sync::atomic::{AtomicBool, Ordering};
use std::vec::Vec;

/// Queue size of every model: the smallest ring RPMsg-Lite uses.
const NUM: u16 = 2;
/// Region offset of the first data buffer, after the ring (whose layout ends at 70).
const BUF: usize = 80;
/// Bytes of each data buffer.
const BUF_LEN: usize = 8;
/// The region: ring plus two buffers, in 2-byte loom atomics.
const UNITS: usize = (BUF + 2 * BUF_LEN) / 2;

/// Shared memory for one execution. Fresh loom atomics each time: loom objects must not outlive
/// the execution that created them.
fn memory() -> Arc<Vec<AtomicU16>> {
    Arc::new((0..UNITS).map(|_| AtomicU16::new(0)).collect())
}

fn ring(r: &SharedRegion<'_>) -> Vring {
    let v = Vring::new(
        r,
        0,
        VringLayout::new(NUM, 16).expect("2/16 is a valid layout"),
    )
    .expect("the ring fits the model region");
    assert!(v.base + v.layout.size <= BUF, "buffers overlap the ring");
    v
}

/// Region offset (= peer address, as with `Loopback`) of buffer `i`.
fn buf(i: u16) -> usize {
    BUF + usize::from(i) * BUF_LEN
}

/// Runs `f` under loom with a preemption bound of 3 unless `LOOM_MAX_PREEMPTIONS` sets one.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// Device side: spins (yielding to loom) until the driver has made a buffer available.
fn pop_avail_spin(dev: &mut DeviceQueue<2>, r: &SharedRegion<'_>) -> Popped {
    loop {
        if let Some(p) = dev.pop_avail(r).expect("the driver is well behaved") {
            return p;
        }
        thread::yield_now();
    }
}

/// Driver side: spins until the device has returned a buffer.
fn pop_used_spin(drv: &mut DriverQueue<2>, r: &SharedRegion<'_>) -> (u16, u32) {
    loop {
        if let Some(u) = drv.pop_used(r).expect("the device is well behaved") {
            return u;
        }
        thread::yield_now();
    }
}

/// Driver side of a send: descriptor and payload, then `publish` (slot, release fence, index).
fn send(drv: &mut DriverQueue<2>, r: &SharedRegion<'_>, id: u16, payload: &[u8]) {
    let v = *drv.ring();
    r.copy_in(buf(id), payload).unwrap();
    v.write_desc(r, id, buf(id) as u64, payload.len() as u32, 0)
        .unwrap();
    drv.publish(r, id).unwrap();
}

/// Device side of a receive: pop, check the descriptor, read the payload, return it.
fn receive(dev: &mut DeviceQueue<2>, r: &SharedRegion<'_>, id: u16, payload: &[u8]) {
    let p = pop_avail_spin(dev, r);
    // The acquire fence in `pop_avail` pairs with the release in `publish`: the slot, the
    // descriptor and the buffer are what the driver wrote before it, never older values.
    assert_eq!(
        (p.id, p.addr, p.len, p.flags),
        (id, buf(id) as u64, payload.len() as u32, 0)
    );
    let mut got = [0u8; BUF_LEN];
    let got = &mut got[..payload.len()];
    r.copy_out(p.addr as usize, got).unwrap();
    assert_eq!(
        got, payload,
        "payload read before the driver's write was visible"
    );
    dev.push_used(r, p.id, p.len).unwrap();
}

/// Driver → device: the device sees the descriptor and payload the driver wrote before
/// publishing, and the driver gets the id back from the used ring.
#[test]
fn loom_driver_to_device_payload_is_visible_after_pop_avail() {
    model(|| {
        let mem = memory();
        let r = SharedRegion::from_loom(&mem);
        let v = ring(&r);
        let mut drv = DriverQueue::<2>::new(v).unwrap();
        let mut dev = DeviceQueue::<2>::new(v).unwrap();
        dev.attach(&r).unwrap();

        let device = {
            let mem = mem.clone();
            thread::spawn(move || {
                let r = SharedRegion::from_loom(&mem);
                receive(&mut dev, &r, 0, b"ping");
            })
        };

        send(&mut drv, &r, 0, b"ping");
        assert_eq!(pop_used_spin(&mut drv, &r), (0, 4));
        assert_eq!(drv.outstanding(), 0);
        device.join().unwrap();
    });
}

/// Driver → device with both descriptors in flight: each slot and each buffer arrives intact and
/// in order, and both ids come back.
#[test]
fn loom_driver_to_device_two_messages_in_flight() {
    model(|| {
        let mem = memory();
        let r = SharedRegion::from_loom(&mem);
        let v = ring(&r);
        let mut drv = DriverQueue::<2>::new(v).unwrap();
        let mut dev = DeviceQueue::<2>::new(v).unwrap();
        dev.attach(&r).unwrap();

        let device = {
            let mem = mem.clone();
            thread::spawn(move || {
                let r = SharedRegion::from_loom(&mem);
                receive(&mut dev, &r, 0, b"ab");
                receive(&mut dev, &r, 1, b"cd");
                assert_eq!(dev.held(), 0);
            })
        };

        send(&mut drv, &r, 0, b"ab");
        send(&mut drv, &r, 1, b"cd");
        assert_eq!(pop_used_spin(&mut drv, &r), (0, 2));
        assert_eq!(pop_used_spin(&mut drv, &r), (1, 2));
        assert_eq!(drv.outstanding(), 0);
        device.join().unwrap();
    });
}

/// Buffer return then reuse: the driver may rewrite a buffer only after `pop_used` gave it back,
/// and the device then sees the new payload in the same descriptor, never the old one.
#[test]
fn loom_driver_reuses_a_reclaimed_buffer() {
    model(|| {
        let mem = memory();
        let r = SharedRegion::from_loom(&mem);
        let v = ring(&r);
        let mut drv = DriverQueue::<2>::new(v).unwrap();
        let mut dev = DeviceQueue::<2>::new(v).unwrap();
        dev.attach(&r).unwrap();

        let device = {
            let mem = mem.clone();
            thread::spawn(move || {
                let r = SharedRegion::from_loom(&mem);
                receive(&mut dev, &r, 0, b"one");
                receive(&mut dev, &r, 0, b"two");
            })
        };

        send(&mut drv, &r, 0, b"one");
        assert_eq!(pop_used_spin(&mut drv, &r), (0, 3));
        send(&mut drv, &r, 0, b"two");
        assert_eq!(pop_used_spin(&mut drv, &r), (0, 3));
        device.join().unwrap();
    });
}

/// Device → driver: the driver posts a writable buffer, the device fills it and returns it with
/// `push_used` (element, release fence, index), and the driver, after `pop_used` (index, acquire
/// fence), reads exactly what the device wrote.
#[test]
fn loom_device_to_driver_payload_is_visible_after_pop_used() {
    model(|| {
        let mem = memory();
        let r = SharedRegion::from_loom(&mem);
        let v = ring(&r);
        let mut drv = DriverQueue::<2>::new(v).unwrap();
        let mut dev = DeviceQueue::<2>::new(v).unwrap();
        dev.attach(&r).unwrap();
        // Stale contents the driver must never read back.
        r.fill(buf(0), BUF_LEN, 0xEE).unwrap();

        let device = {
            let mem = mem.clone();
            thread::spawn(move || {
                let r = SharedRegion::from_loom(&mem);
                let p = pop_avail_spin(&mut dev, &r);
                assert_eq!(
                    (p.id, p.addr, p.len, p.flags),
                    (0, buf(0) as u64, BUF_LEN as u32, VRING_DESC_F_WRITE)
                );
                r.copy_in(p.addr as usize, b"pong").unwrap();
                dev.push_used(&r, p.id, 4).unwrap();
            })
        };

        v.write_desc(&r, 0, buf(0) as u64, BUF_LEN as u32, VRING_DESC_F_WRITE)
            .unwrap();
        drv.publish(&r, 0).unwrap();
        let (id, len) = pop_used_spin(&mut drv, &r);
        assert_eq!((id, len), (0, 4));
        let mut got = [0u8; 4];
        r.copy_out(buf(id), &mut got).unwrap();
        assert_eq!(
            &got, b"pong",
            "payload read before the device's write was visible"
        );
        device.join().unwrap();
    });
}

/// A batch, device → driver: the device returns two buffers, writing a payload into each
/// before its `push_used`; the driver takes them with `pop_used_all` (one index read and one
/// acquire fence per batch, however the two returns fall into batches) and reads exactly what
/// the device wrote into each, never the stale bytes.
#[test]
fn loom_device_to_driver_batch_is_visible_after_pop_used_all() {
    model(|| {
        let mem = memory();
        let r = SharedRegion::from_loom(&mem);
        let v = ring(&r);
        let mut drv = DriverQueue::<2>::new(v).unwrap();
        let mut dev = DeviceQueue::<2>::new(v).unwrap();
        dev.attach(&r).unwrap();
        for id in 0..2u16 {
            r.fill(buf(id), BUF_LEN, 0xEE).unwrap();
            v.write_desc(&r, id, buf(id) as u64, BUF_LEN as u32, VRING_DESC_F_WRITE)
                .unwrap();
            drv.publish(&r, id).unwrap();
        }

        let device = {
            let mem = mem.clone();
            thread::spawn(move || {
                let r = SharedRegion::from_loom(&mem);
                for k in 0..2u8 {
                    let p = pop_avail_spin(&mut dev, &r);
                    r.copy_in(p.addr as usize, &[b'a' + k; 4]).unwrap();
                    dev.push_used(&r, p.id, 4).unwrap();
                }
            })
        };

        let mut got = Vec::new();
        while got.len() < 2 {
            let n = drv
                .pop_used_all(&r, |id, len| {
                    let mut b = [0u8; 4];
                    r.copy_out(buf(id), &mut b).unwrap();
                    got.push((id, len, b));
                })
                .expect("the device is well behaved");
            if n == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(
            got,
            [(0, 4, *b"aaaa"), (1, 4, *b"bbbb")],
            "a payload was read before the device's write was visible"
        );
        assert_eq!(drv.outstanding(), 0);
        device.join().unwrap();
    });
}

/// The enable-notification race, device side. The device had set `VRING_USED_F_NO_NOTIFY`;
/// before it sleeps it clears the flag (`set_no_notify(false)`) and re-checks `avail.idx`. The
/// driver publishes and then asks `needs_notify()`. A lost wake-up is "the device found nothing
/// and sleeps, and the driver saw the flag still set and did not notify".
///
/// `needs_notify` has the driver's full fence; `DeviceQueue::enable_notify` has the device's
/// between its flag store and its index load, so the lost wake-up is impossible.
#[test]
fn loom_device_enabling_notifications_with_full_fence_misses_nothing() {
    model(|| {
        let (slept, notified) = notification_race_device_side(true);
        assert!(
            notified || !slept,
            "device sleeps on an empty ring while the driver skipped the notification"
        );
    });
}

/// The same race without the device-side fence, as `DeviceQueue` offers it today
/// (`set_no_notify(false)` then `has_avail()`): a store followed by a load of another location,
/// so both sides may read the other's old value and the wake-up is lost. This asserts that loom
/// reaches that outcome, i.e. that the fence above is needed and the model can see its absence.
/// `DeviceQueue::enable_notify` is the fenced form.
#[test]
fn loom_device_enabling_notifications_without_fence_can_miss_a_buffer() {
    static LOST: AtomicBool = AtomicBool::new(false);
    model(|| {
        let (slept, notified) = notification_race_device_side(false);
        if slept && !notified {
            LOST.store(true, Ordering::Relaxed);
        }
    });
    assert!(
        LOST.load(Ordering::Relaxed),
        "loom never lost the wake-up: did set_no_notify or has_avail gain a full fence?"
    );
}

/// Device: clear NO_NOTIFY, (optionally) full fence, re-check avail. Driver: publish, then
/// `needs_notify`. Returns (device slept, driver notified).
fn notification_race_device_side(device_fences: bool) -> (bool, bool) {
    let mem = memory();
    let r = SharedRegion::from_loom(&mem);
    let v = ring(&r);
    let mut drv = DriverQueue::<2>::new(v).unwrap();
    let mut dev = DeviceQueue::<2>::new(v).unwrap();
    dev.attach(&r).unwrap();
    // The device was busy and had suppressed notifications.
    dev.set_no_notify(&r, true).unwrap();
    v.write_desc(&r, 0, buf(0) as u64, BUF_LEN as u32, 0)
        .unwrap();

    let device = {
        let mem = mem.clone();
        thread::spawn(move || {
            let r = SharedRegion::from_loom(&mem);
            if device_fences {
                !dev.enable_notify(&r).unwrap()
            } else {
                dev.set_no_notify(&r, false).unwrap();
                !dev.has_avail(&r).unwrap()
            }
        })
    };

    drv.publish(&r, 0).unwrap();
    let notified = drv.needs_notify(&r).unwrap();
    let slept = device.join().unwrap();
    (slept, notified)
}

/// The mirror race, driver side: a driver that waits for a returned buffer calls
/// `enable_interrupt` (clear `VRING_AVAIL_F_NO_INTERRUPT`, full fence, re-check `used.idx`); the
/// device pushes to the used ring and asks `needs_notify()` (which fences). No lost interrupt.
#[test]
fn loom_driver_enabling_interrupts_with_full_fence_misses_nothing() {
    model(|| {
        let (slept, notified) = notification_race_driver_side(true);
        assert!(
            notified || !slept,
            "driver sleeps on an empty used ring while the device skipped the interrupt"
        );
    });
}

/// Without `enable_interrupt`'s fence (`set_no_interrupt(false)`, then `has_used`) the
/// interrupt can be lost: the reason `Link` uses `enable_interrupt` when a sender starts waiting.
#[test]
fn loom_driver_enabling_interrupts_without_fence_can_miss_a_buffer() {
    static LOST: AtomicBool = AtomicBool::new(false);
    model(|| {
        let (slept, notified) = notification_race_driver_side(false);
        if slept && !notified {
            LOST.store(true, Ordering::Relaxed);
        }
    });
    assert!(
        LOST.load(Ordering::Relaxed),
        "loom never lost the interrupt: did set_no_interrupt or has_used gain a full fence?"
    );
}

/// Driver: clear NO_INTERRUPT, (optionally) full fence, re-check used. Device: push used, then
/// `needs_notify`. Returns (driver slept, device interrupted).
fn notification_race_driver_side(driver_fences: bool) -> (bool, bool) {
    let mem = memory();
    let r = SharedRegion::from_loom(&mem);
    let v = ring(&r);
    let mut drv = DriverQueue::<2>::new(v).unwrap();
    let mut dev = DeviceQueue::<2>::new(v).unwrap();
    dev.attach(&r).unwrap();
    drv.set_no_interrupt(&r, true).unwrap();
    v.write_desc(&r, 0, buf(0) as u64, BUF_LEN as u32, VRING_DESC_F_WRITE)
        .unwrap();
    drv.publish(&r, 0).unwrap();
    // The device already holds the buffer when the race starts.
    assert!(dev.pop_avail(&r).unwrap().is_some());

    let device = {
        let mem = mem.clone();
        thread::spawn(move || {
            let r = SharedRegion::from_loom(&mem);
            dev.push_used(&r, 0, 0).unwrap();
            dev.needs_notify(&r).unwrap()
        })
    };

    let slept = if driver_fences {
        !drv.enable_interrupt(&r).unwrap()
    } else {
        drv.set_no_interrupt(&r, false).unwrap();
        !drv.has_used(&r).unwrap()
    };
    let notified = device.join().unwrap();
    (slept, notified)
}

/// Control: the same publish/consume on the same region, but with the index written and read
/// without the release/acquire fences. Loom must find an execution where the consumer sees the
/// new index and an old payload; otherwise the models above would prove nothing.
#[test]
fn loom_control_sees_stale_payload_without_fences() {
    static STALE: AtomicBool = AtomicBool::new(false);
    model(|| {
        let mem = memory();
        let r = SharedRegion::from_loom(&mem);
        let v = ring(&r);
        let consumer = {
            let mem = mem.clone();
            thread::spawn(move || {
                let r = SharedRegion::from_loom(&mem);
                while v.avail_idx(&r).unwrap() == 0 {
                    thread::yield_now();
                }
                let mut got = [0u8; 2];
                r.copy_out(buf(0), &mut got).unwrap();
                got
            })
        };
        r.copy_in(buf(0), b"hi").unwrap();
        r.write_u16(v.base + v.layout.avail + avail::IDX, 1)
            .unwrap();
        if &consumer.join().unwrap() != b"hi" {
            STALE.store(true, Ordering::Relaxed);
        }
    });
    assert!(
        STALE.load(Ordering::Relaxed),
        "loom found no stale read without fences: the region is not modelled as weak memory"
    );
}
