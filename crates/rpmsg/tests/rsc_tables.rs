//! Item 4 of issue 13: resource tables of any shape Linux remoteproc accepts, in both roles,
//! and malformed tables refused with an error that names the peer's table.

use proptest::prelude::*;
use rpmsg::testing::peers::{
    RawRing, RawTable, RscDriver, ZYNQMP_R5_TABLE_LEN, ZYNQMP_R5_VDEV_OFFSET,
    openamp_zynqmp_r5_table, write_msg,
};
use rpmsg::testing::{Loopback, TestEnv, TestMemory};
use rpmsg::wire::vring::VringLayout;
use rpmsg::{
    Config, EndpointConfig, Error, Link, Role, RscConfig, SharedRegion, Timeout, Violation,
};

/// Our device against a hand-played driver (Linux or an OpenAMP host) on `table`, whose rpmsg
/// vdev is at `vdev` with rings of `num` entries aligned to `align`: up, a message each way.
fn device_on_table(table: &[u8], vdev: usize, num: u16, align: usize, linux: bool) {
    let l = VringLayout::new(num, align).unwrap();
    let (b0, b1) = (0x1000usize, 0x1000 + l.size.next_multiple_of(align));
    let pool = (b1 + l.size).next_multiple_of(64);
    let mut mem = TestMemory::new(pool + 8 * 512);
    let r = mem.region();
    r.copy_in(0, table).unwrap();
    let dev: Link<_, _, 256> = Link::new(
        r,
        Loopback::new(r),
        TestEnv::new(),
        Config::rsc_table(Role::Device, RscConfig::new(0, RscConfig::MAX_TABLE_LEN)),
    )
    .unwrap();
    let ep = dev
        .create_endpoint(EndpointConfig::new().addr(30).queue(2))
        .unwrap();
    dev.start().unwrap();
    let drv = RscDriver {
        table: r,
        vdev,
        linux,
    };
    drv.begin();
    drv.place(1, [b0 as u32, b1 as u32]);
    let (v0, v1) = (RawRing { r, base: b0, l }, RawRing { r, base: b1, l });
    for j in 0..4u16 {
        v0.desc(j, (pool + 512 * usize::from(j)) as u64, 512, 2);
        v0.publish(j);
    }
    drv.driver_ok();
    dev.poll().unwrap();
    assert!(dev.is_up());
    ep.send_to(0x400, b"up").unwrap();
    assert_eq!(v0.used_idx(), 1);
    write_msg(&r, pool + 4 * 512, 0x400, 30, b"down", 0);
    v1.desc(0, (pool + 4 * 512) as u64, 20, 0);
    v1.publish(0);
    dev.poll().unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(ep.recv(&mut buf, Timeout::NoWait).unwrap(), (4, 0x400));
    assert_eq!(v1.used_idx(), 1);
    assert_eq!(dev.stats().peer_violations, 0);
}

#[test]
fn item4_device_on_openamp_zynqmp_r5_116_byte_table() {
    let t = openamp_zynqmp_r5_table();
    assert_eq!(t.len(), ZYNQMP_R5_TABLE_LEN);
    device_on_table(&t, ZYNQMP_R5_VDEV_OFFSET, 256, 0x1000, false);
    device_on_table(&t, ZYNQMP_R5_VDEV_OFFSET, 256, 0x1000, true);
}

#[test]
fn item4_driver_and_device_on_openamp_zynqmp_r5_table() {
    let t = openamp_zynqmp_r5_table();
    let mut mem = TestMemory::new(0x48000);
    let r = mem.region();
    r.copy_in(0, &t).unwrap();
    let mut rsc = RscConfig::new(0, t.len());
    rsc.vring_offsets = [Some(0x1000), Some(0x4000)];
    rsc.pool_offset = 0x8000;
    let drv: Link<_, _, 256> = Link::new(
        r,
        Loopback::new(r),
        TestEnv::new(),
        Config::rsc_table(Role::Driver, rsc),
    )
    .unwrap();
    let dev: Link<_, _, 256> = Link::new(
        r,
        Loopback::new(r),
        TestEnv::new(),
        Config::rsc_table(Role::Device, RscConfig::new(0, RscConfig::MAX_TABLE_LEN)),
    )
    .unwrap();
    dev.start().unwrap();
    drv.start().unwrap();
    assert_eq!(drv.notify_ids(), [1, 2], "the table's notify ids");
    dev.wait_link_up(Timeout::Forever).unwrap();
    let a = drv
        .create_endpoint(EndpointConfig::new().addr(0x400))
        .unwrap();
    let b = dev.create_endpoint(EndpointConfig::new().addr(30)).unwrap();
    a.send_to(30, b"zynqmp").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(b.recv(&mut buf, Timeout::Forever).unwrap(), (6, 0x400));
}

#[test]
fn item4_device_on_tables_with_entries_before_and_after_the_vdev() {
    let shapes = [
        RawTable::new(4)
            .carveout(0x3ed0_0000, 0x4_0000)
            .trace(0x3ed4_0000, 0x1000)
            .vdev(0, 4, 16, [0, 1]),
        RawTable::new(5)
            .vdev(0, 4, 16, [0, 1])
            .devmem(0xff34_0000, 0x1000)
            .vendor(128, 12)
            .trace(0x3ed4_0000, 0x1000),
        RawTable::new(16)
            .vendor(300, 0)
            .devmem(0xff34_0000, 0x1000)
            .vdev(0, 4, 16, [0, 1])
            .carveout(0x3ed0_0000, 0x4_0000),
    ];
    for shape in shapes {
        let (t, offsets) = shape.build();
        let vdev = offsets.iter().copied().find(|&o| t[o] == 3).unwrap();
        device_on_table(&t, vdev, 4, 16, true);
    }
}

/// The error a device reports for `table`.
fn device_error(table: &[u8]) -> Error {
    let mut mem = TestMemory::new(0x2000);
    let r = mem.region();
    r.copy_in(0, table).unwrap();
    let dev: Link<_, _, 4> = Link::new(
        r,
        Loopback::new(r),
        TestEnv::new(),
        Config::rsc_table(Role::Device, RscConfig::new(0, RscConfig::MAX_TABLE_LEN)),
    )
    .unwrap();
    dev.start().unwrap_err()
}

fn put32(t: &mut [u8], at: usize, v: u32) {
    t[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn item4_malformed_tables_name_the_peers_table() {
    let (good, offsets) = RawTable::new(2)
        .carveout(0x1000, 0x1000)
        .vdev(0, 4, 16, [0, 1])
        .build();
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    // Out of range: an offset beyond the 1 KiB area.
    let mut t = good.clone();
    put32(&mut t, 20, 0x3FE);
    cases.push((t, "outside the table area"));
    // Overlapping the offset array.
    let mut t = good.clone();
    put32(&mut t, 16, 20);
    cases.push((t, "overlaps the header or offset array"));
    // A carveout overlapping the vdev.
    let mut t = good.clone();
    put32(&mut t, 16, (offsets[1] - 8) as u32);
    t[offsets[1] - 8..offsets[1] - 4].copy_from_slice(&0u32.to_le_bytes());
    cases.push((t, "overlaps the rpmsg vdev"));
    // Truncated: config space running past the area.
    let mut t = good.clone();
    put32(&mut t, offsets[1] + 20, 0x1000);
    cases.push((t, "config space runs past"));
    // num larger than the area's offset array can hold.
    let mut t = good.clone();
    put32(&mut t, 4, 1000);
    cases.push((t, "offset array does not fit"));
    // No rpmsg vdev.
    let (t, _) = RawTable::new(1).carveout(0x1000, 0x1000).build();
    cases.push((t, "no rpmsg vdev"));
    for (t, want) in cases {
        let e = device_error(&t);
        assert!(
            matches!(e, Error::PeerViolation(Violation::MalformedTable { .. })),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("the peer's resource table is malformed"),
            "{text}"
        );
        assert!(text.contains(want), "{text} should say {want}");
        assert!(!text.contains("invalid configuration"), "{text}");
    }
}

proptest! {
    /// Random tables (a valid one mutated, or bytes) never make the device panic: every
    /// outcome is up, waiting or a typed error.
    #[test]
    fn item4_random_tables_never_panic(
        edits in prop::collection::vec((0usize..160, any::<u8>()), 0..12),
        raw in prop::collection::vec(any::<u8>(), 0..200),
        use_raw in any::<bool>(),
    ) {
        let t = if use_raw {
            raw
        } else {
            let (mut t, _) = RawTable::new(3)
                .trace(0x1000, 0x100)
                .vdev(0, 4, 16, [0, 1])
                .vendor(200, 8)
                .build();
            for (at, b) in edits {
                if let Some(x) = t.get_mut(at) {
                    *x = b;
                }
            }
            t
        };
        let mut mem = TestMemory::new(0x2000);
        let r: SharedRegion<'_> = mem.region();
        r.copy_in(0, &t).unwrap();
        let dev: Link<_, _, 4> = Link::new(
            r,
            Loopback::new(r),
            TestEnv::new(),
            Config::rsc_table(Role::Device, RscConfig::new(0, RscConfig::MAX_TABLE_LEN)),
        )
        .unwrap();
        let _ = dev.start();
        for _ in 0..3 {
            let _ = dev.poll();
        }
    }
}
