//! The parsers of what the other core writes: the name-service message, the rpmsg header, the
//! resource table (every entry getter) and `RscConfig::read_vdev` over a guarded region.
//!
//! Invariants: no panic; parsing what `to_bytes` wrote gives the same value back (a 32-byte
//! name comes back as its first 31 bytes, as documented); a vdev that
//! `read_vdev` accepts lies inside the table area, carries rpmsg and overlaps nothing; the
//! region's guard bytes never change.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rpmsg::RscConfig;
use rpmsg::wire::ns::NsRepr;
use rpmsg::wire::rpmsg::RpmsgRepr;
use rpmsg::wire::rsc::{ResourceTable, VIRTIO_ID_RPMSG, vdev_field};
use rpmsg_fuzz::guard::Guarded;

fuzz_target!(|data: &[u8]| {
    // Name service: 40 bytes or refused; what parses survives a round trip.
    if let Ok(ns) = NsRepr::parse(data) {
        assert_eq!(data.len(), 40, "only 40-byte name-service messages parse");
        let again = NsRepr::parse(&ns.to_bytes()).expect("our own bytes parse");
        assert_eq!(
            (again.addr, again.flags),
            (ns.addr, ns.flags),
            "name-service round trip"
        );
        // A 32-byte name (RPMsg-Lite sends no NUL then) goes back out as its first 31 bytes.
        let n = ns.name.len().min(31);
        assert_eq!(
            again.name.as_bytes(),
            &ns.name.as_bytes()[..n],
            "name round trip"
        );
        let _ = ns.name.as_str();
    }
    // The rpmsg header.
    if let Ok(h) = RpmsgRepr::parse(data) {
        assert_eq!(RpmsgRepr::from_bytes(&h.to_bytes()), h, "header round trip");
    }
    // The resource table and each entry's getters.
    if let Ok(t) = ResourceTable::new_checked(data) {
        for i in 0..t.num_entries() {
            let at = t.entry_offset(i).expect("checked by new_checked");
            assert!(
                at + 4 <= data.len(),
                "entry {i}'s type word at {at} is outside"
            );
            let _ = t.entry_type(i);
            if let Ok(v) = t.vdev(i) {
                let end = v.offset
                    + vdev_field::vring(usize::from(v.num_of_vrings))
                    + v.config_len as usize;
                assert!(end <= data.len(), "vdev {v:?} runs past the table ({end})");
            }
            let _ = t.carveout(i);
            let _ = t.trace(i);
        }
        let _ = t.find_vdev(VIRTIO_ID_RPMSG);
    }
    // `read_vdev` over a region holding the bytes at offset 64.
    let len = data.len().min(RscConfig::MAX_TABLE_LEN);
    Guarded::reuse(64 + len + 64, |mem| {
        let (region, guards) = mem.split();
        region.copy_in(64, &data[..len]).expect("inside");
        let cfg = RscConfig::new(64, len);
        if let Ok(v) = cfg.read_vdev(&region) {
            v.check_rpmsg().expect("read_vdev returns only rpmsg vdevs");
            let end = v.offset + vdev_field::vring(2) + v.config_len as usize;
            assert!(end <= len, "accepted vdev runs past the table area");
            assert!(cfg.vdev_field(&v, vdev_field::STATUS) < 64 + len);
        }
        guards.check();
    });
});
