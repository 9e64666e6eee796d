//! Unit tests of the resource-table views (`wire::rsc`): parsing, bounds and the
//! shapes real peers write.

#![expect(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test code on known buffers"
)]

use super::*;
use proptest::prelude::*;

/// A table as a typical OpenAMP or Linux firmware declares it: one rpmsg vdev whose vrings
/// the host places, one carveout, one trace buffer.
#[rustfmt::skip]
const GOLDEN: [u8; 200] = [
    // header
    1, 0, 0, 0,                 // ver 1
    3, 0, 0, 0,                 // num 3
    0, 0, 0, 0, 0, 0, 0, 0,     // reserved[2]
    28, 0, 0, 0,                // offset[0]: vdev
    96, 0, 0, 0,                // offset[1]: carveout
    152, 0, 0, 0,               // offset[2]: trace
    // vdev @ 28
    3, 0, 0, 0,                 // type RSC_VDEV
    7, 0, 0, 0,                 // id VIRTIO_ID_RPMSG
    0, 0, 0, 0,                 // notifyid 0
    1, 0, 0, 0,                 // dfeatures: name service
    0, 0, 0, 0,                 // gfeatures
    0, 0, 0, 0,                 // config_len
    0,                          // status
    2,                          // num_of_vrings
    0, 0,                       // reserved[2]
    // vring0 @ 56
    0xff, 0xff, 0xff, 0xff,     // da FW_RSC_ADDR_ANY
    0x00, 0x10, 0, 0,           // align 0x1000
    0x00, 0x01, 0, 0,           // num 256
    1, 0, 0, 0,                 // notifyid 1
    0, 0, 0, 0,                 // pa / reserved
    // vring1 @ 76
    0xff, 0xff, 0xff, 0xff,     // da FW_RSC_ADDR_ANY
    0x00, 0x10, 0, 0,           // align 0x1000
    0x00, 0x01, 0, 0,           // num 256
    2, 0, 0, 0,                 // notifyid 2
    0, 0, 0, 0,                 // pa / reserved
    // carveout @ 96
    0, 0, 0, 0,                 // type RSC_CARVEOUT
    0x00, 0x00, 0xd0, 0x3e,     // da 0x3ed0_0000
    0x00, 0x00, 0xd0, 0x3e,     // pa 0x3ed0_0000
    0x00, 0x00, 0x04, 0x00,     // len 0x4_0000
    0, 0, 0, 0,                 // flags
    0, 0, 0, 0,                 // reserved
    b't', b'e', b'x', b't', 0, 0, 0, 0, // name "text"
    0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    // trace @ 152
    2, 0, 0, 0,                 // type RSC_TRACE
    0x00, 0x00, 0xd4, 0x3e,     // da 0x3ed4_0000
    0x00, 0x80, 0x00, 0x00,     // len 0x8000
    0, 0, 0, 0,                 // reserved
    b't', b'r', b'a', b'c', b'e', b'0', 0, 0, // name "trace0"
    0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
];

const fn vring(notifyid: u32) -> VringInfo {
    VringInfo {
        da: FW_RSC_ADDR_ANY,
        align: 0x1000,
        num: 256,
        notifyid,
    }
}

const VDEV: VdevRepr = VdevRepr {
    id: VIRTIO_ID_RPMSG,
    notifyid: 0,
    dfeatures: 1,
    config_len: 0,
    vrings: [vring(1), vring(2)],
};

const CARVEOUT: CarveoutRepr = CarveoutRepr {
    da: 0x3ed0_0000,
    pa: 0x3ed0_0000,
    len: 0x4_0000,
    flags: 0,
    name: match name_field("text") {
        Ok(n) => n,
        Err(_) => panic!(),
    },
};

const TRACE: TraceRepr = TraceRepr {
    da: 0x3ed4_0000,
    len: 0x8000,
    name: match name_field("trace0") {
        Ok(n) => n,
        Err(_) => panic!(),
    },
};

const REPR: RscTableRepr<'static> = RscTableRepr {
    vdev: Some(VDEV),
    carveouts: &[CARVEOUT],
    trace: Some(TRACE),
};

/// Built at compile time, as a firmware's `static` would be.
const EMITTED: [u8; REPR.buffer_len()] = {
    let mut b = [0; REPR.buffer_len()];
    match REPR.emit(&mut b) {
        Ok(_) => b,
        Err(_) => panic!(),
    }
};

fn golden_with(edit: impl FnOnce(&mut [u8; 200])) -> [u8; 200] {
    let mut b = GOLDEN;
    edit(&mut b);
    b
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn emits_golden_table() {
    assert_eq!(REPR.buffer_len(), GOLDEN.len());
    assert_eq!(REPR.num_entries(), 3);
    assert_eq!(EMITTED, GOLDEN);
    let mut buf = [0xa5; 256];
    assert_eq!(REPR.emit(&mut buf), Ok(200));
    assert_eq!(buf[..200], GOLDEN);
    assert!(buf[200..].iter().all(|&b| b == 0xa5));
}

#[test]
fn parses_golden_table() {
    let t = ResourceTable::new_checked(&GOLDEN[..]).unwrap();
    assert_eq!((t.version(), t.num_entries()), (1, 3));
    assert_eq!(t.entry_offset(0), Ok(28));
    assert_eq!(t.entry_offset(1), Ok(96));
    assert_eq!(t.entry_offset(2), Ok(152));
    assert_eq!(t.entry_type(0), Ok(RSC_VDEV));
    assert_eq!(t.entry_type(1), Ok(RSC_CARVEOUT));
    assert_eq!(t.entry_type(2), Ok(RSC_TRACE));
    let vdev = VdevInfo {
        offset: 28,
        id: 7,
        notifyid: 0,
        dfeatures: 1,
        gfeatures: 0,
        config_len: 0,
        status: 0,
        num_of_vrings: 2,
        vrings: [
            VringInfo {
                da: 0xffff_ffff,
                align: 0x1000,
                num: 256,
                notifyid: 1,
            },
            VringInfo {
                da: 0xffff_ffff,
                align: 0x1000,
                num: 256,
                notifyid: 2,
            },
        ],
    };
    assert_eq!(t.vdev(0), Ok(vdev));
    assert_eq!(t.find_vdev(VIRTIO_ID_RPMSG), Ok(Some(vdev)));
    assert_eq!(t.find_vdev(1), Ok(None));
    assert_eq!(vdev.check_rpmsg(), Ok(()));
    let c = t.carveout(1).unwrap();
    assert_eq!(
        (c.da, c.pa, c.len, c.flags),
        (0x3ed0_0000, 0x3ed0_0000, 0x4_0000, 0)
    );
    assert_eq!(&c.name[..5], b"text\0");
    assert_eq!(c, CARVEOUT);
    let tr = t.trace(2).unwrap();
    assert_eq!((tr.da, tr.len), (0x3ed4_0000, 0x8000));
    assert_eq!(&tr.name[..7], b"trace0\0");
    assert_eq!(t.into_inner(), &GOLDEN[..]);
}

#[test]
fn field_offsets_match_golden() {
    let vdev = 28;
    assert_eq!(GOLDEN[vdev + vdev_field::NUM_OF_VRINGS], 2);
    assert_eq!(GOLDEN[vdev + vdev_field::DFEATURES], 1);
    let notify1 = vdev + vdev_field::vring(1) + vdev_field::VRING_NOTIFYID;
    assert_eq!(GOLDEN[notify1], 2);
    assert_eq!(
        GOLDEN[vdev + vdev_field::vring(0) + vdev_field::VRING_ALIGN + 1],
        0x10
    );
}

#[test]
fn reads_what_the_driver_wrote() {
    let b = golden_with(|b| {
        put32(b, 28 + vdev_field::GFEATURES, 1);
        b[28 + vdev_field::STATUS] = 0x07;
        put32(
            b,
            28 + vdev_field::vring(1) + vdev_field::VRING_DA,
            0x9000_8000,
        );
    });
    let v = ResourceTable::new_checked(&b[..]).unwrap().vdev(0).unwrap();
    assert_eq!(
        (v.gfeatures, v.status, v.vrings[1].da),
        (1, 0x07, 0x9000_8000)
    );
}

#[test]
fn rejects_bad_header() {
    let check = |b: &[u8]| ResourceTable::new_checked(b).map(|_| ());
    assert_eq!(
        check(&GOLDEN[..15]),
        Err(Error::Truncated { need: 16, have: 15 })
    );
    assert_eq!(
        check(&golden_with(|b| b[0] = 2)),
        Err(Error::BadValue {
            field: "ver",
            value: 2
        })
    );
    assert_eq!(
        check(&golden_with(|b| b[12] = 1)),
        Err(Error::BadValue {
            field: "reserved",
            value: 1 << 32
        })
    );
    assert_eq!(
        check(&golden_with(|b| put32(b, 4, u32::MAX))),
        Err(Error::OutOfBounds {
            field: "num",
            value: u32::MAX.into(),
            limit: 46
        })
    );
    // Three slots need 28 bytes.
    assert_eq!(
        check(&GOLDEN[..27]),
        Err(Error::OutOfBounds {
            field: "num",
            value: 3,
            limit: 2
        })
    );
    assert_eq!(
        check(&golden_with(|b| put32(b, 24, 197))),
        Err(Error::OutOfBounds {
            field: "entry offset",
            value: 201,
            limit: 200
        })
    );
    assert_eq!(
        check(&golden_with(|b| put32(b, 20, u32::MAX))),
        Err(Error::OutOfBounds {
            field: "entry offset",
            value: u64::from(u32::MAX) + 4,
            limit: 200
        })
    );
}

#[test]
fn rejects_bad_vdev() {
    let vdev = |b: &[u8]| ResourceTable::new_checked(b).and_then(|t| t.vdev(0));
    // Only the vdev and the first vring fit.
    let mut short = GOLDEN;
    put32(&mut short, 4, 1);
    assert_eq!(
        vdev(&short[..90]),
        Err(Error::OutOfBounds {
            field: "vring",
            value: 96,
            limit: 90
        })
    );
    assert_eq!(
        vdev(&golden_with(|b| b[28 + vdev_field::NUM_OF_VRINGS] = 3)),
        Err(Error::BadValue {
            field: "num_of_vrings",
            value: 3
        })
    );
    assert_eq!(
        vdev(&golden_with(|b| b[28 + vdev_field::RESERVED + 1] = 1)),
        Err(Error::BadValue {
            field: "vdev reserved",
            value: 0x100
        })
    );
    assert_eq!(
        vdev(&golden_with(|b| put32(b, 28 + vdev_field::CONFIG_LEN, 105))),
        Err(Error::OutOfBounds {
            field: "config_len",
            value: 201,
            limit: 200
        })
    );
    assert!(vdev(&golden_with(|b| put32(b, 28 + vdev_field::CONFIG_LEN, 104))).is_ok());
    let t = ResourceTable::new_checked(&GOLDEN[..]).unwrap();
    assert_eq!(
        t.vdev(1),
        Err(Error::BadValue {
            field: "type",
            value: 0
        })
    );
    assert_eq!(
        t.vdev(3),
        Err(Error::OutOfBounds {
            field: "entry index",
            value: 3,
            limit: 3
        })
    );
    assert_eq!(
        t.carveout(0),
        Err(Error::BadValue {
            field: "type",
            value: 3
        })
    );
    assert_eq!(
        t.trace(1),
        Err(Error::BadValue {
            field: "type",
            value: 0
        })
    );
    // A broken vdev fails the search, as it fails the table in Linux.
    let broken = golden_with(|b| b[28 + vdev_field::NUM_OF_VRINGS] = 3);
    let t = ResourceTable::new_checked(&broken[..]).unwrap();
    assert!(t.find_vdev(VIRTIO_ID_RPMSG).is_err());
}

#[test]
fn rejects_nonzero_reserved_in_carveout_and_trace() {
    let t = golden_with(|b| b[96 + 20] = 1);
    let t = ResourceTable::new_checked(&t[..]).unwrap();
    assert_eq!(
        t.carveout(1),
        Err(Error::BadValue {
            field: "carveout reserved",
            value: 1
        })
    );
    let t = golden_with(|b| b[152 + 12] = 1);
    let t = ResourceTable::new_checked(&t[..]).unwrap();
    assert_eq!(
        t.trace(2),
        Err(Error::BadValue {
            field: "trace reserved",
            value: 1
        })
    );
}

#[test]
fn check_rpmsg_rejects_unusable_vdevs() {
    let t = ResourceTable::new_checked(&GOLDEN[..]).unwrap();
    let good = t.vdev(0).unwrap();
    let with_vring1 = |edit: fn(&mut VringInfo)| {
        let mut v = good;
        edit(&mut v.vrings[1]);
        v.check_rpmsg()
    };
    let bad = |field, value| Err(Error::BadValue { field, value });
    assert_eq!(with_vring1(|v| v.num = 0), bad("vring num", 0));
    assert_eq!(with_vring1(|v| v.num = 3), bad("vring num", 3));
    assert_eq!(with_vring1(|v| v.num = 65536), bad("vring num", 65536));
    assert_eq!(with_vring1(|v| v.num = 32768), Ok(()));
    assert_eq!(with_vring1(|v| v.align = 8), bad("vring align", 8));
    assert_eq!(
        with_vring1(|v| v.align = 0x1001),
        bad("vring align", 0x1001)
    );
    assert_eq!(with_vring1(|v| v.align = 16), Ok(()));
    assert_eq!(VdevInfo { id: 1, ..good }.check_rpmsg(), bad("id", 1));
    assert_eq!(
        VdevInfo {
            num_of_vrings: 1,
            ..good
        }
        .check_rpmsg(),
        bad("num_of_vrings", 1)
    );
}

#[test]
fn emit_refuses_short_buffer_and_pads_config() {
    assert_eq!(
        REPR.emit(&mut [0; 199]),
        Err(Error::Truncated {
            need: 200,
            have: 199
        })
    );
    let repr = RscTableRepr {
        vdev: Some(VdevRepr {
            config_len: 5,
            ..VDEV
        }),
        carveouts: &[],
        trace: Some(TRACE),
    };
    assert_eq!(repr.buffer_len(), 16 + 8 + 68 + 8 + 48);
    let mut buf = [0xa5; 148];
    assert_eq!(repr.emit(&mut buf), Ok(148));
    assert_eq!(buf[92..100], [0; 8]);
    let t = ResourceTable::new_checked(&buf[..]).unwrap();
    assert_eq!(t.entry_offset(1), Ok(100));
    assert_eq!(t.vdev(0).unwrap().config_len, 5);
    assert_eq!(t.trace(1), Ok(TRACE));
    let empty = RscTableRepr {
        vdev: None,
        carveouts: &[],
        trace: None,
    };
    let mut buf = [0xa5; 16];
    assert_eq!(empty.emit(&mut buf), Ok(16));
    assert_eq!(
        ResourceTable::new_checked(&buf[..]).unwrap().num_entries(),
        0
    );
}

#[test]
fn name_field_limits_names_to_31_bytes() {
    let name = name_field("vdev0buffer").unwrap();
    assert_eq!(&name[..12], b"vdev0buffer\0");
    assert!(name[12..].iter().all(|&b| b == 0));
    let x32 = core::str::from_utf8(&[b'x'; 32]).unwrap();
    assert!(name_field(&x32[..31]).is_ok());
    assert_eq!(name_field(x32), Err(Error::NameTooLong { len: 32 }));
}

fn exercise(t: &ResourceTable<&[u8]>) {
    for i in 0..t.num_entries().min(200) {
        let _ = t.entry_type(i);
        let _ = t.vdev(i).map(|v| v.check_rpmsg());
        let _ = t.carveout(i);
        let _ = t.trace(i);
    }
    let _ = t.vdev(u32::MAX);
    let _ = t.find_vdev(VIRTIO_ID_RPMSG);
}

fn vring_strategy() -> impl Strategy<Value = VringInfo> {
    (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
        |(da, align, num, notifyid)| VringInfo {
            da,
            align,
            num,
            notifyid,
        },
    )
}

fn vdev_strategy() -> impl Strategy<Value = VdevRepr> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        0..64u32,
        vring_strategy(),
        vring_strategy(),
    )
        .prop_map(|(id, notifyid, dfeatures, config_len, v0, v1)| VdevRepr {
            id,
            notifyid,
            dfeatures,
            config_len,
            vrings: [v0, v1],
        })
}

fn carveout_strategy() -> impl Strategy<Value = CarveoutRepr> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<[u8; 32]>(),
    )
        .prop_map(|(da, pa, len, flags, name)| CarveoutRepr {
            da,
            pa,
            len,
            flags,
            name,
        })
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(t) = ResourceTable::new_checked(&bytes[..]) {
            exercise(&t);
        }
        // Entry getters stay panic-free even on an unchecked view.
        let unchecked = ResourceTable::new_unchecked(&bytes[..]);
        for i in 0..4 {
            let _ = unchecked.vdev(i);
            let _ = unchecked.carveout(i);
            let _ = unchecked.trace(i);
        }
        let _ = unchecked.find_vdev(VIRTIO_ID_RPMSG);
        // Also with a valid-looking header, to get past `ver` and `reserved`.
        let mut bytes = bytes;
        if bytes.len() >= 16 {
            bytes[..4].copy_from_slice(&1u32.to_le_bytes());
            bytes[8..16].fill(0);
            bytes[4] %= 8;
            bytes[5..8].fill(0);
            if let Ok(t) = ResourceTable::new_checked(&bytes[..]) {
                exercise(&t);
            }
        }
    }

    #[test]
    fn parse_never_panics_on_mutated_golden(
        edits in prop::collection::vec((0..200usize, any::<u8>()), 1..8),
        cut in 0..=200usize,
    ) {
        let mut b = GOLDEN;
        for (at, v) in edits {
            b[at] = v;
        }
        if let Ok(t) = ResourceTable::new_checked(&b[..cut]) {
            exercise(&t);
        }
    }

    #[test]
    fn emit_parse_round_trips(
        vdev in prop::option::of(vdev_strategy()),
        carveouts in prop::array::uniform3(carveout_strategy()),
        n_carveouts in 0..=3usize,
        trace in prop::option::of((any::<u32>(), any::<u32>(), any::<[u8; 32]>())),
    ) {
        let trace = trace.map(|(da, len, name)| TraceRepr { da, len, name });
        let repr = RscTableRepr { vdev, carveouts: &carveouts[..n_carveouts], trace };
        let mut buf = [0xa5; 512];
        let len = repr.emit(&mut buf).unwrap();
        prop_assert_eq!(len, repr.buffer_len());
        prop_assert_eq!(len % 4, 0);
        let t = ResourceTable::new_checked(&buf[..len]).unwrap();
        prop_assert_eq!(t.num_entries() as usize, repr.num_entries());
        let mut i = 0;
        if let Some(v) = vdev {
            let info = t.vdev(0).unwrap();
            prop_assert_eq!(info.offset, 16 + 4 * repr.num_entries());
            prop_assert_eq!(
                (info.id, info.notifyid, info.dfeatures, info.config_len),
                (v.id, v.notifyid, v.dfeatures, v.config_len)
            );
            prop_assert_eq!((info.gfeatures, info.status, info.num_of_vrings), (0, 0, 2));
            prop_assert_eq!(info.vrings, v.vrings);
            prop_assert_eq!(t.find_vdev(v.id).unwrap(), Some(info));
            i += 1;
        }
        for c in &carveouts[..n_carveouts] {
            prop_assert_eq!(t.entry_offset(i).unwrap() % 4, 0);
            prop_assert_eq!(&t.carveout(i).unwrap(), c);
            i += 1;
        }
        if let Some(tr) = trace {
            prop_assert_eq!(t.trace(i).unwrap(), tr);
        }
    }
}
