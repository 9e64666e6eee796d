//! Items 8 to 11 of issue 13 ("the core"), each with the test that failed before its fix:
//! async senders on the driver side against a device that honours `VRING_AVAIL_F_NO_INTERRUPT`
//! (8), callbacks that call back into their own link (9), held tokens that must follow their
//! link wherever it moves and never match another link (10), and transmit buffers of an
//! earlier session that must not write into shared memory (11). Item 7 (ghost messages) lives
//! next to the hand-played peers it needs, in `hostile_peer.rs` and `compact.rs`.

mod common;

use common::Geometry;
use rpmsg::testing::{TestLink, TestMemory};
use rpmsg::wire::vring::{VRING_AVAIL_F_NO_INTERRUPT, avail};
use rpmsg::{EndpointConfig, Error, LiteConfig, Role, RxBuffer, SharedRegion, Timeout};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// Eight buffers per ring: room for eight queued messages.
const NUM: u16 = 8;

fn lite() -> LiteConfig {
    LiteConfig::new(NUM, 496, 16)
}

/// A started driver and device over `region` in RPMsg-Lite's layout, the device up; `device`
/// honours the driver's `VRING_AVAIL_F_NO_INTERRUPT` when `honour` is set.
fn pair(region: SharedRegion<'_>, honour: bool) -> (TestLink<'_, 16>, TestLink<'_, 16>) {
    let geo = Geometry::lite(lite());
    let drv: TestLink<'_, 16> = geo.link(region, Role::Driver);
    let mut cfg = geo.config(Role::Device);
    cfg.honour_no_interrupt = honour;
    let dev: TestLink<'_, 16> = geo.link_with(region, cfg);
    dev.start().unwrap();
    drv.start().unwrap();
    dev.wait_link_up(Timeout::NoWait).unwrap();
    (drv, dev)
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// Item 8: async senders on the driver side.

/// The driver's async sender runs out of buffers while the device, which honours
/// `VRING_AVAIL_F_NO_INTERRUPT` (as OpenAMP's does), has not taken any message yet. When the
/// device then takes them and returns the buffers, it must ring vring 1's doorbell: the
/// pending sender asked for it. The doorbells the device rings are delivered to the driver's
/// `handle_notify`, as an interrupt would; nothing else polls the driver, so the sender
/// completes only if it was woken. Afterwards, with no sender waiting, the flag is set again.
#[test]
fn item8_async_sender_on_the_driver_is_woken_by_a_device_that_honours_no_interrupt() {
    let lite = lite();
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let (drv, dev) = pair(region, true);
    let sink = |_: RxBuffer<'_>| {};
    dev.create_endpoint(EndpointConfig::new().addr(30).callback(&sink))
        .unwrap();
    let ep = drv
        .create_endpoint(EndpointConfig::new().addr(1024).dst(30))
        .unwrap();
    for i in 0..NUM {
        ep.try_send(&[i as u8; 8]).unwrap();
    }
    assert_eq!(ep.try_send(b"full"), Err(Error::NoBuffer));

    let counter = Arc::new(Counter::default());
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let mut send = std::pin::pin!(ep.send_async(b"after"));
    assert!(send.as_mut().poll(&mut cx).is_pending(), "no buffer yet");

    // The device takes the eight messages and returns their buffers; each doorbell it rings
    // reaches the driver as an interrupt.
    let flags_at = geo_flags(&lite);
    let rung_before = dev.platform().notifies()[1];
    assert_eq!(dev.poll(), Ok(usize::from(NUM)));
    let rung = dev.platform().notifies()[1] - rung_before;
    assert!(
        rung > 0,
        "the device rang no doorbell for the returned buffers: vring 1 flags {:#x}",
        region.read_u16(flags_at).unwrap()
    );
    for _ in 0..rung {
        drv.handle_notify(drv.notify_ids()[1]).unwrap();
    }
    assert!(counter.0.load(Ordering::SeqCst) > 0, "the sender was woken");
    assert_eq!(send.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
    assert_eq!(
        region.read_u16(flags_at).unwrap(),
        VRING_AVAIL_F_NO_INTERRUPT,
        "no sender waits: interrupts for returned buffers are off again"
    );
    assert_eq!(drv.stats().tx_messages, u32::from(NUM) + 1);
}

/// A pending async sender that is dropped (a `select!` or a timeout gave up on it) leaves
/// interrupts for returned buffers off again, as a blocking sender that gives up does.
#[test]
fn item8_dropped_async_sender_turns_the_interrupt_off_again() {
    let lite = lite();
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let (drv, _dev) = pair(region, true);
    let ep = drv
        .create_endpoint(EndpointConfig::new().addr(1024).dst(30))
        .unwrap();
    for i in 0..NUM {
        ep.try_send(&[i as u8; 8]).unwrap();
    }
    let flags_at = geo_flags(&lite);
    let waker = Waker::from(Arc::new(Counter::default()));
    let mut cx = Context::from_waker(&waker);
    {
        let mut a = Box::pin(ep.send_async(b"a"));
        let mut b = Box::pin(ep.alloc_tx_async());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert_eq!(region.read_u16(flags_at).unwrap(), 0, "senders wait");
        drop(a);
        assert_eq!(region.read_u16(flags_at).unwrap(), 0, "one sender waits");
    }
    assert_eq!(
        region.read_u16(flags_at).unwrap(),
        VRING_AVAIL_F_NO_INTERRUPT,
        "nobody waits"
    );
}

/// Region offset of vring 1's `avail.flags` in `lite`'s layout.
fn geo_flags(lite: &LiteConfig) -> usize {
    let (_, o1, _) = lite.offsets();
    let layout = rpmsg::wire::vring::VringLayout::new(lite.buffer_count, lite.vring_align).unwrap();
    o1 + layout.avail + avail::FLAGS
}

// ---------------------------------------------------------------------------------------------
// Item 9: re-entrant dispatch.

/// Ten messages wait for the device; the callback of the first calls, in turn, `poll`,
/// `handle_notify`, `recv` on a queue endpoint, `wait_link_up`, and the async `recv`,
/// `wait_link_up` and `alloc_tx`/`send` forms. Each dispatching call is refused with
/// `Error::InCallback` instead of running the next message's callback inside this one: the
/// nesting depth stays 1 (it was one frame per queued message), and every message is still
/// delivered, by the outer `poll`, in order. A send from a callback still works.
#[test]
fn item9_callback_calling_back_into_its_link_is_refused_and_nesting_stays_one() {
    let lite = LiteConfig::new(16, 496, 16);
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let geo = Geometry::lite(lite);
    let drv: TestLink<'_, 16> = geo.link(region, Role::Driver);
    let dev: TestLink<'_, 16> = geo.link(region, Role::Device);
    dev.start().unwrap();
    drv.start().unwrap();
    dev.wait_link_up(Timeout::NoWait).unwrap();

    let depth = AtomicU32::new(0);
    let max_depth = AtomicU32::new(0);
    let seen = std::sync::Mutex::new(Vec::new());
    let errors = std::sync::Mutex::new(Vec::new());
    let q = dev
        .create_endpoint(EndpointConfig::new().addr(31).queue(4))
        .unwrap();
    let (q, dev_ref) = (&q, &dev);
    let (depth, max_depth_ref, seen_ref, errors_ref) = (&depth, &max_depth, &seen, &errors);
    let cb = move |m: RxBuffer<'_>| {
        let d = depth.fetch_add(1, Ordering::SeqCst) + 1;
        max_depth_ref.fetch_max(d, Ordering::SeqCst);
        let mut b = [0u8; 1];
        m.read(0, &mut b).unwrap();
        seen_ref.lock().unwrap().push(b[0]);
        if b[0] == 0 {
            let mut errs = errors_ref.lock().unwrap();
            errs.push(("poll", dev_ref.poll().err()));
            errs.push(("handle_notify", dev_ref.handle_notify(1).err()));
            errs.push(("recv", q.recv(&mut [0; 16], Timeout::NoWait).err()));
            errs.push(("recv Forever", q.recv(&mut [0; 16], Timeout::Forever).err()));
            errs.push((
                "recv_zero_copy",
                q.recv_zero_copy(Timeout::After(Duration::from_secs(60)))
                    .err(),
            ));
            errs.push(("wait_link_up", dev_ref.wait_link_up(Timeout::Forever).err()));
            let waker = Waker::noop();
            let mut cx = Context::from_waker(waker);
            let mut buf = [0u8; 16];
            let mut f = std::pin::pin!(q.recv_async(&mut buf));
            errs.push(("recv_async", poll_err(f.as_mut().poll(&mut cx))));
            let mut f = std::pin::pin!(q.recv_zero_copy_async());
            errs.push(("recv_zero_copy_async", poll_err(f.as_mut().poll(&mut cx))));
            let mut f = std::pin::pin!(dev_ref.wait_link_up_async());
            errs.push(("wait_link_up_async", poll_err(f.as_mut().poll(&mut cx))));
            // Sending does not dispatch: it works from a callback.
            errs.push(("send", q.send_to(1024, b"from a callback").err()));
        }
        depth.fetch_sub(1, Ordering::SeqCst);
    };
    dev.create_endpoint(EndpointConfig::new().addr(30).callback(&cb))
        .unwrap();
    let d = drv
        .create_endpoint(EndpointConfig::new().addr(1024).dst(30).queue(4))
        .unwrap();
    for i in 0..10u8 {
        d.try_send(&[i]).unwrap();
    }
    assert_eq!(dev.poll(), Ok(10));
    assert_eq!(max_depth.load(Ordering::SeqCst), 1, "callbacks never nest");
    assert_eq!(*seen.lock().unwrap(), (0..10).collect::<Vec<u8>>());
    let errs = errors.lock().unwrap();
    for (what, e) in errs.iter().take(errs.len() - 1) {
        assert_eq!(*e, Some(Error::InCallback), "{what}");
    }
    assert_eq!(errs.last(), Some(&("send", None)));
    let mut b = [0u8; 32];
    assert_eq!(
        d.recv(&mut b, Timeout::NoWait)
            .map(|(n, _)| b[..n].to_vec()),
        Ok(b"from a callback".to_vec())
    );
    // Outside the callback everything works again.
    assert_eq!(dev.poll(), Ok(0));
    dev.wait_link_up(Timeout::NoWait).unwrap();
}

fn poll_err<T>(p: Poll<Result<T, Error>>) -> Option<Error> {
    match p {
        Poll::Ready(Err(e)) => Some(e),
        Poll::Ready(Ok(_)) => None,
        Poll::Pending => panic!("pending inside a callback"),
    }
}

/// While one thread runs a callback, another thread's `recv` on a queue endpoint of the same
/// link still works: only calls made from inside the callback are refused.
#[test]
fn item9_other_threads_are_not_refused_while_a_callback_runs() {
    let lite = LiteConfig::new(16, 496, 16);
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let geo = Geometry::lite(lite);
    let drv: TestLink<'_, 16> = geo.link(region, Role::Driver);
    let dev: TestLink<'_, 16> = geo.link(region, Role::Device);
    dev.start().unwrap();
    drv.start().unwrap();
    dev.wait_link_up(Timeout::NoWait).unwrap();
    let inside = AtomicBool::new(false);
    let release = AtomicBool::new(false);
    let cb = |_: RxBuffer<'_>| {
        inside.store(true, Ordering::SeqCst);
        let t = std::time::Instant::now();
        while !release.load(Ordering::SeqCst) {
            assert!(t.elapsed() < Duration::from_secs(120), "hang guard");
            std::thread::yield_now();
        }
    };
    dev.create_endpoint(EndpointConfig::new().addr(30).callback(&cb))
        .unwrap();
    let q = dev
        .create_endpoint(EndpointConfig::new().addr(31).queue(4))
        .unwrap();
    let d = drv
        .create_endpoint(EndpointConfig::new().addr(1024).dst(30))
        .unwrap();
    d.try_send(b"hold").unwrap();
    std::thread::scope(|s| {
        s.spawn(|| dev.poll().unwrap());
        let t = std::time::Instant::now();
        while !inside.load(Ordering::SeqCst) {
            assert!(t.elapsed() < Duration::from_secs(120), "hang guard");
            std::thread::yield_now();
        }
        d.try_send_to(31, b"to the queue").unwrap();
        let mut b = [0u8; 32];
        let got = q.recv(&mut b, Timeout::After(Duration::from_secs(120)));
        release.store(true, Ordering::SeqCst);
        assert_eq!(
            got.map(|(n, _)| b[..n].to_vec()),
            Ok(b"to the queue".to_vec())
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Item 10: held tokens follow their link.

/// A buffer kept with `into_held`, then the link moved into a `Box` and a `Vec`: the token
/// still belongs to it, `release_held` gives the buffer back to the driver, and the driver can
/// send again with it.
#[test]
fn item10_held_token_survives_moving_the_link() {
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let geo = Geometry::lite(lite);
    let drv: TestLink<'_, 2> = geo.link(region, Role::Driver);
    let dev: TestLink<'_, 2> = geo.link(region, Role::Device);
    dev.start().unwrap();
    drv.start().unwrap();
    dev.wait_link_up(Timeout::NoWait).unwrap();
    let d = drv
        .create_endpoint(EndpointConfig::new().addr(1024).dst(30))
        .unwrap();
    let held = {
        let ep = dev
            .create_endpoint(EndpointConfig::new().addr(30).queue(2))
            .unwrap();
        d.try_send(b"keep").unwrap();
        ep.recv_zero_copy(Timeout::NoWait).unwrap().into_held()
    };
    assert_eq!(dev.stats().held, 1);
    let boxed = Box::new(dev);
    let moved: Vec<_> = std::iter::once(boxed).collect();
    let link = &moved[0];
    assert_eq!(link.release_held(held), Ok(()));
    assert_eq!(link.stats().held, 0);
    // The buffer went back: the driver's two buffers both send again.
    link.poll().unwrap();
    d.try_send(b"one").unwrap();
    d.try_send(b"two").unwrap();
}

/// A token of a link that is gone, offered to a new link built in the very same place, is
/// foreign: refused with `ForeignBuffer` and handed back.
#[test]
fn item10_token_of_a_dropped_link_is_foreign_to_a_new_link_at_its_address() {
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let geo = Geometry::lite(lite);
    let drv: TestLink<'_, 2> = geo.link(region, Role::Driver);
    let d = drv
        .create_endpoint(EndpointConfig::new().addr(1024).dst(30))
        .unwrap();
    let mut slot: Box<Option<TestLink<'_, 2>>> = Box::new(None);
    let dev = slot.insert(geo.link(region, Role::Device));
    let at = std::ptr::from_ref(dev) as usize;
    dev.start().unwrap();
    drv.start().unwrap();
    dev.wait_link_up(Timeout::NoWait).unwrap();
    let ep = dev
        .create_endpoint(EndpointConfig::new().addr(30).queue(2))
        .unwrap();
    d.try_send(b"keep").unwrap();
    let held = ep.recv_zero_copy(Timeout::NoWait).unwrap().into_held();
    *slot = None;
    let again = slot.insert(geo.link(region, Role::Device));
    assert_eq!(std::ptr::from_ref(again) as usize, at, "the same address");
    let refused = again.release_held(held).unwrap_err();
    assert_eq!(refused.error, Error::ForeignBuffer);
    let held = refused.into_inner();
    assert!(matches!(again.resume_held(held), Err(e) if e.error == Error::ForeignBuffer));
}

// ---------------------------------------------------------------------------------------------
// Item 11: transmit buffers of an earlier session.

/// A device allocates a transmit buffer; the driver resets (status 0, then a new session
/// with its rings laid out again and `DRIVER_OK`). The old buffer's `write` and `send` fail
/// with `LinkDown`, and not one byte of shared memory changes.
#[test]
fn item11_stale_tx_buffer_writes_nothing_after_a_reset() {
    let geo = Geometry::rsc(8, 16, true, 0);
    let mut mem = TestMemory::new(geo.region_len());
    let region = mem.region();
    geo.prepare(&region);
    let dev: TestLink<'_, 16> = geo.link(region, Role::Device);
    let ep = dev
        .create_endpoint(EndpointConfig::new().addr(30).dst(1024))
        .unwrap();
    dev.start().unwrap();
    let drv: TestLink<'_, 16> = geo.link(region, Role::Driver);
    drv.start().unwrap();
    dev.wait_link_up(Timeout::NoWait).unwrap();
    let mut old = ep.alloc_tx(Timeout::NoWait).unwrap();
    old.write(0, b"first session").unwrap();

    drv.shutdown().unwrap();
    dev.poll().unwrap();
    assert!(!dev.is_up(), "the device saw the reset");
    let drv2: TestLink<'_, 16> = geo.link(region, Role::Driver);
    drv2.start().unwrap();
    dev.poll().unwrap();
    assert!(dev.is_up(), "the second session is up");
    assert_eq!(dev.stats().sessions, 2);

    let snapshot = |r: &SharedRegion<'_>| {
        let mut b = vec![0u8; r.len()];
        r.copy_out(0, &mut b).unwrap();
        b
    };
    let before = snapshot(&region);
    assert_eq!(old.write(0, b"stale bytes"), Err(Error::LinkDown));
    assert_eq!(snapshot(&region), before, "write wrote nothing");
    let refused = old.send(11).unwrap_err();
    assert_eq!(refused.error, Error::LinkDown);
    assert_eq!(snapshot(&region), before, "send wrote nothing");
    drop(refused);
    assert_eq!(snapshot(&region), before, "drop wrote nothing");
    // The new session works.
    let d = drv2
        .create_endpoint(EndpointConfig::new().addr(1024).queue(2))
        .unwrap();
    ep.try_send(b"second session").unwrap();
    let mut b = [0u8; 32];
    drv2.poll().unwrap();
    assert_eq!(
        d.recv(&mut b, Timeout::NoWait)
            .map(|(n, _)| b[..n].to_vec()),
        Ok(b"second session".to_vec())
    );
}
