//! Issue 15, item 1: a lifecycle with no terminal state. The other core restarts (a Linux
//! driver re-probes, an RPMsg-Lite master runs `rpmsg_lite_master_init` again on the same
//! memory, our own driver calls `Link::restart`) and our side starts a new session: nothing of
//! the old one is delivered or written, announced endpoints are announced again, and `Broken`
//! is left when the driver starts over.

mod common;

use common::{Geometry, Memory};
use rpmsg::testing::cache::Stale;
use rpmsg::testing::peers::{LinuxRpmsg, LiteMaster, MasterStep, RawRing, RawTable, RscDriver};
use rpmsg::testing::{Loopback, TestEnv, TestLink, TestMemory};
use rpmsg::wire::ns::{NsFlags, NsRepr};
use rpmsg::wire::rsc::vdev_field;
use rpmsg::wire::vring::VringLayout;
use rpmsg::{
    Config, EndpointConfig, Error, Link, LiteConfig, Role, RscConfig, SharedRegion, Timeout,
    Violation,
};
use rpmsg::{HeldRx, RxBuffer};
use std::sync::Mutex;

type Dev<'r> = Link<'r, Loopback, TestEnv, 4, 4>;

/// A device on a one-vdev table at 0 (4-entry rings at 0x400 and 0x800, buffers from 0x1000)
/// and the Linux driver that will probe it.
fn linux_setup(r: SharedRegion<'_>) -> (Dev<'_>, LinuxRpmsg<'_>) {
    let (table, offsets) = RawTable::new(1).vdev(0, 4, 16, [0, 1]).build();
    r.copy_in(0, &table).unwrap();
    let dev: Dev<'_> = Link::new(
        r,
        Loopback::new(r),
        TestEnv::new(),
        Config::rsc_table(Role::Device, RscConfig::new(0, table.len())),
    )
    .unwrap();
    let l = VringLayout::new(4, 16).unwrap();
    let linux = LinuxRpmsg::new(
        RscDriver {
            table: r,
            vdev: offsets[0],
            linux: true,
        },
        [RawRing { r, base: 0x400, l }, RawRing { r, base: 0x800, l }],
        0x1000,
        4,
    );
    (dev, linux)
}

/// The name-service message Linux finds next on vring 0, if any.
fn next_ns(linux: &mut LinuxRpmsg<'_>) -> Option<NsRepr> {
    let (_, dst, data) = linux.recv()?;
    assert_eq!(dst, 53, "a name-service message");
    Some(NsRepr::parse(&data).unwrap())
}

/// Scenario "a hand-played driver re-probe without the device seeing status 0". Before the
/// fix: the device kept its shadow indices, Linux's first message of the new session was an
/// `IndexJump` (avail.idx 1 against our 4) and the link stayed `Broken`.
#[test]
fn device_recovers_from_a_linux_reprobe_it_did_not_see() {
    let kept: Mutex<Vec<HeldRx>> = Mutex::new(Vec::new());
    let keep = |msg: RxBuffer<'_>| kept.lock().unwrap().push(msg.into_held());
    let mut mem = TestMemory::new(0x2000);
    let r = mem.region();
    let (dev, mut linux) = linux_setup(r);
    let ep = dev
        .create_endpoint(
            EndpointConfig::new()
                .addr(30)
                .name("svc")
                .unwrap()
                .announce(true)
                .queue(4),
        )
        .unwrap();
    dev.create_endpoint(EndpointConfig::new().addr(31).callback(&keep))
        .unwrap();
    dev.start().unwrap();
    assert!(linux.probe(), "vring 0 kicked");
    dev.handle_notify(0).unwrap();
    assert!(dev.is_up());
    let ns = next_ns(&mut linux).expect("announced");
    assert_eq!((ns.addr, ns.flags), (30, NsFlags::Create));
    // Session 1: four messages each way, and one more left queued unread.
    let mut buf = [0u8; 16];
    for k in 0..4u8 {
        assert!(linux.send(0x400, 30, &[k; 3]));
        dev.handle_notify(1).unwrap();
        assert_eq!(ep.recv(&mut buf, Timeout::NoWait).unwrap(), (3, 0x400));
        ep.send_to(0x400, &[k]).unwrap();
        assert_eq!(linux.recv(), Some((30, 0x400, vec![k])));
    }
    assert!(linux.send(0x400, 30, b"old"));
    dev.handle_notify(1).unwrap();
    // Two more, kept past their callback as held tokens.
    for _ in 0..2 {
        assert!(linux.send(0x400, 31, b"held"));
        dev.handle_notify(1).unwrap();
    }
    let (held_a, held_b) = {
        let mut k = kept.lock().unwrap();
        (k.pop().expect("held"), k.pop().expect("held"))
    };
    assert_eq!(dev.stats().held, 3, "two tokens and the queued message");
    let mut old_tx = ep.alloc_tx(Timeout::NoWait).unwrap();
    old_tx.write(0, b"old session").unwrap();

    // Linux re-probes: 0, 0x01, 0x03, rings zeroed, buffers posted, 0x07, kick. The device
    // only looks on the kick.
    assert!(linux.probe());
    dev.handle_notify(0).unwrap();
    assert!(dev.is_up(), "the new session is up");
    let s = dev.stats();
    assert_eq!(s.sessions, 2);
    assert_eq!(s.peer_violations, 0, "{:?}", s.last_violation);
    assert_eq!(s.held, 0);
    // Announced again, first thing on the fresh vring 0.
    let ns = next_ns(&mut linux).expect("announced again");
    assert_eq!((ns.addr, ns.flags), (30, NsFlags::Create));
    // Nothing of the old session: the queued message is gone, the old buffer writes nothing.
    assert_eq!(ep.pending(), Ok(0));
    let snapshot = || {
        let mut b = vec![0u8; r.len()];
        r.copy_out(0, &mut b).unwrap();
        b
    };
    let before = snapshot();
    assert_eq!(old_tx.write(0, b"stale"), Err(Error::LinkDown));
    assert_eq!(old_tx.send_to(0x400, 5).unwrap_err().error, Error::LinkDown);
    // The held tokens of the old session read nothing and give nothing back.
    assert!(matches!(dev.resume_held(held_a), Ok(None)));
    dev.release_held(held_b).unwrap();
    assert_eq!(
        snapshot(),
        before,
        "the old buffer and tokens wrote nothing"
    );
    // The new session carries messages both ways, from the rings' start.
    for k in 0..6u8 {
        assert!(linux.send(0x400, 30, &[k; 2]));
        dev.handle_notify(1).unwrap();
        assert_eq!(ep.recv(&mut buf, Timeout::NoWait).unwrap(), (2, 0x400));
        assert_eq!(buf[..2], [k; 2]);
        ep.send_to(0x400, &[k]).unwrap();
        assert_eq!(linux.recv(), Some((30, 0x400, vec![k])));
    }
    assert_eq!(dev.stats().peer_violations, 0);
}

/// `Broken` is not terminal: a hostile index jump breaks the link, and stays broken while the
/// driver does nothing else; a re-probe (seen or not) starts a new session.
#[test]
fn broken_device_recovers_at_the_next_driver_session() {
    for see_reset in [false, true] {
        let mut mem = TestMemory::new(0x2000);
        let r = mem.region();
        let (dev, mut linux) = linux_setup(r);
        let ep = dev
            .create_endpoint(EndpointConfig::new().addr(30).queue(4))
            .unwrap();
        dev.start().unwrap();
        linux.probe();
        dev.handle_notify(0).unwrap();
        assert!(linux.send(0x400, 30, b"a"));
        dev.handle_notify(1).unwrap();
        // A jump of 100 on vring 1's avail.idx: not a re-laid ring (used.idx is ours still).
        let v1 = linux.rings[1];
        r.write_u16(v1.base + v1.l.avail + 2, 101).unwrap();
        assert!(matches!(
            dev.handle_notify(1),
            Err(Error::PeerViolation(Violation::IndexJump { .. }))
        ));
        assert!(
            matches!(dev.poll(), Err(Error::PeerViolation(_))),
            "still broken"
        );
        assert!(!dev.is_up());
        if see_reset {
            r.write_u8(linux.drv.vdev + vdev_field::STATUS, 0).unwrap();
            let _ = dev.poll();
        }
        linux.probe();
        dev.handle_notify(0).unwrap();
        assert!(dev.is_up(), "see_reset {see_reset}: recovered");
        assert!(linux.send(0x400, 30, b"new"));
        dev.handle_notify(1).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(ep.recv(&mut buf, Timeout::NoWait).unwrap(), (3, 0x400));
        assert_eq!(&buf[..3], b"new");
        assert_eq!(dev.stats().sessions, 2);
    }
}

/// Scenario "RPMsg-Lite's master re-initialising the same memory under our device", the
/// device polling between every group of the master's writes. Before: `IndexJump` on the
/// master's first send of the new session, the link broken for good.
#[test]
fn device_recovers_when_rpmsg_lite_master_reinitialises() {
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let r = mem.region();
    let dev: Link<'_, _, _, 2> = Link::new(
        r,
        Loopback::new(r),
        TestEnv::new(),
        Config::lite(Role::Device, lite),
    )
    .unwrap();
    dev.start().unwrap();
    let ep = dev
        .create_endpoint(EndpointConfig::new().addr(30).queue(2))
        .unwrap();
    let mut buf = [0u8; 8];
    for session in 1..=3u32 {
        let mut master = LiteMaster::new(r, lite);
        loop {
            let step = master.step();
            if step == MasterStep::Kick {
                dev.handle_notify(master.kick_id()).unwrap();
            } else {
                dev.poll().unwrap();
            }
            if step == MasterStep::Done {
                break;
            }
        }
        assert!(dev.is_up(), "session {session}");
        assert_eq!(dev.stats().sessions, session);
        assert_eq!(ep.pending(), Ok(0), "nothing of the old session");
        for k in 0..5u8 {
            assert_eq!(
                master.send(1024, 30, &[k; 4]),
                Ok(()),
                "session {session} send {k}"
            );
            dev.poll().unwrap();
            assert_eq!(ep.recv(&mut buf, Timeout::NoWait).unwrap(), (4, 1024));
            assert_eq!(buf[..4], [k; 4]);
            ep.send_to(1024, &[k]).unwrap();
            assert_eq!(master.recv(), Some((30, 1024, vec![k])));
        }
        // One left unread: it must not come out in the next session.
        assert_eq!(master.send(1024, 30, b"old"), Ok(()));
        dev.poll().unwrap();
        assert_eq!(ep.pending(), Ok(1));
        let s = dev.stats();
        assert_eq!(s.peer_violations, 0, "{:?}", s.last_violation);
    }
}

/// The driver side: `Link::restart` lays the rings out again as a new session, in both
/// layouts, on coherent memory and on the non-coherent cache model; the device follows (it
/// never sees a status 0: the restart writes 0 and 0x07 in one call), old buffers and tokens
/// fail with a typed error, announcements are made again.
#[test]
fn driver_restart_starts_a_new_session_on_both_sides() {
    for (geo, mem) in [
        Geometry::lite(LiteConfig::new(16, 496, 16)),
        Geometry::rsc(16, 16, false, 0x8000_0000),
    ]
    .iter()
    .flat_map(|g| Memory::both(g, Stale::Poison))
    {
        let drv: TestLink<'_, 16> = mem.link(&geo, Role::Driver);
        let dev: TestLink<'_, 16> = mem.link(&geo, Role::Device);
        let d_ep = drv
            .create_endpoint(EndpointConfig::new().addr(0x400).dst(30).queue(4))
            .unwrap();
        let v_ep = dev
            .create_endpoint(
                EndpointConfig::new()
                    .addr(30)
                    .dst(0x400)
                    .name("svc")
                    .unwrap()
                    .announce(true)
                    .queue(4),
            )
            .unwrap();
        dev.start().unwrap();
        drv.start().unwrap();
        // Both sides, until a round takes nothing after at least three (a poll that starts a
        // session sends announcements and takes no message).
        let pump = || {
            for round in 0..16 {
                if drv.poll().unwrap() + dev.poll().unwrap() == 0 && round >= 3 {
                    return;
                }
            }
        };
        pump();
        assert!(drv.is_up() && dev.is_up());
        let mut buf = [0u8; 16];
        for k in 0..5u8 {
            d_ep.try_send(&[k; 3]).unwrap();
            v_ep.try_send(&[k; 2]).unwrap();
            pump();
            assert_eq!(v_ep.recv(&mut buf, Timeout::NoWait).unwrap(), (3, 0x400));
            assert_eq!(d_ep.recv(&mut buf, Timeout::NoWait).unwrap(), (2, 30));
        }
        let ns_before = drv.stats().ns_received;
        // Old things on both sides: a queued message each, a transmit buffer on the driver.
        d_ep.try_send(b"old").unwrap();
        v_ep.try_send(b"old").unwrap();
        pump();
        let mut old_tx = d_ep.alloc_tx(Timeout::NoWait).unwrap();
        old_tx.write(0, b"old").unwrap();

        drv.restart().unwrap();
        pump();
        assert!(drv.is_up() && dev.is_up(), "{geo:?} on {mem:?}");
        assert_eq!((drv.stats().sessions, dev.stats().sessions), (2, 2));
        assert_eq!(d_ep.pending(), Ok(0));
        assert_eq!(v_ep.pending(), Ok(0));
        assert_eq!(old_tx.write(0, b"x"), Err(Error::LinkDown));
        assert_eq!(old_tx.send(1).unwrap_err().error, Error::LinkDown);
        if dev.name_service() {
            assert_eq!(
                drv.stats().ns_received,
                ns_before + 1,
                "announced again: {geo:?} {:?} {:?}",
                drv.stats(),
                dev.stats()
            );
        }
        for k in 0..20u8 {
            d_ep.try_send(&[k; 3]).unwrap();
            v_ep.try_send(&[k; 2]).unwrap();
            pump();
            assert_eq!(v_ep.recv(&mut buf, Timeout::NoWait).unwrap(), (3, 0x400));
            assert_eq!(buf[..3], [k; 3]);
            assert_eq!(d_ep.recv(&mut buf, Timeout::NoWait).unwrap(), (2, 30));
            assert_eq!(buf[..2], [k; 2]);
        }
        for (who, s) in [("driver", drv.stats()), ("device", dev.stats())] {
            assert_eq!(s.peer_violations, 0, "{who}: {:?}", s.last_violation);
            assert_eq!(s.held, 0, "{who}");
        }
    }
}
