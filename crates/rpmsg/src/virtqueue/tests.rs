//! Unit tests of both queue sides against each other and against hand-written hostile rings.

use super::*;
use crate::testing::TestMemory;
use crate::wire::vring::VringLayout;

fn ring(r: &SharedRegion<'_>, num: u16) -> Vring {
    Vring::new(r, 0, VringLayout::new(num, 16).unwrap()).unwrap()
}

#[test]
fn publish_pop_return_reclaim_past_wraparound() {
    let mut mem = TestMemory::new(4096);
    let r = mem.region();
    let v = ring(&r, 4);
    let mut drv = DriverQueue::<4>::new(v).unwrap();
    let mut dev = DeviceQueue::<4>::new(v).unwrap();
    dev.attach(&r).unwrap();
    for round in 0u32..70_000 {
        let id = (round % 4) as u16;
        v.write_desc(&r, id, 0x100 + u64::from(id) * 16, 16, 0)
            .unwrap();
        drv.publish(&r, id).unwrap();
        let p = dev.pop_avail(&r).unwrap().unwrap();
        assert_eq!((p.id, p.addr, p.len), (id, 0x100 + u64::from(id) * 16, 16));
        assert_eq!(dev.pop_avail(&r).unwrap(), None);
        dev.push_used(&r, p.id, round).unwrap();
        assert_eq!(drv.pop_used(&r).unwrap(), Some((id, round)));
        assert_eq!(drv.pop_used(&r).unwrap(), None);
    }
    assert_eq!(drv.outstanding(), 0);
    assert_eq!(dev.held(), 0);
}

#[test]
fn rejects_avail_index_running_ahead() {
    let mut mem = TestMemory::new(4096);
    let r = mem.region();
    let v = ring(&r, 4);
    let mut dev = DeviceQueue::<4>::new(v).unwrap();
    dev.attach(&r).unwrap();
    r.write_u16(v.base + v.layout.avail + 2, 5).unwrap();
    assert!(matches!(
        dev.pop_avail(&r),
        Err(Violation::IndexJump {
            idx: 5,
            shadow: 0,
            num: 4
        })
    ));
}

#[test]
fn rejects_head_out_of_range_and_republished_head() {
    let mut mem = TestMemory::new(4096);
    let r = mem.region();
    let v = ring(&r, 4);
    let mut dev = DeviceQueue::<4>::new(v).unwrap();
    dev.attach(&r).unwrap();
    let avail = v.base + v.layout.avail;
    r.write_u16(avail + 4, 9).unwrap();
    r.write_u16(avail + 6, 1).unwrap();
    r.write_u16(avail + 8, 1).unwrap();
    r.write_u16(avail + 2, 3).unwrap();
    assert_eq!(
        dev.pop_avail(&r),
        Err(Violation::IdOutOfRange { id: 9, num: 4 })
    );
    assert_eq!(dev.pop_avail(&r).unwrap().map(|p| p.id), Some(1));
    assert_eq!(dev.pop_avail(&r), Err(Violation::AlreadyHeld { id: 1 }));
    assert_eq!(dev.pop_avail(&r), Ok(None));
}

#[test]
fn rejects_used_id_not_outstanding_or_out_of_range() {
    let mut mem = TestMemory::new(4096);
    let r = mem.region();
    let v = ring(&r, 4);
    let mut drv = DriverQueue::<4>::new(v).unwrap();
    drv.publish(&r, 2).unwrap();
    let used = v.base + v.layout.used;
    r.write_u32(used + 4, 3).unwrap();
    r.write_u32(used + 12, 0x1_0000).unwrap();
    r.write_u32(used + 20, 2).unwrap();
    r.write_u16(used + 2, 3).unwrap();
    assert_eq!(drv.pop_used(&r), Err(Violation::NotOutstanding { id: 3 }));
    assert_eq!(
        drv.pop_used(&r),
        Err(Violation::IdOutOfRange {
            id: 0x1_0000,
            num: 4
        })
    );
    assert_eq!(drv.pop_used(&r).unwrap().map(|(id, _)| id), Some(2));
    // Returned twice: the second copy is refused.
    r.write_u32(used + 28, 2).unwrap();
    r.write_u16(used + 2, 4).unwrap();
    assert_eq!(drv.pop_used(&r), Err(Violation::NotOutstanding { id: 2 }));
}

#[test]
fn device_attach_continues_prefilled_used_index() {
    // An RPMsg-Lite master leaves vring 1's used.idx at N.
    let mut mem = TestMemory::new(4096);
    let r = mem.region();
    let v = ring(&r, 2);
    r.write_u16(v.base + v.layout.used + 2, 2).unwrap();
    let mut dev = DeviceQueue::<2>::new(v).unwrap();
    dev.attach(&r).unwrap();
    r.write_u16(v.base + v.layout.avail + 4, 1).unwrap();
    r.write_u16(v.base + v.layout.avail + 2, 1).unwrap();
    let p = dev.pop_avail(&r).unwrap().unwrap();
    dev.push_used(&r, p.id, 512).unwrap();
    assert_eq!(v.used_idx(&r).unwrap(), 3);
    // Slot 2 & 1 == 0 holds the element.
    assert_eq!(r.read_u32(v.base + v.layout.used + 4).unwrap(), 1);
}

#[test]
fn notification_flags() {
    let mut mem = TestMemory::new(4096);
    let r = mem.region();
    let v = ring(&r, 4);
    let drv = DriverQueue::<4>::new(v).unwrap();
    let dev = DeviceQueue::<4>::new(v).unwrap();
    assert!(drv.needs_notify(&r).unwrap());
    dev.set_no_notify(&r, true).unwrap();
    assert!(!drv.needs_notify(&r).unwrap());
    assert!(dev.needs_notify(&r).unwrap());
    drv.set_no_interrupt(&r, true).unwrap();
    assert!(!dev.needs_notify(&r).unwrap());
}

#[test]
fn refuses_ring_larger_than_capacity_or_region() {
    let mut mem = TestMemory::new(4096);
    let r = mem.region();
    assert!(DriverQueue::<2>::new(ring(&r, 4)).is_err());
    assert!(Vring::new(&r, 0, VringLayout::new(256, 4096).unwrap()).is_err());
    assert!(Vring::new(&r, 8, VringLayout::new(2, 16).unwrap()).is_err());
}

#[test]
fn item1_device_takes_used_index_at_first_pop_not_at_attach() {
    // A device that attaches while the master is still setting up (used.idx still 0), then the
    // master pre-fills the used ring (used.idx = 2) and publishes its first buffer.
    let mut mem = TestMemory::new(4096);
    let r = mem.region();
    let v = ring(&r, 2);
    let mut dev = DeviceQueue::<2>::new(v).unwrap();
    dev.attach(&r).unwrap();
    r.write_u16(v.base + v.layout.used + 2, 2).unwrap();
    r.write_u16(v.base + v.layout.avail + 4, 0).unwrap();
    r.write_u16(v.base + v.layout.avail + 2, 1).unwrap();
    let p = dev.pop_avail(&r).unwrap().unwrap();
    dev.push_used(&r, p.id, 512).unwrap();
    assert_eq!(
        v.used_idx(&r).unwrap(),
        3,
        "continues after the pre-filled 2"
    );
}

/// `pop_used_all` takes a whole batch with one index read, in ring order and past the 16-bit
/// wrap; a bad element in the middle ends the batch (consumed and reported, as `pop_used`
/// does) and the next call takes the rest; an index jump consumes nothing.
#[test]
fn pop_used_all_takes_a_batch_and_stops_at_a_bad_element() {
    let mut mem = TestMemory::new(4096);
    let r = mem.region();
    let v = ring(&r, 4);
    let mut drv = DriverQueue::<4>::new(v).unwrap();
    let mut dev = DeviceQueue::<4>::new(v).unwrap();
    dev.attach(&r).unwrap();
    // 80,000 buffers pass the 16-bit index wrap; Miri (in .ci/run) runs a few rounds only.
    let rounds = if cfg!(miri) { 8 } else { 20_000 };
    for round in 0u32..rounds {
        for id in 0..4u16 {
            v.write_desc(&r, id, 0x100 + u64::from(id) * 16, 16, 0)
                .unwrap();
            drv.publish(&r, id).unwrap();
        }
        for k in 0..4u16 {
            let p = dev.pop_avail(&r).unwrap().unwrap();
            dev.push_used(&r, p.id, round + u32::from(k)).unwrap();
        }
        let mut got = Vec::new();
        assert_eq!(drv.pop_used_all(&r, |id, len| got.push((id, len))), Ok(4));
        let want: Vec<_> = (0..4u16).map(|k| (k, round + u32::from(k))).collect();
        assert_eq!(got, want, "round {round}");
        assert_eq!(
            drv.pop_used_all(&r, |_, _| panic!("nothing is left")),
            Ok(0)
        );
    }
    assert_eq!(drv.outstanding(), 0);

    // Three returned, the second one not outstanding (the device returned id 0 twice).
    for id in 0..3u16 {
        drv.publish(&r, id).unwrap();
    }
    for _ in 0..3 {
        dev.pop_avail(&r).unwrap().unwrap();
    }
    dev.push_used(&r, 0, 1).unwrap();
    let used = v.base + v.layout.used;
    let idx = r.read_u16(used + 2).unwrap();
    // Forge a second element for id 0, then the genuine one for id 2.
    let slot = |i: u16| used + 4 + 8 * usize::from(i & 3);
    r.write_u32(slot(idx), 0).unwrap();
    r.write_u32(slot(idx) + 4, 7).unwrap();
    r.write_u32(slot(idx.wrapping_add(1)), 2).unwrap();
    r.write_u32(slot(idx.wrapping_add(1)) + 4, 3).unwrap();
    r.write_u16(used + 2, idx.wrapping_add(2)).unwrap();
    let mut got = Vec::new();
    assert_eq!(
        drv.pop_used_all(&r, |id, len| got.push((id, len))),
        Err(Violation::NotOutstanding { id: 0 })
    );
    assert_eq!(
        got,
        [(0, 1)],
        "the good element before the bad one was taken"
    );
    got.clear();
    assert_eq!(drv.pop_used_all(&r, |id, len| got.push((id, len))), Ok(1));
    assert_eq!(got, [(2, 3)], "the next call takes the rest");

    // An index that ran ahead by more than the ring holds consumes nothing.
    let idx = r.read_u16(used + 2).unwrap();
    r.write_u16(used + 2, idx.wrapping_add(5)).unwrap();
    assert!(matches!(
        drv.pop_used_all(&r, |_, _| panic!("nothing may be taken")),
        Err(Violation::IndexJump { num: 4, .. })
    ));
    r.write_u16(used + 2, idx).unwrap();
    assert_eq!(
        drv.pop_used_all(&r, |_, _| panic!("nothing is left")),
        Ok(0)
    );
}
