//! Our link against hand-written peers that behave exactly as wire.md says Linux, OpenAMP and
//! RPMsg-Lite do, including their start-up states and quirks (wire.md section 13). The peers
//! here write raw ring fields (`rpmsg::testing::peers`); nothing of ours runs on their side.

use core::sync::atomic::AtomicU8;
use rpmsg::compact::{Message, Remote, State};
use rpmsg::testing::peers::{
    LiteMaster, MasterStep, RawRing, RawTable, RscDriver, header, write_msg,
};
use rpmsg::testing::{Loopback, TestEnv, TestMemory};
use rpmsg::wire::ns::NsRepr;
use rpmsg::wire::rpmsg::RpmsgRepr;
use rpmsg::wire::rsc::{
    FW_RSC_ADDR_ANY, ResourceTable, RscTableRepr, VdevRepr, VringInfo, vdev_field,
};
use rpmsg::wire::vring::{VringLayout, avail};
use rpmsg::{
    Config, EndpointConfig, Error, Link, LiteConfig, Role, RscConfig, SharedRegion, Timeout,
};

#[test]
fn device_against_rpmsg_lite_master() {
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let r = mem.region();
    let layout = lite.validate(r.len()).unwrap();
    let (o0, o1, _) = lite.offsets();
    let v0 = RawRing {
        r,
        base: o0,
        l: layout,
    };
    let v1 = RawRing {
        r,
        base: o1,
        l: layout,
    };
    let dev: Link<_, _, 2> = Link::new(
        r,
        Loopback::new(r),
        TestEnv::new(),
        Config::lite(Role::Device, lite),
    )
    .unwrap();
    dev.start().unwrap();
    assert!(!dev.is_up(), "nothing from the master yet");
    let ep = dev
        .create_endpoint(EndpointConfig::new().addr(30).queue(2))
        .unwrap();
    assert_eq!(ep.try_send_to(1024, b"x"), Err(Error::NotReady));

    // rpmsg_lite_master_init: rx buffers posted on vring 0, tx buffers pre-filled into vring 1's
    // used ring, WRITE on every descriptor, NO_INTERRUPT on both avail rings. No kick yet.
    for j in 0..2u16 {
        v0.desc(j, lite.buffer(usize::from(j)) as u64, 512, 2);
        v1.desc(j, lite.buffer(2 + usize::from(j)) as u64, 512, 2);
        v0.publish(j);
        v1.push_used(u32::from(j), 512);
    }
    v0.avail_flags(1);
    v1.avail_flags(1);
    // The kick may have been missed (handler installed late): vring 0's avail.idx says "up".
    dev.poll().unwrap();
    assert!(dev.is_up());

    // Remote -> master: lands in a vring 0 buffer, returned with used.len = desc.len, notified
    // although the master set NO_INTERRUPT (it relies on the interrupt anyway).
    let before = dev.platform().notifies();
    ep.send_to(1024, b"hello master").unwrap();
    assert_eq!(v0.used_idx(), 1);
    let (id, len) = v0.used_elem(0);
    assert_eq!(len, 512);
    let h = header(&r, lite.buffer(id as usize));
    assert_eq!((h.src, h.dst, h.len, h.flags), (30, 1024, 12, 0));
    let mut reserved = [0u8; 4];
    r.copy_out(lite.buffer(id as usize) + 8, &mut reserved)
        .unwrap();
    assert_eq!(reserved, [0; 4], "we write reserved as 0");
    assert_eq!(dev.platform().notifies()[0], before[0] + 1);

    // Master -> remote: the master takes a pre-filled tx buffer, leaves a stale index in
    // `reserved` bytes 10..12 and WRITE in the descriptor flags; we must not care.
    write_msg(&r, lite.buffer(2), 1024, 30, b"hi remote", 0x0005_0000);
    v1.publish(0);
    dev.poll().unwrap();
    let mut buf = [0u8; 32];
    let (n, src) = ep.recv(&mut buf, Timeout::NoWait).unwrap();
    assert_eq!((&buf[..n], src), (&b"hi remote"[..], 1024));
    // Returned on vring 1 after the two pre-filled entries: used.idx continues at 3.
    assert_eq!(v1.used_idx(), 3);
    assert_eq!(v1.used_elem(2), (0, 512));
    assert!(
        dev.platform().notifies()[1] >= 1,
        "consumed-buffer notification sent"
    );
    assert_eq!(dev.stats().peer_violations, 0);
}

#[test]
fn driver_lays_out_what_rpmsg_lite_master_init_does() {
    let lite = LiteConfig::new(4, 496, 16);
    let mut mem = TestMemory::new(lite.region_len());
    let r = mem.region();
    let layout = lite.validate(r.len()).unwrap();
    let (o0, o1, _) = lite.offsets();
    let (v0, v1) = (
        RawRing {
            r,
            base: o0,
            l: layout,
        },
        RawRing {
            r,
            base: o1,
            l: layout,
        },
    );
    let drv: Link<_, _, 4> = Link::new(
        r,
        Loopback::new(r),
        TestEnv::new(),
        Config::lite(Role::Driver, lite),
    )
    .unwrap();
    drv.start().unwrap();
    assert!(drv.is_up());
    for j in 0..4u16 {
        let d = o0 + 16 * usize::from(j);
        assert_eq!(r.read_u64(d).unwrap(), lite.buffer(usize::from(j)) as u64);
        assert_eq!(r.read_u32(d + 8).unwrap(), 512);
        assert_eq!(
            r.read_u16(d + 12).unwrap(),
            2,
            "rx descriptors are device-writable"
        );
        let d = o1 + 16 * usize::from(j);
        assert_eq!(
            r.read_u64(d).unwrap(),
            lite.buffer(4 + usize::from(j)) as u64
        );
    }
    assert_eq!(v0.avail_idx(), 4);
    assert_eq!(v1.avail_idx(), 0);
    assert_eq!(
        r.read_u16(o1 + layout.avail).unwrap(),
        1,
        "vring 1 NO_INTERRUPT while no sender waits"
    );
    assert_eq!(
        drv.platform().notifies()[0],
        1,
        "vring 0 kicked: the remote's link-up signal"
    );

    // A device that asks for no notifications (VRING_USED_F_NO_NOTIFY on vring 1) gets none.
    let ep = drv
        .create_endpoint(EndpointConfig::new().addr(1024))
        .unwrap();
    r.write_u16(o1 + layout.used, 1).unwrap();
    ep.send_to(30, b"a").unwrap();
    assert_eq!(drv.platform().notifies()[1], 0);
    r.write_u16(o1 + layout.used, 0).unwrap();
    ep.send_to(30, b"bc").unwrap();
    assert_eq!(drv.platform().notifies()[1], 1);
    // Linux's rule for tx descriptors: len = 16 + payload, flags 0.
    let slot1 = r.read_u16(o1 + layout.avail + avail::ring(1)).unwrap();
    let d = o1 + 16 * usize::from(slot1);
    assert_eq!(
        (r.read_u32(d + 8).unwrap(), r.read_u16(d + 12).unwrap()),
        (18, 0)
    );

    // The device returns vring 0 buffers with used.len = desc.len and a header that claims
    // more than fits: dropped, counted, the buffer re-posted.
    write_msg(&r, lite.buffer(0), 30, 1024, b"ok", 0);
    v0.push_used(0, 512);
    let mut h = RpmsgRepr {
        src: 30,
        dst: 1024,
        len: 497,
        flags: 0,
    }
    .to_bytes();
    h[8] = 0xAA;
    r.copy_in(lite.buffer(1), &h).unwrap();
    v0.push_used(1, 512);
    drv.poll().unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(ep.recv(&mut buf, Timeout::NoWait).unwrap(), (2, 30));
    assert_eq!(drv.stats().rx_malformed, 1);
    assert_eq!(v0.avail_idx(), 6, "both buffers posted again");
}

/// A resource table with one rpmsg vdev whose vrings the driver places.
/// Returns the table bytes, its length and the offset of its vdev entry.
fn table(num: u32, align: u32) -> ([u8; 256], usize, usize) {
    let repr = RscTableRepr {
        vdev: Some(VdevRepr {
            id: 7,
            notifyid: 9,
            dfeatures: 1,
            config_len: 0,
            vrings: [
                VringInfo {
                    da: FW_RSC_ADDR_ANY,
                    align,
                    num,
                    notifyid: 0,
                },
                VringInfo {
                    da: FW_RSC_ADDR_ANY,
                    align,
                    num,
                    notifyid: 1,
                },
            ],
        }),
        carveouts: &[],
        trace: None,
    };
    let mut buf = [0u8; 256];
    let n = repr.emit(&mut buf).unwrap();
    let vdev = ResourceTable::new_checked(&buf[..n])
        .unwrap()
        .find_vdev(7)
        .unwrap()
        .unwrap();
    (buf, n, vdev.offset)
}

/// Linux (status written 0x01, 0x03, 0x07; descriptors from a LIFO free list; desc.len exactly
/// 16 + payload) and an OpenAMP host (status 0x04 only, never kicks vring 0) against our device.
fn device_against_rsc_driver(linux: bool) {
    const NUM: u16 = 4;
    let (tbl, tlen, vdev_off) = table(u32::from(NUM), 16);
    let mut mem = TestMemory::new(0x4000);
    let r = mem.region();
    r.copy_in(0, &tbl[..tlen]).unwrap();
    let status = vdev_off + vdev_field::STATUS;
    let layout = VringLayout::new(NUM, 16).unwrap();
    let (b0, b1, pool) = (0x400, 0x800, 0x1000);
    let dev: Link<_, _, 4> = Link::new(
        r,
        Loopback::new(r),
        TestEnv::new(),
        Config::rsc_table(Role::Device, RscConfig::new(0, tlen)),
    )
    .unwrap();
    let named = dev
        .create_endpoint(
            EndpointConfig::new()
                .name("rpmsg-raw")
                .unwrap()
                .announce(true)
                .queue(4),
        )
        .unwrap();
    dev.start().unwrap();
    if linux {
        r.write_u8(status, 0x01).unwrap();
        dev.poll().unwrap();
        r.write_u8(status, 0x03).unwrap();
        dev.poll().unwrap();
        assert!(!dev.is_up(), "0x03 has no DRIVER_OK");
    }
    r.write_u32(vdev_off + vdev_field::GFEATURES, 1).unwrap();
    r.write_u32(vdev_off + vdev_field::vring(0), b0).unwrap();
    r.write_u32(vdev_off + vdev_field::vring(1), b1).unwrap();
    let (v0, v1) = (
        RawRing {
            r,
            base: b0 as usize,
            l: layout,
        },
        RawRing {
            r,
            base: b1 as usize,
            l: layout,
        },
    );
    for j in 0..NUM {
        v0.desc(j, (pool + 512 * u32::from(j)).into(), 512, 2);
        v0.publish(j);
    }
    r.write_u8(status, if linux { 0x07 } else { 0x04 }).unwrap();
    // No vring 0 kick at all (the OpenAMP host never sends one): the status bit is enough.
    dev.poll().unwrap();
    assert!(dev.is_up());
    assert!(dev.name_service());

    // Our announcement came out on vring 0.
    assert_eq!(v0.used_idx(), 1);
    let (id, _) = v0.used_elem(0);
    let off = (pool + 512 * id) as usize;
    let h = header(&r, off);
    assert_eq!((h.dst, h.len), (53, 40));
    let mut ns = [0u8; 40];
    r.copy_out(off + 16, &mut ns).unwrap();
    let ns = NsRepr::parse(&ns).unwrap();
    assert_eq!(
        (ns.name.as_str(), ns.addr, u32::from(ns.flags)),
        (Some("rpmsg-raw"), named.addr(), 0)
    );

    // Driver -> device with the descriptor <-> buffer mapping changing every time (LIFO).
    let tx_pool = 0x2000u32;
    for k in 0..10u32 {
        let desc_id = (3 - (k % 4)) as u16;
        let buf = tx_pool + 512 * (k % 3);
        let payload = [k as u8; 7];
        write_msg(&r, buf as usize, 0x400, named.addr(), &payload, 0);
        v1.desc(desc_id, buf.into(), 16 + 7, 0);
        v1.publish(desc_id);
        dev.poll().unwrap();
        let mut got = [0u8; 16];
        assert_eq!(named.recv(&mut got, Timeout::NoWait).unwrap(), (7, 0x400));
        assert_eq!(&got[..7], &payload);
        assert_eq!(
            v1.used_elem(k as u16),
            (u32::from(desc_id), 23),
            "used.len = desc.len"
        );
    }
    // The endpoint learned the host's address from its first message (OpenAMP's rule).
    assert_eq!(named.dst().unwrap(), Some(0x400));

    // The driver resets the device: we forget the session and wait for the next.
    r.write_u8(status, 0).unwrap();
    dev.poll().unwrap();
    assert!(!dev.is_up());
    assert_eq!(named.try_send(b"x"), Err(Error::LinkDown));
    let mut none = [0u8; 4];
    assert_eq!(
        named.recv(&mut none, Timeout::Forever),
        Err(Error::LinkDown),
        "waiters do not sleep on"
    );
    // A new session on freshly zeroed rings: up again and announced again.
    r.fill(b0 as usize, layout.size, 0).unwrap();
    r.fill(b1 as usize, layout.size, 0).unwrap();
    for j in 0..NUM {
        v0.desc(j, (pool + 512 * u32::from(j)).into(), 512, 2);
        v0.publish(j);
    }
    r.write_u8(status, 0x07).unwrap();
    dev.poll().unwrap();
    assert!(dev.is_up());
    assert_eq!(v0.used_idx(), 1, "announced again in the new session");
    assert_eq!(dev.stats().sessions, 2);
    assert_eq!(dev.stats().peer_violations, 0);
}

#[test]
fn device_against_linux_driver() {
    device_against_rsc_driver(true);
}

#[test]
fn device_against_openamp_host() {
    device_against_rsc_driver(false);
}

#[test]
fn driver_writes_status_cumulatively_and_places_vrings() {
    let (tbl, tlen, v) = table(4, 16);
    let mut mem = TestMemory::new(0x4000);
    let r = mem.region();
    r.copy_in(0, &tbl[..tlen]).unwrap();
    let mut rsc = RscConfig::new(0, tlen);
    rsc.vring_offsets = [Some(0x400), Some(0x800)];
    rsc.pool_offset = 0x1000;
    let drv: Link<_, _, 4> = Link::new(
        r,
        Loopback::with_base(r, 0x9000_0000),
        TestEnv::new(),
        Config::rsc_table(Role::Driver, rsc),
    )
    .unwrap();
    drv.start().unwrap();
    assert_eq!(r.read_u8(v + vdev_field::STATUS).unwrap(), 0x07);
    assert_eq!(r.read_u32(v + vdev_field::GFEATURES).unwrap(), 1);
    assert_eq!(
        r.read_u32(v + vdev_field::vring(0)).unwrap(),
        0x9000_0400,
        "peer addresses"
    );
    assert_eq!(r.read_u32(v + vdev_field::vring(1)).unwrap(), 0x9000_0800);
    assert_eq!(
        r.read_u64(0x400).unwrap(),
        0x9000_1000,
        "first rx buffer, translated"
    );
    assert_eq!(drv.notify_ids(), [0, 1]);
    drv.shutdown().unwrap();
    assert_eq!(
        r.read_u8(v + vdev_field::STATUS).unwrap(),
        0,
        "shutdown resets the device"
    );
    assert_eq!(drv.shutdown(), Err(Error::LinkDown));
    assert!(matches!(
        drv.create_endpoint(EndpointConfig::new()),
        Err(Error::LinkDown)
    ));
}

/// A table in a section of its own, as `resource_table!` lays it out: 8-aligned atomics.
#[repr(C, align(8))]
struct TableSection([AtomicU8; 256]);

static TABLE_SECTION: TableSection = TableSection([const { AtomicU8::new(0) }; 256]);

#[test]
fn resource_table_in_its_own_section() {
    // The firmware's table is a static of its own, not part of the shared region; the driver
    // (Linux) writes status, features and vring addresses there.
    let (tbl, tlen, v) = table(4, 16);
    let tregion = SharedRegion::from_atomics(&TABLE_SECTION.0).unwrap();
    tregion.copy_in(0, &tbl[..tlen]).unwrap();
    let mut mem = TestMemory::new(0x4000);
    let r = mem.region();
    let mut rsc = RscConfig::new(0, tlen);
    rsc.vring_offsets = [Some(0x400), Some(0x800)];
    rsc.pool_offset = 0x1000;
    let drv: Link<_, _, 4> = Link::new_with_table(
        r,
        tregion,
        Loopback::new(r),
        TestEnv::new(),
        Config::rsc_table(Role::Driver, rsc),
    )
    .unwrap();
    let dev: Link<_, _, 4> = Link::new_with_table(
        r,
        tregion,
        Loopback::new(r),
        TestEnv::new(),
        Config::rsc_table(Role::Device, RscConfig::new(0, tlen)),
    )
    .unwrap();
    dev.start().unwrap();
    assert!(!dev.is_up());
    drv.start().unwrap();
    assert_eq!(tregion.read_u8(v + vdev_field::STATUS).unwrap(), 0x07);
    assert_eq!(tregion.read_u32(v + vdev_field::vring(0)).unwrap(), 0x400);
    dev.wait_link_up(Timeout::Forever).unwrap();
    let a = drv
        .create_endpoint(EndpointConfig::new().addr(0x400))
        .unwrap();
    let b = dev.create_endpoint(EndpointConfig::new().addr(30)).unwrap();
    a.send_to(30, b"table elsewhere").unwrap();
    let mut buf = [0u8; 32];
    assert_eq!(b.recv(&mut buf, Timeout::Forever).unwrap(), (15, 0x400));
    // The shared region's first bytes hold no table.
    assert_eq!(r.read_u32(0).unwrap(), 0);
    // A misaligned slice is refused.
    assert!(SharedRegion::from_atomics(&TABLE_SECTION.0[1..]).is_err());
}

/// Item 1 of issue 13: RPMsg-Lite's master initialises slowly and our device polls between
/// every group of its writes (`rpmsg_lite_master_init`'s order), with the final kick delivered
/// or lost. Afterwards every `rpmsg_lite_send` of the master must find a buffer: before the fix
/// the device took vring 1's `used.idx` (0) while the master was still posting vring 0, wrote
/// 1 over the master's 2 on its first return, and the master's second send failed with
/// `RL_ERR_NO_MEM` (-5001).
fn slow_rpmsg_lite_master_against_link(deliver_kick: bool) {
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let r = mem.region();
    let mut master = LiteMaster::new(r, lite);
    let dev: Link<_, _, 2> = Link::new(
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
    loop {
        let step = master.step();
        if step == MasterStep::Kick && deliver_kick {
            dev.handle_notify(master.kick_id()).unwrap();
        } else {
            dev.poll().unwrap();
        }
        if step == MasterStep::Done {
            break;
        }
    }
    assert!(dev.is_up());
    for k in 0..8u8 {
        assert_eq!(master.send(1024, 30, &[k; 5]), Ok(()), "send {k}");
        dev.poll().unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(ep.recv(&mut buf, Timeout::NoWait).unwrap(), (5, 1024));
        assert_eq!(buf[..5], [k; 5]);
        ep.send_to(1024, &[k]).unwrap();
        assert_eq!(master.recv(), Some((30, 1024, vec![k])));
    }
    assert_eq!(dev.stats().peer_violations, 0);
}

#[test]
fn item1_slow_rpmsg_lite_master_link_with_kick() {
    slow_rpmsg_lite_master_against_link(true);
}

#[test]
fn item1_slow_rpmsg_lite_master_link_kick_lost() {
    slow_rpmsg_lite_master_against_link(false);
}

fn slow_rpmsg_lite_master_against_compact(deliver_kick: bool) {
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let r = mem.region();
    let mut master = LiteMaster::new(r, lite);
    let got = std::sync::Mutex::new(Vec::new());
    let handler = |msg: Message<'_>| {
        let mut b = [0u8; 16];
        let n = msg.copy_to(&mut b).unwrap();
        got.lock().unwrap().push(b[..n].to_vec());
    };
    let mut state = State::new();
    let mut remote: Remote<'_, _> = Remote::new(r, Loopback::new(r), lite, &mut state).unwrap();
    let addr = remote.create_endpoint(30, &handler).unwrap();
    loop {
        let step = master.step();
        if step == MasterStep::Kick && deliver_kick {
            remote.handle_notify(master.kick_id()).unwrap();
        } else {
            remote.poll().unwrap();
        }
        if step == MasterStep::Done {
            break;
        }
    }
    assert!(remote.is_up());
    for k in 0..8u8 {
        assert_eq!(master.send(1024, addr, &[k; 3]), Ok(()), "send {k}");
        remote.poll().unwrap();
        assert_eq!(got.lock().unwrap().pop(), Some(vec![k; 3]));
        remote.try_send(addr, 1024, &[k]).unwrap();
        assert_eq!(master.recv(), Some((addr, 1024, vec![k])));
    }
    assert_eq!(remote.stats().peer_violations, 0);
}

#[test]
fn item1_slow_rpmsg_lite_master_compact_with_kick() {
    slow_rpmsg_lite_master_against_compact(true);
}

#[test]
fn item1_slow_rpmsg_lite_master_compact_kick_lost() {
    slow_rpmsg_lite_master_against_compact(false);
}

/// A device on a resource table placed in a fresh region by `driver`, which posts `num`
/// receive buffers on vring 0 and sets `DRIVER_OK`. Returns the rings (vring 0 at 0x400,
/// vring 1 at 0x800, receive pool at 0x1000, transmit pool at 0x2000).
fn rsc_session<'r>(
    r: SharedRegion<'r>,
    table: &[u8],
    vdev: usize,
    num: u16,
    linux: bool,
) -> (RawRing<'r>, RawRing<'r>) {
    r.copy_in(0, table).unwrap();
    let driver = RscDriver {
        table: r,
        vdev,
        linux,
    };
    driver.begin();
    let l = VringLayout::new(num, 16).unwrap();
    driver.place(1, [0x400, 0x800]);
    let (v0, v1) = (RawRing { r, base: 0x400, l }, RawRing { r, base: 0x800, l });
    for j in 0..num {
        v0.desc(j, 0x1000 + 512 * u64::from(j), 512, 2);
        v0.publish(j);
    }
    driver.driver_ok();
    (v0, v1)
}

/// Item 6 of issue 13: an OpenAMP driver keeps `VRING_AVAIL_F_NO_INTERRUPT` set on vring 1 and
/// needs no interrupt for the buffers we return there. Before: one doorbell per message
/// (100 for 100); after, with a resource table, none, each counted as suppressed.
#[test]
fn item6_rsc_device_honours_no_interrupt_by_default() {
    let (table, offsets) = RawTable::new(1).vdev(0, 4, 16, [0, 1]).build();
    let mut mem = TestMemory::new(0x4000);
    let r = mem.region();
    let cfg = Config::rsc_table(Role::Device, RscConfig::new(0, table.len()));
    assert!(cfg.honour_no_interrupt, "the resource-table default");
    let dev: Link<_, _, 4> = Link::new(r, Loopback::new(r), TestEnv::new(), cfg).unwrap();
    let ep = dev
        .create_endpoint(EndpointConfig::new().addr(30).queue(4))
        .unwrap();
    r.copy_in(0, &table).unwrap();
    dev.start().unwrap();
    let (_v0, v1) = rsc_session(r, &table, offsets[0], 4, false);
    v1.avail_flags(1);
    dev.poll().unwrap();
    assert!(dev.is_up());
    let before = dev.stats();
    for k in 0..100u32 {
        let id = (k % 4) as u16;
        let buf = 0x2000 + 512 * (k % 4);
        write_msg(&r, buf as usize, 0x400, 30, &k.to_le_bytes(), 0);
        v1.desc(id, buf.into(), 20, 0);
        v1.publish(id);
        dev.poll().unwrap();
        let mut got = [0u8; 4];
        assert_eq!(ep.recv(&mut got, Timeout::NoWait).unwrap(), (4, 0x400));
    }
    assert_eq!(v1.used_idx(), 100);
    let s = dev.stats();
    assert_eq!(dev.platform().notifies()[1], 0, "no vring 1 doorbell");
    assert_eq!(s.doorbells, before.doorbells, "doorbells per message: 0");
    assert_eq!(s.doorbells_suppressed - before.doorbells_suppressed, 100);

    // The driver clears the flag (it waits for a buffer): the next return rings.
    v1.avail_flags(0);
    write_msg(&r, 0x2000, 0x400, 30, b"x", 0);
    v1.desc(0, 0x2000, 17, 0);
    v1.publish(0);
    dev.poll().unwrap();
    let mut got = [0u8; 4];
    assert_eq!(ep.recv(&mut got, Timeout::NoWait).unwrap(), (1, 0x400));
    assert_eq!(dev.platform().notifies()[1], 1);
    assert_eq!(dev.stats().doorbells, before.doorbells + 1);
}

/// Item 6, the other half: an RPMsg-Lite master sets the flag permanently and still needs every
/// interrupt; on the Lite layout we ring once per message, and say so in the counters.
#[test]
fn item6_lite_device_rings_once_per_message_despite_the_flag() {
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let r = mem.region();
    let cfg = Config::lite(Role::Device, lite);
    assert!(!cfg.honour_no_interrupt, "the Lite default");
    let dev: Link<_, _, 2> = Link::new(r, Loopback::new(r), TestEnv::new(), cfg).unwrap();
    let ep = dev
        .create_endpoint(EndpointConfig::new().addr(30).queue(2))
        .unwrap();
    dev.start().unwrap();
    let mut master = LiteMaster::new(r, lite);
    master.init();
    dev.handle_notify(master.kick_id()).unwrap();
    let before = (dev.stats().doorbells, dev.platform().notifies()[1]);
    for k in 0..100u32 {
        master.send(1024, 30, &k.to_le_bytes()).unwrap();
        dev.poll().unwrap();
        let mut got = [0u8; 4];
        assert_eq!(ep.recv(&mut got, Timeout::NoWait).unwrap(), (4, 1024));
    }
    assert_eq!(dev.platform().notifies()[1] - before.1, 100);
    assert_eq!(
        dev.stats().doorbells - before.0,
        100,
        "doorbells per message: 1"
    );
    assert_eq!(dev.stats().doorbells_suppressed, 0);
}

/// Item 5 of issue 13: an i.MX RPMsg-Lite master (fixed `VRING_SIZE` 0x8000, `VRING_ALIGN`
/// 0x1000) against a device configured with the computed slot: before, the device came up,
/// its messages reached the master (vring 0 is at 0 for both) and the master's never arrived;
/// now link-up is refused, counted, and the error says which settings differ.
#[test]
fn item5_lite_vring_size_mismatch_is_refused_at_link_up() {
    let imx = LiteConfig::new(16, 496, 0x1000).with_vring_size(0x8000);
    let computed = LiteConfig::new(16, 496, 0x1000);
    assert_ne!(imx.offsets().2, computed.offsets().2);
    let mut mem = TestMemory::new(imx.region_len());
    let r = mem.region();
    let mut master = LiteMaster::new(r, imx);
    master.init();
    let dev: Link<_, _, 16> = Link::new(
        r,
        Loopback::new(r),
        TestEnv::new(),
        Config::lite(Role::Device, computed),
    )
    .unwrap();
    let e = dev.start().unwrap_err();
    assert!(!dev.is_up());
    assert_eq!(dev.stats().peer_violations, 1);
    let text = e.to_string();
    assert!(
        text.contains(
            "buffer the driver posted is at offset 0x10000 but our layout puts buffers from"
        ),
        "{text}"
    );
    assert!(
        text.contains("--vring-size") && text.contains("--align"),
        "{text}"
    );
    // The same settings on both sides: up, and a message each way.
    let mut mem = TestMemory::new(imx.region_len());
    let r = mem.region();
    let mut master = LiteMaster::new(r, imx);
    master.init();
    let dev: Link<_, _, 16> = Link::new(
        r,
        Loopback::new(r),
        TestEnv::new(),
        Config::lite(Role::Device, imx),
    )
    .unwrap();
    dev.start().unwrap();
    assert!(dev.is_up());
    let ep = dev.create_endpoint(EndpointConfig::new().addr(30)).unwrap();
    master.send(1024, 30, b"imx").unwrap();
    dev.poll().unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(ep.recv(&mut buf, Timeout::NoWait).unwrap(), (3, 1024));
}

/// Points every descriptor of `ring` (`count` of them) at `off`, inside the region but past the
/// buffer area a [`LiteConfig`] gives: what a driver of another geometry posts.
fn move_descriptors(ring: &RawRing<'_>, count: u16, off: usize, size: u32, flags: u16) {
    for j in 0..count {
        ring.desc(j, off as u64, size, flags);
    }
}

/// Item 5 of issue 13, after link-up: a buffer the driver posts outside our layout's buffer
/// area (its first one was in place, so link-up passed) is refused and counted as a geometry
/// mismatch, in both directions. Before: taken and used, wherever it lay in the region.
#[test]
fn item5_lite_buffer_outside_the_buffer_area_is_a_counted_violation() {
    let lite = LiteConfig::new(2, 496, 0x10);
    let mut mem = TestMemory::new(lite.region_len() + 0x1000);
    let r = mem.region();
    let outside = lite.region_len();
    let mut master = LiteMaster::new(r, lite);
    master.init();
    let dev: Link<_, _, 2> = Link::new(
        r,
        Loopback::new(r),
        TestEnv::new(),
        Config::lite(Role::Device, lite),
    )
    .unwrap();
    dev.start().unwrap();
    assert!(dev.is_up());
    let ep = dev.create_endpoint(EndpointConfig::new().addr(30)).unwrap();
    // Receive: the master's transmit buffers now lie past the buffer area.
    move_descriptors(&master.v1, 2, outside, lite.buffer_size, 0);
    master.send(1024, 30, b"elsewhere").unwrap();
    dev.poll().unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(ep.recv(&mut buf, Timeout::NoWait), Err(Error::NoBuffer));
    let s = dev.stats();
    assert_eq!((s.peer_violations, s.rx_malformed), (1, 1));
    assert!(
        matches!(s.last_violation, Some(rpmsg::Violation::GeometryMismatch { found, .. }) if found as usize == outside),
        "{:?}",
        s.last_violation
    );
    // Send: the master's receive buffers too.
    move_descriptors(&master.v0, 2, outside, lite.buffer_size, 2);
    assert!(ep.try_send_to(1024, b"x").is_err());
    let s = dev.stats();
    assert_eq!(s.peer_violations, 3, "both receive buffers refused");
    assert!(matches!(
        s.last_violation,
        Some(rpmsg::Violation::GeometryMismatch { .. })
    ));
    assert_eq!(master.recv(), None);
}

/// The same for `compact::Remote`, which counts such a buffer as `BadAddress` (a second
/// violation kind there cost flash; `Link` names the geometry).
#[test]
fn item5_lite_buffer_outside_the_buffer_area_compact() {
    let lite = LiteConfig::new(2, 496, 0x10);
    let mut mem = TestMemory::new(lite.region_len() + 0x1000);
    let r = mem.region();
    let outside = lite.region_len();
    let mut master = LiteMaster::new(r, lite);
    master.init();
    let got = std::sync::Mutex::new(0u32);
    let handler = |_msg: Message<'_>| *got.lock().unwrap() += 1;
    let mut state = State::new();
    let mut remote: Remote<'_, _> = Remote::new(r, Loopback::new(r), lite, &mut state).unwrap();
    let addr = remote.create_endpoint(30, &handler).unwrap();
    remote.handle_notify(master.kick_id()).unwrap();
    assert!(remote.is_up());
    move_descriptors(&master.v1, 2, outside, lite.buffer_size, 0);
    master.send(1024, addr, b"elsewhere").unwrap();
    remote.poll().unwrap();
    assert_eq!(*got.lock().unwrap(), 0);
    let s = remote.stats();
    assert_eq!((s.peer_violations, s.rx_malformed), (1, 1));
    assert!(matches!(
        s.last_violation,
        Some(rpmsg::Violation::BadAddress { addr, .. }) if addr as usize == outside
    ));
    move_descriptors(&master.v0, 2, outside, lite.buffer_size, 2);
    assert!(remote.try_send(addr, 1024, b"x").is_err());
    assert_eq!(remote.stats().peer_violations, 3);
    assert_eq!(master.recv(), None);
}
