//! A hostile peer: whatever the other core writes into shared memory, our side never panics,
//! never hangs, never touches memory outside the region, answers every call with a result or
//! an error, and counts what it drops.
//!
//! The property tests run our link (in either role) against an honest link of the other role on
//! the same region while the test scribbles over every field the peer can write (and then over
//! anything at all) between operations. The region is a window in a larger allocation whose
//! guard bytes must survive. The deterministic tests play the peer by hand, one fault class at a
//! time.

mod common;

use common::{Geometry, GuardedMemory, Kind};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError};
use rpmsg::testing::TestLink;
use rpmsg::virtqueue::Vring;
use rpmsg::wire::rpmsg::RpmsgRepr;
use rpmsg::wire::rsc::vdev_field;
use rpmsg::wire::vring::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, avail, used,
};
use rpmsg::{
    Config, Endpoint, EndpointConfig, Error, HeldRx, LinkStats, LiteConfig, Role, RxBuffer,
    SharedRegion, Timeout, Violation,
};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a wait that must succeed may take before the test calls it hung: minutes, so a
/// loaded machine never fails it (item 14); only a broken run waits this long.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// Ring entries in every geometry here: small, so indices wrap and buffers run out often.
const NUM: u16 = 8;
/// The links' capacity: above `NUM`, so a table the peer enlarges up to 16 is still taken.
const CAP: usize = 16;
const GUARD: usize = 4096;

type L<'r> = TestLink<'r, CAP>;

fn geometry(rsc: bool, translated: bool) -> Geometry {
    let base = if translated { 0x8000_0000 } else { 0 };
    if rsc {
        Geometry::rsc(NUM, 16, !translated, base)
    } else {
        Geometry::lite(LiteConfig::new(NUM, 496, 16)).with_base(base)
    }
}

/// A configuration whose every wait is short: a hostile peer must not make a test slow.
fn quick(geo: &Geometry, role: Role) -> Config {
    let mut c = geo.config(role);
    c.poll_interval = Duration::from_micros(20);
    c.send_timeout = Duration::from_millis(2);
    c
}

/// Whether an error is one a hostile peer may legitimately cause.
fn allowed(e: &Error) -> bool {
    matches!(
        e,
        Error::NoBuffer
            | Error::NotReady
            | Error::LinkDown
            | Error::PeerViolation(_)
            | Error::EndpointDestroyed
            | Error::AddressInUse(_)
            | Error::TooManyEndpoints { .. }
            | Error::BufferTooSmall { .. }
            | Error::PayloadTooLarge { .. }
    )
}

// ---------------------------------------------------------------------------------------------
// The property tests.

/// A peer address the hostile side writes into a descriptor.
#[derive(Debug, Clone)]
enum Addr {
    Raw(u64),
    /// `base + offset` with the offset a fraction of the region.
    Inside(u16),
    /// Straddling the end of the region.
    NearEnd(u8),
    Zero,
    Max,
}

#[derive(Debug, Clone)]
enum Corruption {
    /// `used.idx` moved by `delta` from what it is.
    UsedIdx {
        ring: usize,
        delta: i16,
    },
    UsedFlags {
        ring: usize,
        value: u16,
    },
    UsedElem {
        ring: usize,
        slot: u16,
        len: bool,
        value: u32,
    },
    /// `avail.idx` moved by `delta` from what it is.
    AvailIdx {
        ring: usize,
        delta: i16,
    },
    AvailFlags {
        ring: usize,
        value: u16,
    },
    AvailSlot {
        ring: usize,
        slot: u16,
        value: u16,
    },
    DescAddr {
        ring: usize,
        index: u16,
        addr: Addr,
    },
    DescLen {
        ring: usize,
        index: u16,
        value: u32,
    },
    DescFlags {
        ring: usize,
        index: u16,
        value: u16,
    },
    /// A field of a message header in buffer `id` of direction `dir` (0: vring 0's buffers).
    Header {
        dir: usize,
        id: u16,
        field: usize,
        value: u32,
    },
    /// A field of the resource table's vdev entry (resource-table layout only).
    Vdev {
        field: usize,
        value: u32,
    },
    /// Arbitrary bytes at a fraction of the region.
    Wild {
        at: u16,
        bytes: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Poll,
    TrySend { ep: usize, len: usize },
    AllocSend { ep: usize, len: usize },
    Recv { ep: usize },
    RecvZeroCopy { ep: usize, keep: bool },
    Create { addr: Option<u32>, callback: bool },
    Destroy { ep: usize },
    Release,
    PeerPoll,
    PeerSend { ep: usize, len: usize },
    Corrupt(Corruption),
}

fn addr_strategy() -> impl Strategy<Value = Addr> {
    prop_oneof![
        any::<u64>().prop_map(Addr::Raw),
        any::<u16>().prop_map(Addr::Inside),
        any::<u8>().prop_map(Addr::NearEnd),
        Just(Addr::Zero),
        Just(Addr::Max),
    ]
}

fn len_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        0u32..600,
        Just(512),
        Just(u32::MAX),
        Just(0x10000),
    ]
}

/// What the hostile device writes when our side is the driver: its used rings, the headers of
/// the buffers it fills, and (going wild) anything else.
fn device_corruption() -> impl Strategy<Value = Corruption> {
    let ring = 0usize..2;
    let slot = 0u16..NUM + 2;
    prop_oneof![
        3 => (ring.clone(), -3i16..=3).prop_map(|(ring, delta)| Corruption::UsedIdx { ring, delta }),
        1 => (ring.clone(), any::<i16>()).prop_map(|(ring, delta)| Corruption::UsedIdx { ring, delta }),
        1 => (ring.clone(), any::<u16>()).prop_map(|(ring, value)| Corruption::UsedFlags { ring, value }),
        4 => (ring.clone(), slot.clone(), any::<bool>(), prop_oneof![0u32..12, len_strategy()])
            .prop_map(|(ring, slot, len, value)| Corruption::UsedElem { ring, slot, len, value }),
        4 => header_strategy(),
        1 => (ring.clone(), -4i16..=4).prop_map(|(ring, delta)| Corruption::AvailIdx { ring, delta }),
        1 => (ring.clone(), slot.clone(), 0u16..12).prop_map(|(ring, slot, value)| Corruption::AvailSlot { ring, slot, value }),
        1 => (ring.clone(), slot.clone(), addr_strategy()).prop_map(|(ring, index, addr)| Corruption::DescAddr { ring, index, addr }),
        1 => (ring, slot, len_strategy()).prop_map(|(ring, index, value)| Corruption::DescLen { ring, index, value }),
        2 => wild_strategy(),
    ]
}

/// What the hostile driver writes when our side is the device: avail rings, descriptors, the
/// headers of the messages it sends, the resource table, and (going wild) anything else.
fn driver_corruption() -> impl Strategy<Value = Corruption> {
    let ring = 0usize..2;
    let slot = 0u16..NUM + 2;
    prop_oneof![
        3 => (ring.clone(), -3i16..=3).prop_map(|(ring, delta)| Corruption::AvailIdx { ring, delta }),
        1 => (ring.clone(), any::<i16>()).prop_map(|(ring, delta)| Corruption::AvailIdx { ring, delta }),
        1 => (ring.clone(), any::<u16>()).prop_map(|(ring, value)| Corruption::AvailFlags { ring, value }),
        3 => (ring.clone(), slot.clone(), prop_oneof![0u16..12, any::<u16>()])
            .prop_map(|(ring, slot, value)| Corruption::AvailSlot { ring, slot, value }),
        3 => (ring.clone(), slot.clone(), addr_strategy()).prop_map(|(ring, index, addr)| Corruption::DescAddr { ring, index, addr }),
        3 => (ring.clone(), slot.clone(), len_strategy()).prop_map(|(ring, index, value)| Corruption::DescLen { ring, index, value }),
        2 => (ring.clone(), slot.clone(), prop_oneof![0u16..8, any::<u16>()])
            .prop_map(|(ring, index, value)| Corruption::DescFlags { ring, index, value }),
        4 => header_strategy(),
        3 => (vdev_field_strategy(), prop_oneof![0u32..16, Just(64), any::<u32>(), Just(0xFFFF_FFFF)])
            .prop_map(|(field, value)| Corruption::Vdev { field, value }),
        2 => prop_oneof![Just(0u32), Just(7), any::<u32>()]
            .prop_map(|value| Corruption::Vdev { field: vdev_field::STATUS, value }),
        1 => (ring, -4i16..=4).prop_map(|(ring, delta)| Corruption::UsedIdx { ring, delta }),
        2 => wild_strategy(),
    ]
}

/// A field of the vdev entry the driver could write: status, features, or a vring's
/// address, alignment, size or notify id.
fn vdev_field_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(vdev_field::STATUS),
        Just(vdev_field::GFEATURES),
        Just(vdev_field::DFEATURES),
        (0usize..2, 0usize..4).prop_map(|(k, f)| vdev_field::vring(k) + 4 * f),
    ]
}

fn header_strategy() -> impl Strategy<Value = Corruption> {
    (
        0usize..2,
        0u16..NUM,
        prop_oneof![Just(0usize), Just(4), Just(8), Just(12), Just(14)],
        prop_oneof![0u32..600, Just(53), Just(0x100), any::<u32>()],
    )
        .prop_map(|(dir, id, field, value)| Corruption::Header {
            dir,
            id,
            field,
            value,
        })
}

fn wild_strategy() -> impl Strategy<Value = Corruption> {
    (any::<u16>(), proptest::collection::vec(any::<u8>(), 1..24))
        .prop_map(|(at, bytes)| Corruption::Wild { at, bytes })
}

fn ops(corruption: BoxedStrategy<Corruption>) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => Just(Op::Poll),
        3 => (0usize..4, 0usize..600).prop_map(|(ep, len)| Op::TrySend { ep, len }),
        2 => (0usize..4, 0usize..600).prop_map(|(ep, len)| Op::AllocSend { ep, len }),
        3 => (0usize..4).prop_map(|ep| Op::Recv { ep }),
        2 => (0usize..4, any::<bool>()).prop_map(|(ep, keep)| Op::RecvZeroCopy { ep, keep }),
        1 => (prop_oneof![Just(None), Just(Some(0x100)), Just(Some(0x300))], any::<bool>())
            .prop_map(|(addr, callback)| Op::Create { addr, callback }),
        1 => (0usize..6).prop_map(|ep| Op::Destroy { ep }),
        1 => Just(Op::Release),
        4 => Just(Op::PeerPoll),
        5 => (0usize..4, 0usize..497).prop_map(|(ep, len)| Op::PeerSend { ep, len }),
        8 => corruption.prop_map(Op::Corrupt),
    ];
    proptest::collection::vec(op, 1..60)
}

/// The hostile side's hand on the region.
struct Scribbler<'r> {
    region: SharedRegion<'r>,
    geo: Geometry,
    rings: [Vring; 2],
}

impl Scribbler<'_> {
    fn apply(&self, c: &Corruption) {
        let r = &self.region;
        let ring = |k: usize| self.rings[k];
        // Writes may be refused (out of the region): that is the region's job, not ours.
        let _ = match *c {
            Corruption::UsedIdx { ring: k, delta } => {
                let at = ring(k).base + ring(k).layout.used + used::IDX;
                let v = r.read_u16(at).unwrap_or(0);
                r.write_u16(at, v.wrapping_add_signed(delta))
            }
            Corruption::UsedFlags { ring: k, value } => {
                r.write_u16(ring(k).base + ring(k).layout.used + used::FLAGS, value)
            }
            Corruption::UsedElem {
                ring: k,
                slot,
                len,
                value,
            } => {
                let f = if len { used::len(slot) } else { used::id(slot) };
                r.write_u32(ring(k).base + ring(k).layout.used + f, value)
            }
            Corruption::AvailIdx { ring: k, delta } => {
                let at = ring(k).base + ring(k).layout.avail + avail::IDX;
                let v = r.read_u16(at).unwrap_or(0);
                r.write_u16(at, v.wrapping_add_signed(delta))
            }
            Corruption::AvailFlags { ring: k, value } => {
                r.write_u16(ring(k).base + ring(k).layout.avail + avail::FLAGS, value)
            }
            Corruption::AvailSlot {
                ring: k,
                slot,
                value,
            } => r.write_u16(
                ring(k).base + ring(k).layout.avail + avail::ring(slot),
                value,
            ),
            Corruption::DescAddr {
                ring: k,
                index,
                ref addr,
            } => {
                let len = r.len() as u64;
                let a = match *addr {
                    Addr::Raw(a) => a,
                    Addr::Inside(f) => self.geo.base + len * u64::from(f) / 65536,
                    Addr::NearEnd(back) => self.geo.base + len - u64::from(back),
                    Addr::Zero => 0,
                    Addr::Max => u64::MAX - 7,
                };
                r.write_u64(ring(k).desc(index), a)
            }
            Corruption::DescLen {
                ring: k,
                index,
                value,
            } => r.write_u32(ring(k).desc(index) + 8, value),
            Corruption::DescFlags {
                ring: k,
                index,
                value,
            } => r.write_u16(ring(k).desc(index) + 12, value),
            Corruption::Header {
                dir,
                id,
                field,
                value,
            } => {
                let (off, _) = self.geo.buffer(dir, id);
                if field >= 12 {
                    r.write_u16(off + field, value as u16)
                } else {
                    r.write_u32(off + field, value)
                }
            }
            Corruption::Vdev { field, value } => match self.geo.vdev_field(field) {
                Some(at) if field == vdev_field::STATUS => r.write_u8(at, value as u8),
                Some(at) => r.write_u32(at, value),
                None => Ok(()),
            },
            Corruption::Wild { at, ref bytes } => {
                let off = r.len() * usize::from(at) / 65536;
                let n = bytes.len().min(r.len() - off);
                r.copy_in(off, &bytes[..n])
            }
        };
    }
}

/// What the victim's application saw.
#[derive(Default)]
struct Seen {
    messages: AtomicU32,
    held: Mutex<Vec<HeldRx>>,
}

/// One case: our link in `victim` role against an honest peer link, `ops` in order, then a
/// drain, the accounting and a shutdown.
fn run_case(victim: Role, rsc: bool, translated: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    let t0 = Instant::now();
    let geo = geometry(rsc, translated);
    let mut mem = GuardedMemory::new(geo.region_len(), GUARD);
    {
        let region = mem.region();
        geo.prepare(&region);
        run_ops(victim, &geo, region, ops)?;
    }
    let damaged = mem.damaged_guards();
    prop_assert!(
        damaged.is_empty(),
        "bytes outside the region changed at {:?}",
        &damaged[..damaged.len().min(8)]
    );
    let elapsed = t0.elapsed();
    prop_assert!(elapsed < HANG_GUARD, "case took {elapsed:?}");
    Ok(())
}

/// Judges every result of a case.
struct Checker {
    /// Set once the hostile driver has written the resource table our device reads.
    table_written: std::cell::Cell<bool>,
}

impl Checker {
    /// Records `r`: success, or an error a hostile peer may cause.
    fn check<T>(&self, what: &str, r: Result<T, Error>) -> Result<Option<T>, TestCaseError> {
        match r {
            Ok(t) => Ok(Some(t)),
            Err(e) if allowed(&e) => Ok(None),
            // A device reading a vdev entry the driver broke (vring placement, size, alignment)
            // reports it as `Config`: no harm done, but see the report on its classification.
            Err(Error::Config(_)) if self.table_written.get() => Ok(None),
            Err(e) => Err(TestCaseError::fail(format!(
                "{what}: unexpected error {e:?}"
            ))),
        }
    }
}

fn run_ops(
    victim: Role,
    geo: &Geometry,
    region: SharedRegion<'_>,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let peer_role = match victim {
        Role::Driver => Role::Device,
        Role::Device => Role::Driver,
    };
    let ck = Checker {
        table_written: std::cell::Cell::new(false),
    };
    let seen = Seen::default();
    let on_msg = |msg: RxBuffer<'_>| {
        let n = seen.messages.fetch_add(1, Ordering::Relaxed);
        let mut b = [0u8; 8];
        let _ = msg.read(0, &mut b[..msg.len().min(8)]);
        if n % 3 == 0 {
            seen.held.lock().unwrap().push(msg.into_held());
        }
    };
    let peer_seen = AtomicU32::new(0);
    let peer_cb = |_: RxBuffer<'_>| {
        peer_seen.fetch_add(1, Ordering::Relaxed);
    };

    let us: L<'_> = geo.link_with(region, quick(geo, victim));
    let peer: L<'_> = geo.link_with(region, quick(geo, peer_role));
    let scribbler = Scribbler {
        region,
        geo: *geo,
        rings: geo.rings(),
    };

    let mut eps: Vec<Endpoint<'_>> = vec![
        us.create_endpoint(EndpointConfig::new().addr(0x100).dst(0x200).queue(2))
            .unwrap(),
        us.create_endpoint(
            EndpointConfig::new()
                .addr(0x101)
                .dst(0x201)
                .callback(&on_msg),
        )
        .unwrap(),
    ];
    let peer_eps = [
        peer.create_endpoint(EndpointConfig::new().addr(0x200).queue(4))
            .unwrap(),
        peer.create_endpoint(EndpointConfig::new().addr(0x201).callback(&peer_cb))
            .unwrap(),
    ];
    // Honest start-up (the corruption starts with the first operation).
    let (drv, dev) = match victim {
        Role::Driver => (&us, &peer),
        Role::Device => (&peer, &us),
    };
    dev.start().unwrap();
    drv.start().unwrap();
    dev.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();

    let mut kept: Vec<RxBuffer<'_>> = Vec::new();
    let mut discarded = 0u32;
    let mut peer_sent = 0u32;
    let mut corrupted = false;
    let mut may_hide = false;
    let mut buf = [0u8; 600];
    let mut big = [0u8; 0x1_0000];

    for op in ops {
        match *op {
            Op::Poll => {
                ck.check("poll", us.poll())?;
            }
            Op::TrySend { ep, len } => {
                if let Some(e) = eps.get(ep) {
                    ck.check("try_send", e.try_send(&buf[..len]))?;
                }
            }
            Op::AllocSend { ep, len } => {
                if let Some(e) = eps.get(ep) {
                    if let Some(mut tx) = ck.check("alloc_tx", e.alloc_tx(Timeout::NoWait))? {
                        let len = len.min(tx.capacity());
                        ck.check("write", tx.write(0, &buf[..len]))?;
                        ck.check("send", tx.send(len).map_err(|e| e.error))?;
                    }
                }
            }
            Op::Recv { ep } => {
                if let Some(e) = eps.get(ep) {
                    match e.recv(&mut big, Timeout::NoWait) {
                        Err(Error::NotQueued) => {}
                        r => {
                            if ck.check("recv", r)?.is_some() {
                                seen.messages.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
            Op::RecvZeroCopy { ep, keep } => {
                if let Some(e) = eps.get(ep) {
                    match e.recv_zero_copy(Timeout::NoWait) {
                        Err(Error::NotQueued) => {}
                        r => {
                            if let Some(m) = ck.check("recv_zero_copy", r)? {
                                seen.messages.fetch_add(1, Ordering::Relaxed);
                                let _ = m.read(0, &mut buf[..m.len().min(600)]);
                                if keep {
                                    kept.push(m);
                                }
                            }
                        }
                    }
                }
            }
            Op::Create { addr, callback } => {
                let mut c = EndpointConfig::new().dst(0x200);
                if let Some(a) = addr {
                    c = c.addr(a);
                }
                if callback {
                    c = c.callback(&on_msg);
                }
                if let Some(e) = ck.check("create_endpoint", us.create_endpoint(c))? {
                    eps.push(e);
                }
            }
            Op::Destroy { ep } => {
                if let Some(e) = eps.get(ep) {
                    discarded += e.pending().map_or(0, |n| n as u32);
                    ck.check("destroy", e.destroy())?;
                }
            }
            Op::Release => {
                drop(kept.pop());
                if let Some(h) = seen.held.lock().unwrap().pop() {
                    us.release_held(h)
                        .map_err(|e| TestCaseError::fail(format!("release_held: {}", e.error)))?;
                }
            }
            Op::PeerPoll => {
                ck.check("peer poll", peer.poll())?;
                drain(&peer_eps[0]);
            }
            Op::PeerSend { ep, len } => {
                let dst = eps.get(ep).map_or(0x100, Endpoint::addr);
                let sent = peer_eps[ep % 2].try_send_to(dst, &buf[..len]);
                if ck.check("peer send", sent)?.is_some() {
                    peer_sent += 1;
                }
            }
            Op::Corrupt(ref c) => {
                corrupted = true;
                ck.table_written.set(
                    ck.table_written.get()
                        || (victim == Role::Device
                            && matches!(c, Corruption::Vdev { .. } | Corruption::Wild { .. })),
                );
                // Moving an index back un-publishes messages: our side cannot tell them from
                // messages never sent. So does scribbling over an index: a write past the end
                // of a descriptor table or ring, or a buffer pointed at the rings, which makes
                // whoever fills it overwrite them.
                may_hide |= match *c {
                    Corruption::UsedIdx { delta, .. } | Corruption::AvailIdx { delta, .. } => {
                        delta < 0
                    }
                    Corruption::DescAddr {
                        index, ref addr, ..
                    } => index >= NUM || matches!(addr, Addr::Inside(_) | Addr::Zero),
                    Corruption::DescLen { index, .. } | Corruption::DescFlags { index, .. } => {
                        index >= NUM
                    }
                    Corruption::UsedElem { slot, .. } | Corruption::AvailSlot { slot, .. } => {
                        slot >= NUM
                    }
                    Corruption::Wild { .. } => true,
                    Corruption::UsedFlags { .. }
                    | Corruption::AvailFlags { .. }
                    | Corruption::Header { .. }
                    | Corruption::Vdev { .. } => false,
                };
                scribbler.apply(c);
            }
        }
    }

    // No more corruption: give everything back and let both sides settle.
    drop(kept);
    let release_all = || -> Result<(), TestCaseError> {
        for h in std::mem::take(&mut *seen.held.lock().unwrap()) {
            us.release_held(h)
                .map_err(|e| TestCaseError::fail(format!("release_held: {}", e.error)))?;
        }
        Ok(())
    };
    for _ in 0..8 {
        release_all()?;
        ck.check("peer poll", peer.poll())?;
        drain(&peer_eps[0]);
        ck.check("poll", us.poll())?;
        for e in &eps {
            loop {
                match e.recv(&mut big, Timeout::NoWait) {
                    Ok(_) => {
                        seen.messages.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Error::NotQueued) => break,
                    r => {
                        ck.check("recv", r)?;
                        break;
                    }
                }
            }
        }
    }

    release_all()?;
    let ours = us.stats();
    let theirs = peer.stats();
    let delivered = seen.messages.load(Ordering::Relaxed);
    let counts = Counts {
        peer_sent,
        delivered,
        discarded,
    };
    let both_up = us.is_up() && peer.is_up();
    account(&ours, &theirs, &counts, corrupted, may_hide, both_up)?;

    // Shutdown ends it all; afterwards every call is LinkDown.
    match us.shutdown() {
        Ok(()) | Err(Error::LinkDown) => {}
        Err(e) => return Err(TestCaseError::fail(format!("shutdown: {e:?}"))),
    }
    prop_assert_eq!(us.poll(), Err(Error::LinkDown));
    if let Some(e) = eps.first() {
        prop_assert!(matches!(
            e.try_send(b"late"),
            Err(Error::LinkDown | Error::EndpointDestroyed)
        ));
    }
    let _ = peer.shutdown();
    Ok(())
}

/// Takes everything queued on `ep`.
fn drain(ep: &Endpoint<'_>) {
    let mut buf = [0u8; 0x1_0000];
    while ep.recv(&mut buf, Timeout::NoWait).is_ok() {}
}

/// What the test saw of the peer's messages to us.
#[derive(Debug)]
struct Counts {
    /// Messages the peer sent us successfully.
    peer_sent: u32,
    /// Messages our application received.
    delivered: u32,
    /// Messages still queued on an endpoint our application destroyed.
    discarded: u32,
}

/// The counters account for what the application did not get: with no corruption, exactly;
/// with corruption, a message lost means some fault counter moved (unless an index was moved
/// back, which un-publishes messages).
fn account(
    ours: &LinkStats,
    theirs: &LinkStats,
    c: &Counts,
    corrupted: bool,
    may_hide: bool,
    both_up: bool,
) -> Result<(), TestCaseError> {
    let ctx = || format!("ours {ours:?}, peer {theirs:?}, {c:?}");
    prop_assert!(
        c.delivered + c.discarded <= ours.rx_messages,
        "delivered more than counted: {}",
        ctx()
    );
    let faults = ours.rx_malformed
        + ours.ns_malformed
        + ours.ns_received
        + ours.peer_violations
        + theirs.peer_violations
        + ours.sessions.saturating_sub(1);
    if !corrupted {
        prop_assert_eq!(faults, 0, "no corruption, no fault: {}", ctx());
        prop_assert!(both_up, "no corruption, still up: {}", ctx());
    }
    if !both_up {
        return Ok(());
    }
    prop_assert_eq!(ours.held, 0, "every buffer was given back: {}", ctx());
    let accounted = c.delivered + c.discarded + ours.rx_unknown_dst;
    if !corrupted {
        prop_assert_eq!(
            c.peer_sent,
            accounted,
            "every message accounted for: {}",
            ctx()
        );
    } else if c.peer_sent > accounted && !may_hide {
        prop_assert!(
            faults > 0,
            "messages lost without a counter moving: {}",
            ctx()
        );
    }
    Ok(())
}

/// 128 cases per role by default (well under a second); `PROPTEST_CASES` for a longer campaign.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn hostile_device_cannot_break_our_driver(
        rsc in any::<bool>(),
        translated in any::<bool>(),
        ops in ops(device_corruption().boxed()),
    ) {
        run_case(Role::Driver, rsc, translated, &ops)?;
    }

    #[test]
    fn hostile_driver_cannot_break_our_device(
        rsc in any::<bool>(),
        translated in any::<bool>(),
        ops in ops(driver_corruption().boxed()),
    ) {
        run_case(Role::Device, rsc, translated, &ops)?;
    }
}

// ---------------------------------------------------------------------------------------------
// One fault class at a time, the peer played by hand: raw ring writes, nothing of ours on its
// side.

/// Raw access to one vring.
#[derive(Clone, Copy)]
struct RawRing<'r> {
    r: SharedRegion<'r>,
    ring: Vring,
}

impl RawRing<'_> {
    fn mask(&self) -> u16 {
        self.ring.layout.num - 1
    }
    fn avail(&self, f: usize) -> usize {
        self.ring.base + self.ring.layout.avail + f
    }
    fn used(&self, f: usize) -> usize {
        self.ring.base + self.ring.layout.used + f
    }
    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16) {
        let d = self.ring.desc(i);
        self.r.write_u64(d, addr).unwrap();
        self.r.write_u32(d + 8, len).unwrap();
        self.r.write_u16(d + 12, flags).unwrap();
    }
    fn read_desc(&self, i: u16) -> (u64, u32) {
        let d = self.ring.desc(i);
        (self.r.read_u64(d).unwrap(), self.r.read_u32(d + 8).unwrap())
    }
    fn avail_idx(&self) -> u16 {
        self.r.read_u16(self.avail(avail::IDX)).unwrap()
    }
    fn set_avail_idx(&self, v: u16) {
        self.r.write_u16(self.avail(avail::IDX), v).unwrap();
    }
    fn avail_slot(&self, idx: u16) -> u16 {
        self.r
            .read_u16(self.avail(avail::ring(idx & self.mask())))
            .unwrap()
    }
    fn publish(&self, id: u16) {
        let idx = self.avail_idx();
        self.r
            .write_u16(self.avail(avail::ring(idx & self.mask())), id)
            .unwrap();
        self.set_avail_idx(idx.wrapping_add(1));
    }
    fn used_idx(&self) -> u16 {
        self.r.read_u16(self.used(used::IDX)).unwrap()
    }
    fn set_used_idx(&self, v: u16) {
        self.r.write_u16(self.used(used::IDX), v).unwrap();
    }
    fn used_elem(&self, idx: u16) -> (u32, u32) {
        let slot = idx & self.mask();
        (
            self.r.read_u32(self.used(used::id(slot))).unwrap(),
            self.r.read_u32(self.used(used::len(slot))).unwrap(),
        )
    }
    fn push_used(&self, id: u32, len: u32) {
        let idx = self.used_idx();
        let slot = idx & self.mask();
        self.r.write_u32(self.used(used::id(slot)), id).unwrap();
        self.r.write_u32(self.used(used::len(slot)), len).unwrap();
        self.set_used_idx(idx.wrapping_add(1));
    }
}

fn raw_rings<'r>(geo: &Geometry, r: SharedRegion<'r>) -> [RawRing<'r>; 2] {
    geo.rings().map(|ring| RawRing { r, ring })
}

fn hdr(src: u32, dst: u32, len: u16) -> [u8; 16] {
    RpmsgRepr {
        src,
        dst,
        len,
        flags: 0,
    }
    .to_bytes()
}

/// The device, played by hand against our driver.
struct RawDevice<'r> {
    geo: Geometry,
    r: SharedRegion<'r>,
    rings: [RawRing<'r>; 2],
    next_avail: [u16; 2],
}

impl<'r> RawDevice<'r> {
    fn new(geo: &Geometry, r: SharedRegion<'r>) -> Self {
        Self {
            geo: *geo,
            r,
            rings: raw_rings(geo, r),
            next_avail: [0; 2],
        }
    }

    /// The next buffer the driver made available on vring `k`: (id, region offset, length).
    fn take(&mut self, k: usize) -> Option<(u16, usize, u32)> {
        let ring = self.rings[k];
        if ring.avail_idx() == self.next_avail[k] {
            return None;
        }
        let id = ring.avail_slot(self.next_avail[k]);
        self.next_avail[k] = self.next_avail[k].wrapping_add(1);
        let (addr, len) = ring.read_desc(id);
        Some((id, (addr - self.geo.base) as usize, len))
    }

    /// Fills the next vring 0 buffer with `header` and `payload` and returns it with `used_len`.
    fn send_with(&mut self, header: [u8; 16], payload: &[u8], used_len: Option<u32>) -> u16 {
        let (id, off, len) = self.take(0).expect("the driver posted a buffer");
        self.r.copy_in(off, &header).unwrap();
        self.r.copy_in(off + 16, payload).unwrap();
        self.rings[0].push_used(u32::from(id), used_len.unwrap_or(len));
        id
    }

    fn send(&mut self, src: u32, dst: u32, payload: &[u8]) -> u16 {
        self.send_with(hdr(src, dst, payload.len() as u16), payload, None)
    }
}

/// The driver, played by hand against our device.
struct RawDriver<'r> {
    geo: Geometry,
    r: SharedRegion<'r>,
    rings: [RawRing<'r>; 2],
    next_used: [u16; 2],
}

impl<'r> RawDriver<'r> {
    /// Lays out the rings, posts every vring 0 buffer, and (resource table) writes the status
    /// as Linux does.
    fn start(geo: &Geometry, r: SharedRegion<'r>) -> Self {
        let status = geo.status_offset();
        if let Some(s) = status {
            r.write_u8(s, VIRTIO_CONFIG_S_ACKNOWLEDGE).unwrap();
            r.write_u8(s, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER)
                .unwrap();
            r.write_u32(geo.vdev_field(vdev_field::GFEATURES).unwrap(), 1)
                .unwrap();
        }
        let rings = raw_rings(geo, r);
        if status.is_some() {
            for (k, ring) in rings.iter().enumerate() {
                let da = u32::try_from(geo.base + ring.ring.base as u64).unwrap();
                let at = geo.vdev_field(vdev_field::vring(k)).unwrap();
                r.write_u32(at + vdev_field::VRING_DA, da).unwrap();
            }
        }
        for ring in &rings {
            r.fill(ring.ring.base, ring.ring.layout.size, 0).unwrap();
        }
        for id in 0..NUM {
            let (off, size) = geo.buffer(0, id);
            rings[0].desc(id, geo.base + off as u64, size as u32, VRING_DESC_F_WRITE);
            rings[0].publish(id);
        }
        if let Some(s) = status {
            r.write_u8(
                s,
                VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK,
            )
            .unwrap();
        }
        Self {
            geo: *geo,
            r,
            rings,
            next_used: [0; 2],
        }
    }

    /// Makes vring 1 descriptor `id` available as given, its buffer untouched.
    fn offer(&mut self, id: u16, addr: u64, len: u32, flags: u16) {
        self.rings[1].desc(id, addr, len, flags);
        self.rings[1].publish(id);
    }

    /// Sends `payload` from `src` to `dst` in vring 1 buffer `id`, with `header` overriding
    /// the header when given.
    fn send_with(&mut self, id: u16, header: [u8; 16], payload: &[u8], desc_len: Option<u32>) {
        let (off, size) = self.geo.buffer(1, id);
        self.r.copy_in(off, &header).unwrap();
        self.r.copy_in(off + 16, payload).unwrap();
        let len = desc_len.unwrap_or((16 + payload.len()) as u32);
        debug_assert!(len as usize <= size || desc_len.is_some());
        self.offer(id, self.geo.base + off as u64, len, 0);
    }

    fn send(&mut self, id: u16, src: u32, dst: u32, payload: &[u8]) {
        self.send_with(id, hdr(src, dst, payload.len() as u16), payload, None);
    }

    /// What the device has returned on vring `k` since the last look: (id, len).
    fn reclaim(&mut self, k: usize) -> Vec<(u32, u32)> {
        let ring = self.rings[k];
        let mut out = Vec::new();
        while self.next_used[k] != ring.used_idx() {
            out.push(ring.used_elem(self.next_used[k]));
            self.next_used[k] = self.next_used[k].wrapping_add(1);
        }
        out
    }
}

/// Geometries for the deterministic tests: both layouts, one with translated addresses.
fn fault_geometries() -> [Geometry; 3] {
    [
        geometry(false, false),
        geometry(true, false),
        geometry(true, true),
    ]
}

/// Runs `f` with our link in `role` started against the hand-played peer, in every geometry,
/// then checks the guard bytes.
fn with_ours(role: Role, mut f: impl FnMut(&Geometry, SharedRegion<'_>, &L<'_>)) {
    for geo in fault_geometries() {
        let mut mem = GuardedMemory::new(geo.region_len(), GUARD);
        {
            let region = mem.region();
            geo.prepare(&region);
            let us: L<'_> = geo.link_with(region, quick(&geo, role));
            f(&geo, region, &us);
        }
        assert_eq!(mem.damaged_guards(), Vec::<isize>::new(), "{geo:?}");
    }
}

fn assert_broken(us: &L<'_>, ep: &Endpoint<'_>) {
    assert!(!us.is_up());
    assert!(matches!(us.poll(), Err(Error::PeerViolation(_))), "poll");
    assert!(
        matches!(ep.try_send(b"x"), Err(Error::PeerViolation(_))),
        "try_send"
    );
    assert!(
        matches!(
            ep.recv(&mut [0; 16], Timeout::NoWait),
            Err(Error::PeerViolation(_))
        ),
        "recv"
    );
    assert!(
        matches!(ep.alloc_tx(Timeout::NoWait), Err(Error::PeerViolation(_))),
        "alloc_tx"
    );
    assert!(
        matches!(
            us.create_endpoint(EndpointConfig::new()),
            Err(Error::PeerViolation(_))
        ),
        "create_endpoint"
    );
    assert_eq!(us.start(), Err(Error::LinkDown), "start");
}

#[test]
fn driver_stops_on_a_used_index_jump() {
    with_ours(Role::Driver, |geo, region, us| {
        let ep = us
            .create_endpoint(EndpointConfig::new().addr(0x100).dst(0x200))
            .unwrap();
        us.start().unwrap();
        let dev = RawDevice::new(geo, region);
        dev.rings[0].set_used_idx(NUM + 1);
        assert_eq!(
            us.poll(),
            Err(Error::PeerViolation(Violation::IndexJump {
                idx: NUM + 1,
                shadow: 0,
                num: NUM
            }))
        );
        let s = us.stats();
        assert_eq!((s.peer_violations, s.rx_messages), (1, 0), "{s:?}");
        assert_broken(us, &ep);
    });
}

#[test]
fn driver_stops_on_a_tx_used_index_jump() {
    with_ours(Role::Driver, |geo, region, us| {
        let ep = us
            .create_endpoint(EndpointConfig::new().addr(0x100).dst(0x200))
            .unwrap();
        us.start().unwrap();
        for _ in 0..NUM {
            ep.try_send(b"fill").unwrap();
        }
        let dev = RawDevice::new(geo, region);
        dev.rings[1].set_used_idx(0x8000);
        assert!(matches!(
            ep.try_send(b"one more"),
            Err(Error::PeerViolation(Violation::IndexJump {
                idx: 0x8000,
                ..
            }))
        ));
        assert_broken(us, &ep);
    });
}

#[test]
fn device_stops_on_an_avail_index_jump() {
    with_ours(Role::Device, |geo, region, us| {
        let ep = us
            .create_endpoint(EndpointConfig::new().addr(0x200).dst(0x100))
            .unwrap();
        us.start().unwrap();
        let drv = RawDriver::start(geo, region);
        us.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();
        drv.rings[1].set_avail_idx(0xFFFF);
        assert_eq!(
            us.poll(),
            Err(Error::PeerViolation(Violation::IndexJump {
                idx: 0xFFFF,
                shadow: 0,
                num: NUM
            }))
        );
        assert_eq!(us.stats().peer_violations, 1);
        assert_broken(us, &ep);
    });
}

#[test]
fn device_stops_on_a_tx_avail_index_jump() {
    with_ours(Role::Device, |geo, region, us| {
        let ep = us
            .create_endpoint(EndpointConfig::new().addr(0x200).dst(0x100))
            .unwrap();
        us.start().unwrap();
        let drv = RawDriver::start(geo, region);
        us.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();
        drv.rings[0].set_avail_idx(NUM + NUM + 1);
        assert!(matches!(
            ep.try_send(b"x"),
            Err(Error::PeerViolation(Violation::IndexJump { .. }))
        ));
        assert_broken(us, &ep);
    });
}

/// The driver has made `id` available again as its `n`-th return, with its full length.
fn reposted(dev: &RawDevice<'_>, n: u16, id: u16) {
    let ring = dev.rings[0];
    assert_eq!(ring.avail_idx(), NUM + n, "returned buffers so far");
    assert_eq!(ring.avail_slot(NUM + n - 1), id, "the buffer returned");
    assert_eq!(ring.read_desc(id).1, 512, "with its whole length");
}

#[test]
fn driver_drops_bad_messages_counts_them_and_returns_the_buffers() {
    with_ours(Role::Driver, |geo, region, us| {
        let ep = us
            .create_endpoint(EndpointConfig::new().addr(0x100).queue(8))
            .unwrap();
        us.start().unwrap();
        let mut dev = RawDevice::new(geo, region);

        // Header longer than the buffer's payload room.
        let id = dev.send_with(hdr(0x200, 0x100, 497), &[], None);
        assert_eq!(us.poll(), Ok(1));
        let s = us.stats();
        assert_eq!(
            (s.rx_malformed, s.peer_violations, s.rx_messages),
            (1, 1, 0)
        );
        assert_eq!(
            s.last_violation,
            Some(Violation::LengthTooLarge { len: 497, cap: 496 })
        );
        reposted(&dev, 1, id);

        // Longer than what used.len says was written.
        let id = dev.send_with(hdr(0x200, 0x100, 90), &[7; 90], Some(100));
        us.poll().unwrap();
        let s = us.stats();
        assert_eq!((s.rx_malformed, s.rx_messages), (2, 0));
        assert_eq!(
            s.last_violation,
            Some(Violation::LengthTooLarge { len: 90, cap: 84 })
        );
        reposted(&dev, 2, id);

        // Unknown destination: counted, not a violation.
        let id = dev.send(0x200, 0x999, b"nobody");
        us.poll().unwrap();
        let s = us.stats();
        assert_eq!((s.rx_unknown_dst, s.peer_violations), (1, 2));
        reposted(&dev, 3, id);

        // Name-service messages of the wrong length.
        for (n, len) in [(4, 39usize), (5, 41)] {
            let id = dev.send(0x200, 53, &vec![b'a'; len]);
            us.poll().unwrap();
            reposted(&dev, n, id);
        }
        let s = us.stats();
        assert_eq!((s.ns_malformed, s.ns_received), (2, 0), "{s:?}");
        assert_eq!(s.rx_messages, 0, "{s:?}");
        assert_eq!(ep.pending().unwrap(), 0);
        assert!(us.is_up());
    });
}

#[test]
fn driver_counts_a_buffer_returned_twice_or_out_of_range() {
    with_ours(Role::Driver, |geo, region, us| {
        let ep = us
            .create_endpoint(EndpointConfig::new().addr(0x100).queue(8))
            .unwrap();
        us.start().unwrap();
        let mut dev = RawDevice::new(geo, region);
        let id = dev.send(0x200, 0x100, b"once");
        us.poll().unwrap();
        let msg = ep.recv_zero_copy(Timeout::NoWait).unwrap();
        // The same head again while our application still holds it.
        dev.rings[0].push_used(u32::from(id), 512);
        dev.rings[0].push_used(1000, 512);
        us.poll().unwrap();
        let s = us.stats();
        assert_eq!((s.peer_violations, s.rx_messages), (2, 1), "{s:?}");
        assert_eq!(
            s.last_violation,
            Some(Violation::IdOutOfRange { id: 1000, num: NUM })
        );
        assert!(matches!(
            ep.recv(&mut [0; 16], Timeout::NoWait),
            Err(Error::NoBuffer)
        ));
        drop(msg);
        // Still up: a good message gets through.
        dev.send(0x200, 0x100, b"after");
        us.poll().unwrap();
        let mut b = [0u8; 16];
        assert_eq!(ep.recv(&mut b, Timeout::NoWait).unwrap(), (5, 0x200));
        assert!(us.is_up());
    });
}

/// A fault, how to make it, and how many `rx_malformed` and `rx_unknown_dst` it costs.
type FaultCase<'a> = (&'a str, Box<dyn Fn(&mut RawDriver<'_>) + 'a>, u32, u32);

#[test]
fn device_drops_bad_messages_counts_them_and_returns_the_buffers() {
    with_ours(Role::Device, |geo, region, us| {
        let ep = us
            .create_endpoint(EndpointConfig::new().addr(0x200).queue(8))
            .unwrap();
        us.start().unwrap();
        let mut drv = RawDriver::start(geo, region);
        us.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();
        let (off1, _) = geo.buffer(1, 1);
        let region_end = geo.base + region.len() as u64;
        let cases: [FaultCase<'_>; 9] = [
            (
                "header longer than the buffer",
                Box::new(|d| {
                    d.send_with(0, hdr(0x100, 0x200, 497), &[], Some(512));
                }),
                1,
                0,
            ),
            (
                "header longer than the descriptor",
                Box::new(|d| {
                    d.send_with(0, hdr(0x100, 0x200, 90), &[1; 90], Some(100));
                }),
                1,
                0,
            ),
            (
                "descriptor shorter than a header",
                Box::new(|d| {
                    d.send_with(0, hdr(0x100, 0x200, 0), &[], Some(8));
                }),
                1,
                0,
            ),
            (
                "unknown destination",
                Box::new(|d| d.send(0, 0x100, 0x999, b"nobody")),
                0,
                1,
            ),
            (
                "name-service message of 39 bytes",
                Box::new(|d| d.send(0, 0x100, 53, &[b'a'; 39])),
                0,
                0,
            ),
            (
                "address past the end",
                Box::new(move |d| d.offer(0, region_end, 512, 0)),
                1,
                0,
            ),
            (
                "address straddling the end",
                Box::new(move |d| d.offer(0, region_end - 100, 512, 0)),
                1,
                0,
            ),
            (
                "huge length",
                Box::new(move |d| d.offer(0, geo.base + off1 as u64, u32::MAX, 0)),
                1,
                0,
            ),
            (
                "chained",
                Box::new(move |d| d.offer(0, geo.base + off1 as u64, 512, VRING_DESC_F_NEXT)),
                1,
                0,
            ),
        ];
        let mut before = us.stats();
        for (what, send, malformed, unknown) in cases {
            send(&mut drv);
            assert_eq!(us.poll(), Ok(1), "{what}");
            let s = us.stats();
            assert_eq!(
                s.rx_malformed - before.rx_malformed,
                malformed,
                "{what}: {s:?}"
            );
            assert_eq!(
                s.rx_unknown_dst - before.rx_unknown_dst,
                unknown,
                "{what}: {s:?}"
            );
            assert_eq!(s.rx_messages, 0, "{what}");
            let back = drv.reclaim(1);
            assert_eq!(back.len(), 1, "{what}: the buffer came back");
            assert_eq!(back[0].0, 0, "{what}");
            assert!(us.is_up(), "{what}");
            before = s;
        }
        let s = us.stats();
        assert_eq!(s.ns_malformed, 1);
        assert_eq!(s.peer_violations, 7, "{s:?}");
        assert_eq!(ep.pending().unwrap(), 0);
    });
}

#[test]
fn device_skips_send_buffers_outside_the_region() {
    with_ours(Role::Device, |geo, region, us| {
        let ep = us
            .create_endpoint(EndpointConfig::new().addr(0x200).dst(0x100))
            .unwrap();
        us.start().unwrap();
        let mut drv = RawDriver::start(geo, region);
        us.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();
        // The first two buffers the device would take point outside shared memory.
        drv.rings[0].desc(0, u64::MAX - 7, 512, VRING_DESC_F_WRITE);
        drv.rings[0].desc(1, geo.base + region.len() as u64, 512, VRING_DESC_F_WRITE);
        ep.try_send(b"hello").unwrap();
        // The two spoiled buffers are kept (returned, they would hold old messages).
        assert_eq!(drv.reclaim(0), [(2, 512)]);
        let (off, _) = geo.buffer(0, 2);
        let mut h = [0u8; 21];
        region.copy_out(off, &mut h).unwrap();
        assert_eq!(
            RpmsgRepr::from_bytes(h[..16].try_into().unwrap()).dst,
            0x100
        );
        assert_eq!(&h[16..], b"hello");
        let s = us.stats();
        assert_eq!((s.peer_violations, s.tx_messages), (2, 1), "{s:?}");
        assert!(us.is_up());
    });
}

/// What a real driver does with a receive buffer the device returns, whatever its used
/// length: Linux checks `hdr.len <= used.len - 16` in unsigned arithmetic (a used length below
/// 16 wraps and passes), OpenAMP and RPMsg-Lite do not look at it; all three then read the
/// header in the buffer and deliver the message. Returns what such a driver would deliver for
/// each used element: `(dst, payload)`.
fn deliver_like_linux(
    geo: &Geometry,
    r: SharedRegion<'_>,
    back: &[(u32, u32)],
) -> Vec<(u32, Vec<u8>)> {
    back.iter()
        .filter_map(|&(id, used_len)| {
            let (off, size) = geo.buffer(0, u16::try_from(id).ok()?);
            let mut h = [0u8; 16];
            r.copy_out(off, &mut h).unwrap();
            let h = RpmsgRepr::from_bytes(&h);
            let room = used_len.wrapping_sub(16);
            if used_len as usize > size.max(512) || u32::from(h.len) > room {
                return None;
            }
            let mut p = vec![0u8; usize::from(h.len)];
            r.copy_out(off + 16, &mut p).unwrap();
            Some((h.dst, p))
        })
        .collect()
}

/// Item 7 of issue 13: our device refuses a receive buffer of the driver (its descriptor now
/// points outside shared memory, holds less than a header, or is chained). Given back with
/// used length 0, as before, a driver that re-reads the buffer (Linux, OpenAMP, RPMsg-Lite:
/// see `deliver_like_linux`) delivers again the message it held last: a ghost. The device must
/// keep such a buffer instead (counted as a violation), send in the next good one, and hand
/// back nothing a driver can misread.
#[test]
fn item7_refused_buffer_is_not_a_ghost_message() {
    with_ours(Role::Device, |geo, region, us| {
        let ep = us
            .create_endpoint(EndpointConfig::new().addr(0x200).dst(0x100))
            .unwrap();
        us.start().unwrap();
        let mut drv = RawDriver::start(geo, region);
        us.wait_link_up(Timeout::After(Duration::from_secs(60)))
            .unwrap();
        // A first round: every receive buffer carries a message, which the driver reads.
        for i in 0..NUM {
            ep.try_send(&[b'a' + i as u8; 5]).unwrap();
        }
        let back = drv.reclaim(0);
        assert_eq!(
            deliver_like_linux(geo, region, &back).len(),
            usize::from(NUM)
        );
        // The driver posts them again, three of them spoiled.
        let (off0, size) = geo.buffer(0, 0);
        let end = geo.base + region.len() as u64;
        for id in 0..NUM {
            let (off, _) = geo.buffer(0, id);
            let (addr, len, flags) = match id {
                0 => (end, size as u32, VRING_DESC_F_WRITE),
                1 => (geo.base + off as u64, 8, VRING_DESC_F_WRITE),
                2 => (
                    geo.base + off0 as u64,
                    size as u32,
                    VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
                ),
                _ => (geo.base + off as u64, size as u32, VRING_DESC_F_WRITE),
            };
            drv.rings[0].desc(id, addr, len, flags);
            drv.rings[0].publish(id);
        }
        let before = us.stats();
        ep.try_send(b"fresh").unwrap();
        let back = drv.reclaim(0);
        let got = deliver_like_linux(geo, region, &back);
        assert_eq!(got, [(0x100, b"fresh".to_vec())], "returned: {back:?}");
        let s = us.stats();
        assert_eq!(s.peer_violations - before.peer_violations, 3, "{s:?}");
        assert_eq!(s.tx_messages - before.tx_messages, 1);
        assert!(us.is_up());
    });
}

/// Item 7, the driver's side: a device that returns a receive buffer with a used length
/// below the 16-byte header has written no message into it. Our driver must not read the old
/// header there (it held "a1", already delivered): the element is refused, counted in
/// `rx_malformed` and as `Violation::ShortUsed`, and the buffer posted again.
#[test]
fn item7_driver_refuses_used_shorter_than_a_header() {
    with_ours(Role::Driver, |geo, region, us| {
        let a = us
            .create_endpoint(EndpointConfig::new().addr(0x100).queue(8))
            .unwrap();
        us.start().unwrap();
        let mut dev = RawDevice::new(geo, region);
        let id = dev.send(0x200, 0x100, b"a1");
        us.poll().unwrap();
        expect_queue(&a, &[b"a1"]);
        // The same buffer comes back, unwritten, with used length 0 and then 15.
        for used_len in [0, 15] {
            loop {
                let (got, _, _) = dev.take(0).expect("the driver posted it again");
                if got == id {
                    break;
                }
                dev.rings[0].push_used(u32::from(got), 512);
                us.poll().unwrap();
            }
            dev.rings[0].push_used(u32::from(id), used_len);
            let before = us.stats();
            us.poll().unwrap();
            assert_eq!(
                a.pending().unwrap(),
                0,
                "used length {used_len}: a ghost of a1"
            );
            let s = us.stats();
            assert_eq!(s.rx_malformed - before.rx_malformed, 1, "{s:?}");
            assert_eq!(
                s.last_violation,
                Some(Violation::ShortUsed { id, len: used_len })
            );
            assert_eq!(s.rx_messages, 1);
        }
        let mut reposted = false;
        while let Some((got, _, _)) = dev.take(0) {
            reposted |= got == id;
        }
        assert!(reposted, "the buffer was posted again");
        assert!(us.is_up());
    });
}

#[test]
fn device_counts_a_head_made_available_twice() {
    with_ours(Role::Device, |geo, region, us| {
        let ep = us
            .create_endpoint(EndpointConfig::new().addr(0x200).queue(8))
            .unwrap();
        us.start().unwrap();
        let mut drv = RawDriver::start(geo, region);
        us.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();
        drv.send(3, 0x100, 0x200, b"first");
        us.poll().unwrap();
        assert_eq!(ep.pending().unwrap(), 1, "held in the queue");
        // Head 3 again, and a head out of range.
        drv.rings[1].publish(3);
        drv.rings[1].publish(NUM + 5);
        us.poll().unwrap();
        let s = us.stats();
        assert_eq!((s.peer_violations, s.rx_messages), (2, 1), "{s:?}");
        assert!(drv.reclaim(1).is_empty(), "nothing returned twice");
        let mut b = [0u8; 16];
        assert_eq!(ep.recv(&mut b, Timeout::NoWait).unwrap(), (5, 0x100));
        assert_eq!(drv.reclaim(1), [(3, 21)], "returned once, after the read");
        assert!(us.is_up());
    });
}

#[test]
fn a_bad_message_costs_no_other_endpoint_its_messages() {
    // Our driver, a hand-played device.
    with_ours(Role::Driver, |geo, region, us| {
        let a = us
            .create_endpoint(EndpointConfig::new().addr(0x100).queue(8))
            .unwrap();
        let b = us
            .create_endpoint(EndpointConfig::new().addr(0x101).queue(8))
            .unwrap();
        us.start().unwrap();
        let mut dev = RawDevice::new(geo, region);
        dev.send(0x200, 0x100, b"a1");
        dev.send_with(hdr(0x200, 0x101, 600), &[], None);
        dev.send(0x200, 0x999, b"lost");
        dev.send(0x200, 53, b"short ns");
        dev.rings[0].push_used(200, 0);
        dev.send(0x200, 0x101, b"b1");
        dev.send(0x200, 0x100, b"a2");
        us.poll().unwrap();
        expect_queue(&a, &[b"a1", b"a2"]);
        expect_queue(&b, &[b"b1"]);
        let s = us.stats();
        assert_eq!(
            (
                s.rx_messages,
                s.rx_malformed,
                s.rx_unknown_dst,
                s.ns_malformed,
                s.peer_violations
            ),
            (3, 1, 1, 1, 2),
            "{s:?}"
        );
    });
    // Our device, a hand-played driver.
    with_ours(Role::Device, |geo, region, us| {
        let a = us
            .create_endpoint(EndpointConfig::new().addr(0x100).queue(8))
            .unwrap();
        let b = us
            .create_endpoint(EndpointConfig::new().addr(0x101).queue(8))
            .unwrap();
        us.start().unwrap();
        let mut drv = RawDriver::start(geo, region);
        us.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();
        drv.send(0, 0x200, 0x100, b"a1");
        drv.send_with(1, hdr(0x200, 0x101, 600), &[], Some(512));
        drv.offer(2, u64::MAX - 7, 512, 0);
        drv.send(3, 0x200, 0x999, b"lost");
        drv.rings[1].publish(0);
        drv.send(4, 0x200, 0x101, b"b1");
        drv.send(5, 0x200, 0x100, b"a2");
        us.poll().unwrap();
        expect_queue(&a, &[b"a1", b"a2"]);
        expect_queue(&b, &[b"b1"]);
        let s = us.stats();
        assert_eq!(
            (
                s.rx_messages,
                s.rx_malformed,
                s.rx_unknown_dst,
                s.peer_violations
            ),
            (3, 2, 1, 3),
            "{s:?}"
        );
    });
}

fn expect_queue(ep: &Endpoint<'_>, want: &[&[u8]]) {
    let mut buf = [0u8; 64];
    for w in want {
        let (n, _) = ep.recv(&mut buf, Timeout::NoWait).unwrap();
        assert_eq!(&buf[..n], *w);
    }
    assert!(matches!(
        ep.recv(&mut buf, Timeout::NoWait),
        Err(Error::NoBuffer)
    ));
}

#[test]
fn device_refuses_a_resource_table_the_driver_broke() {
    let geo = geometry(true, true);
    let Kind::Rsc(layout) = geo.kind else {
        unreachable!()
    };
    let vring0 = |f: usize| geo.vdev_field(vdev_field::vring(0) + f).unwrap();
    let breakages: [(&str, usize, u32); 5] = [
        (
            "vring 0 outside the region",
            vring0(vdev_field::VRING_DA),
            0x1000,
        ),
        (
            "vring 0 straddling the end",
            vring0(vdev_field::VRING_DA),
            0x8000_0000 + layout.len as u32 - 64,
        ),
        (
            "vring 0 misaligned",
            vring0(vdev_field::VRING_DA),
            0x8000_0000 + layout.vrings[0] as u32 + 2,
        ),
        (
            "vring 0 num not a power of two",
            vring0(vdev_field::VRING_NUM),
            3,
        ),
        (
            "vring 0 num above the link's capacity",
            vring0(vdev_field::VRING_NUM),
            64,
        ),
    ];
    for (what, at, value) in breakages {
        let mut mem = GuardedMemory::new(geo.region_len(), GUARD);
        {
            let region = mem.region();
            geo.prepare(&region);
            let us: L<'_> = geo.link_with(region, quick(&geo, Role::Device));
            us.start().unwrap();
            let _ = RawDriver::start(&geo, region);
            region.write_u32(at, value).unwrap();
            let r = us.poll();
            assert!(r.is_err(), "{what}: {r:?}");
            assert!(!us.is_up(), "{what}");
            assert!(us.wait_link_up(Timeout::NoWait).is_err(), "{what}");
        }
        assert_eq!(mem.damaged_guards(), Vec::<isize>::new(), "{what}");
    }
}

#[test]
fn guard_check_sees_a_byte_changed_next_to_the_region() {
    let mut mem = GuardedMemory::new(256, 64);
    assert!(
        mem.region().write_u8(256, 1).is_err(),
        "the region refuses it"
    );
    assert!(mem.damaged_guards().is_empty());
    mem.poke_outside(-1);
    mem.poke_outside(256);
    assert_eq!(mem.damaged_guards(), [-1, 256]);
}
