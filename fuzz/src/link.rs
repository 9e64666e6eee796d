//! The `Link` targets: our link in one role against an honest link of the other role on the same
//! region, while the fuzzer, playing the other core, also writes any value into any byte of the
//! region between two of our steps, rings doorbells, and calls our API.
//!
//! Two modes. **Hostile**: anything goes. **Isolated**: the other core is well-behaved in every
//! part of memory our protected endpoint's messages use and misbehaves only in its messages to
//! another endpoint (header and payload rewritten after publication), in name-service payloads,
//! in ring flags and with spurious doorbells.
//!
//! Invariants checked after every step (a failure panics, which the fuzzer reports):
//! * no byte outside the region changes (guard areas on both sides);
//! * every call returns, with success or an error a hostile peer may cause;
//! * every message an endpoint of ours receives is one the other core published to that
//!   endpoint, with those exact bytes, unless the fuzzer rewrote buffers, descriptors or indices;
//! * isolated mode: the protected endpoint receives every message sent to it, in order, and the
//!   other core receives every message the protected endpoint sent; and the counters account for
//!   every message the other core sent (delivered, unknown destination, malformed, name service);
//! * hostile mode: a message lost shows up in a fault counter, unless an index or buffer was
//!   rewritten in a way that un-publishes messages.

use crate::common::Geometry;
use crate::guard::Guarded;
use arbitrary::Arbitrary;
use rpmsg::virtqueue::Vring;
use rpmsg::wire::rsc::vdev_field;
use rpmsg::wire::vring::{avail, used};
use rpmsg::{
    Config, Endpoint, EndpointConfig, Error, HeldRx, LinkStats, LiteConfig, NsKind, Role, RxBuffer,
    SharedRegion, Timeout,
};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// Ring entries: small, so indices wrap and buffers run out often.
const NUM: u16 = 8;
/// The links' capacity: above `NUM`, so a table the peer enlarges to 16 is still taken.
const CAP: usize = 16;
/// Most operations per input: every input ends after a bounded number of steps.
const MAX_OPS: usize = 96;

type L<'r> = crate::FuzzLink<'r, CAP>;

/// Our protected endpoint, and the peer endpoint it talks to.
const E0: u32 = 0x100;
const P0: u32 = 0x200;
/// Our second endpoint (a callback), whose messages the fuzzer may spoil in isolated mode.
const E1: u32 = 0x101;
const P1: u32 = 0x201;
/// An address nobody has.
const NOBODY: u32 = 0x333;

/// One fuzz input.
#[derive(Debug, Arbitrary)]
pub struct Input {
    /// Resource table (otherwise RPMsg-Lite's layout).
    pub rsc: bool,
    /// The peer sees the region at 0x8000_0000 (otherwise at 0).
    pub translated: bool,
    /// Isolated mode (see the module docs).
    pub isolated: bool,
    /// What happens, in order.
    pub ops: Vec<Op>,
}

/// Access width of a write.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Width {
    /// One byte.
    U8,
    /// Two bytes (aligned down).
    U16,
    /// Four bytes (aligned down).
    U32,
}

/// Which part of a vring.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Part {
    /// The descriptor table.
    Desc,
    /// The avail ring.
    Avail,
    /// The used ring.
    Used,
}

/// A write by the other core.
#[derive(Debug, Clone, Arbitrary)]
pub enum Corruption {
    /// `value` at byte `at` (modulo the part's size) of a part of vring 0 or 1.
    Ring {
        /// Vring 1 (otherwise 0).
        ring1: bool,
        /// Which part.
        part: Part,
        /// Byte offset in the part.
        at: u16,
        /// The value.
        value: u32,
        /// Its width.
        width: Width,
    },
    /// An index moved by `delta`.
    Idx {
        /// Vring 1 (otherwise 0).
        ring1: bool,
        /// `used.idx` (otherwise `avail.idx`).
        used: bool,
        /// How far.
        delta: i8,
    },
    /// `value` at byte `at` of pool buffer `id` of direction `dir1` (header and payload).
    Buffer {
        /// Vring 1's buffers (otherwise vring 0's).
        dir1: bool,
        /// Buffer id (modulo the ring size).
        id: u8,
        /// Byte offset in the buffer (modulo its size).
        at: u16,
        /// The value.
        value: u32,
        /// Its width.
        width: Width,
    },
    /// `value` at byte `at` of the resource table (nothing with RPMsg-Lite's layout).
    Table {
        /// Byte offset in the table (modulo its length).
        at: u8,
        /// The value.
        value: u32,
        /// Its width.
        width: Width,
    },
    /// The vdev status byte (resource table only).
    Status(u8),
    /// Arbitrary bytes anywhere in the region (`at` a fraction of its length).
    Wild {
        /// Where, as a fraction of the region length over 65536.
        at: u16,
        /// What.
        bytes: Vec<u8>,
    },
}

/// One step.
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    /// `Link::poll`.
    Poll,
    /// `Link::handle_notify(id)`.
    Notify(u8),
    /// `Endpoint::try_send` of `len` bytes on our endpoint `ep`.
    TrySend {
        /// Endpoint index.
        ep: u8,
        /// Payload length.
        len: u16,
    },
    /// `alloc_tx(NoWait)`, `write`, `send`.
    AllocSend {
        /// Endpoint index.
        ep: u8,
        /// Payload length.
        len: u16,
        /// Drop the buffer instead of sending it.
        drop: bool,
    },
    /// `recv(NoWait)` on endpoint `ep`.
    Recv {
        /// Endpoint index.
        ep: u8,
    },
    /// `recv_zero_copy(NoWait)`; `keep` holds the buffer until `Release`.
    RecvZeroCopy {
        /// Endpoint index.
        ep: u8,
        /// Keep it.
        keep: bool,
    },
    /// `create_endpoint`.
    Create {
        /// Address (otherwise any).
        addr: Option<u8>,
        /// A callback endpoint (otherwise a queue).
        callback: bool,
        /// Announce it by name.
        announce: bool,
    },
    /// `Endpoint::destroy` of endpoint `ep`.
    Destroy {
        /// Endpoint index.
        ep: u8,
    },
    /// Drop a kept buffer, release a held one.
    Release,
    /// `resume_held` of a held buffer.
    Resume,
    /// `Link::ns_announce` of endpoint `ep`'s address.
    Announce {
        /// Endpoint index.
        ep: u8,
        /// A destroy announcement (otherwise create).
        destroy: bool,
    },
    /// `Link::shutdown`.
    Shutdown,
    /// `Link::start` (after a shutdown, or a second time).
    Start,
    /// The peer link polls and drains its queue endpoint.
    PeerPoll,
    /// The peer sends `len` bytes to E0, E1, an unknown address or one of our other endpoints.
    PeerSend {
        /// Destination choice.
        to: u8,
        /// Payload length.
        len: u16,
    },
    /// The peer sends a name-service message with this payload (any length, any bytes).
    PeerNs(Vec<u8>),
    /// The peer sends to E1, then rewrites `value` at byte `at` of that message (header or
    /// payload) before anything else runs.
    PeerSendSpoiled {
        /// Payload length.
        len: u16,
        /// Byte offset from the header's start.
        at: u16,
        /// The value.
        value: u32,
        /// Its width.
        width: Width,
    },
    /// The other core writes shared memory.
    Corrupt(Corruption),
}

/// What a hostile peer may legitimately make a call return.
pub(crate) fn allowed(e: &Error) -> bool {
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
            | Error::NsUnavailable
            | Error::NotQueued
    )
}

/// The payload of the peer's message `seq`: its number, then a pattern.
pub(crate) fn payload(seq: u32, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len)
        .map(|i| (seq.wrapping_mul(31) as usize + i * 7) as u8)
        .collect();
    let n = len.min(4);
    p[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
    p
}

/// A message as the other core published it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    src: u32,
    dst: u32,
    data: Vec<u8>,
}

/// What the harness knows.
#[derive(Default)]
struct Book {
    /// Messages the other core published, by sequence number (payloads of 4 bytes and more
    /// carry it; shorter ones are looked up by content).
    published: Vec<Msg>,
    /// Messages to E0 not received yet (isolated mode checks order and content).
    to_e0: VecDeque<Vec<u8>>,
    /// Messages E0 sent that the peer has not received yet.
    from_e0: VecDeque<Vec<u8>>,
    /// Messages our endpoints received.
    delivered: u32,
    /// Messages still queued on endpoints we destroyed.
    discarded: u32,
    /// The fuzzer rewrote buffers, descriptors, indices or the table: content and accounting
    /// checks are off.
    tampered: bool,
    /// A rewrite that may un-publish messages (index moved back, wild writes).
    may_hide: bool,
    /// Our side was shut down.
    shut: bool,
    /// Messages the peer sent to E1 that the fuzzer then spoiled.
    spoiled: Vec<u32>,
}

impl Book {
    /// Checks a message endpoint `dst` received.
    fn check_delivery(&mut self, dst: u32, src: u32, data: &[u8], isolated: bool) {
        self.delivered += 1;
        if isolated && dst == E0 {
            let want = self
                .to_e0
                .pop_front()
                .unwrap_or_else(|| panic!("E0 received {data:?} that the peer never sent it"));
            assert_eq!(
                data,
                &want[..],
                "E0 received other bytes than the peer sent"
            );
            assert_eq!(src, P0, "E0's message has another source");
            return;
        }
        if self.tampered {
            return;
        }
        let found = self.published.iter().enumerate().any(|(seq, m)| {
            m.dst == dst && m.src == src && m.data == data && !self.spoiled.contains(&(seq as u32))
        });
        let spoiled = self.spoiled.iter().any(|&s| {
            let m = &self.published[s as usize];
            m.dst == E1 && dst != E0
        });
        assert!(
            found || spoiled,
            "endpoint {dst:#x} received a message from {src:#x} the peer never published: {data:?}"
        );
    }
}

/// The other core's hand on the region.
pub(crate) struct Hand<'r> {
    pub(crate) region: SharedRegion<'r>,
    pub(crate) geo: Geometry,
    pub(crate) rings: [Vring; 2],
}

impl Hand<'_> {
    pub(crate) fn write(&self, at: usize, value: u32, width: Width) {
        let r = &self.region;
        // Writes outside the region are refused by the region: that is its job, not ours.
        let _ = match width {
            Width::U8 => r.write_u8(at, value as u8),
            Width::U16 => r.write_u16(at & !1, value as u16),
            Width::U32 => r.write_u32(at & !3, value),
        };
    }

    pub(crate) fn apply(&self, c: &Corruption) {
        match *c {
            Corruption::Ring {
                ring1,
                part,
                at,
                value,
                width,
            } => {
                let v = self.rings[usize::from(ring1)];
                let l = v.layout;
                let (start, len) = match part {
                    Part::Desc => (0, 16 * usize::from(l.num)),
                    Part::Avail => (l.avail, 6 + 2 * usize::from(l.num)),
                    Part::Used => (l.used, 6 + 8 * usize::from(l.num)),
                };
                self.write(v.base + start + usize::from(at) % len, value, width);
            }
            Corruption::Idx {
                ring1,
                used: u,
                delta,
            } => {
                let v = self.rings[usize::from(ring1)];
                let at = if u {
                    v.base + v.layout.used + used::IDX
                } else {
                    v.base + v.layout.avail + avail::IDX
                };
                let old = self.region.read_u16(at).unwrap_or(0);
                let _ = self
                    .region
                    .write_u16(at, old.wrapping_add_signed(i16::from(delta)));
            }
            Corruption::Buffer {
                dir1,
                id,
                at,
                value,
                width,
            } => {
                let (off, size) = self
                    .geo
                    .buffer(usize::from(dir1), u16::from(id) % self.geo.num());
                self.write(off + usize::from(at) % size, value, width);
            }
            Corruption::Table { at, value, width } => {
                if let Some((t, len)) = self.geo.table_range() {
                    self.write(t + usize::from(at) % len, value, width);
                }
            }
            Corruption::Status(v) => {
                if let Some(s) = self.geo.vdev_field(vdev_field::STATUS) {
                    let _ = self.region.write_u8(s, v);
                }
            }
            Corruption::Wild { at, ref bytes } => {
                let len = self.region.len();
                let off = len * usize::from(at) / 65536;
                let n = bytes.len().min(len - off);
                let _ = self.region.copy_in(off, &bytes[..n]);
            }
        }
    }

    /// Region offset of the buffer holding the message the peer published last: the last
    /// avail entry of vring 1 (peer is the driver) or the last used entry of vring 0 (peer is
    /// the device).
    fn last_published(&self, peer: Role) -> Option<usize> {
        let r = &self.region;
        let id = match peer {
            Role::Driver => {
                let v = self.rings[1];
                let idx = r.read_u16(v.base + v.layout.avail + avail::IDX).ok()?;
                let slot = idx.wrapping_sub(1) & (v.layout.num - 1);
                r.read_u16(v.base + v.layout.avail + avail::ring(slot))
                    .ok()?
            }
            Role::Device => {
                let v = self.rings[0];
                let idx = r.read_u16(v.base + v.layout.used + used::IDX).ok()?;
                let slot = idx.wrapping_sub(1) & (v.layout.num - 1);
                u16::try_from(r.read_u32(v.base + v.layout.used + used::id(slot)).ok()?).ok()?
            }
        };
        let v = self.rings[usize::from(peer == Role::Driver)];
        let addr = r.read_u64(v.desc(id)).ok()?;
        usize::try_from(addr.checked_sub(self.geo.base)?).ok()
    }
}

fn geometry(rsc: bool, translated: bool) -> Geometry {
    let base = if translated { 0x8000_0000 } else { 0 };
    if rsc {
        Geometry::rsc(NUM, 16, !translated, base)
    } else {
        Geometry::lite(LiteConfig::new(NUM, 496, 16)).with_base(base)
    }
}

/// No wait anywhere is long: the target never blocks (every call here is `NoWait` or `try_`).
fn quick(geo: &Geometry, role: Role) -> Config {
    let mut c = geo.config(role);
    c.poll_interval = Duration::from_micros(1);
    c.send_timeout = Duration::ZERO;
    c
}

/// Runs one input with our link in `victim` role.
pub fn run(victim: Role, input: &Input) {
    let geo = geometry(input.rsc, input.translated);
    Guarded::reuse(geo.region_len(), |mem| {
        let (region, guards) = mem.split();
        geo.prepare(&region);
        run_ops(victim, &geo, region, &guards, input);
        guards.check();
    });
}

/// Checks a result: `Some` on success, `None` on an allowed error, a panic otherwise.
fn ck<T>(what: &str, r: Result<T, Error>, tampered: bool) -> Option<T> {
    match r {
        Ok(t) => Some(t),
        Err(e) if allowed(&e) => None,
        // A device reading a vdev entry the driver broke reports it as `Config`.
        Err(Error::Config(_)) if tampered => None,
        Err(e) => panic!("{what}: unexpected error {e:?}"),
    }
}

#[allow(clippy::too_many_lines)]
fn run_ops(
    victim: Role,
    geo: &Geometry,
    region: SharedRegion<'_>,
    guards: &crate::guard::Guards<'_>,
    input: &Input,
) {
    let isolated = input.isolated;
    let peer_role = match victim {
        Role::Driver => Role::Device,
        Role::Device => Role::Driver,
    };
    let book = Mutex::new(Book::default());
    let held: Mutex<Vec<HeldRx>> = Mutex::new(Vec::new());
    let on_msg = |msg: RxBuffer<'_>| {
        let mut data = vec![0u8; msg.len()];
        let n = msg.copy_to(&mut data);
        data.truncate(n);
        book.lock()
            .unwrap()
            .check_delivery(msg.dst(), msg.src(), &data, isolated);
        if data.first().is_some_and(|b| b % 3 == 0) {
            held.lock().unwrap().push(msg.into_held());
        }
    };
    let peer_got: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let peer_cb = |_: RxBuffer<'_>| {};

    let us: L<'_> = crate::fuzz_link(region, geo.base, quick(geo, victim));
    let peer: L<'_> = crate::fuzz_link(region, geo.base, quick(geo, peer_role));
    let hand = Hand {
        region,
        geo: *geo,
        rings: geo.rings(),
    };
    let mut eps: Vec<Endpoint<'_>> = vec![
        us.create_endpoint(EndpointConfig::new().addr(E0).dst(P0).queue(4))
            .unwrap(),
        us.create_endpoint(EndpointConfig::new().addr(E1).dst(P1).callback(&on_msg))
            .unwrap(),
    ];
    let peer_eps = [
        peer.create_endpoint(EndpointConfig::new().addr(P0).queue(8))
            .unwrap(),
        peer.create_endpoint(EndpointConfig::new().addr(P1).callback(&peer_cb))
            .unwrap(),
    ];
    // Honest start-up; the fuzzer's steps begin after it.
    let (drv, dev) = match victim {
        Role::Driver => (&us, &peer),
        Role::Device => (&peer, &us),
    };
    dev.start().unwrap();
    drv.start().unwrap();
    dev.wait_link_up(Timeout::NoWait).unwrap();

    let drain_peer = || {
        crate::with_scratch(|big| {
            while let Ok((n, src)) = peer_eps[0].recv(big, Timeout::NoWait) {
                if src == E0 {
                    peer_got.lock().unwrap().push(big[..n].to_vec());
                }
            }
        });
        let mut b = book.lock().unwrap();
        for got in peer_got.lock().unwrap().drain(..) {
            if isolated && !b.tampered {
                let want = b.from_e0.pop_front().unwrap_or_else(|| {
                    panic!("the peer received {got:?} from E0, which E0 never sent")
                });
                assert_eq!(got, want, "the peer received other bytes than E0 sent");
            }
        }
    };
    let mut kept: Vec<RxBuffer<'_>> = Vec::new();
    let mut e0_seq = 0u32;
    for op in input.ops.iter().take(MAX_OPS) {
        let t = book.lock().unwrap().tampered;
        match *op {
            Op::Poll => {
                ck("poll", us.poll(), t);
            }
            Op::Notify(id) => {
                ck("handle_notify", us.handle_notify(u32::from(id % 8)), t);
            }
            Op::TrySend { ep, len } => {
                if let Some(e) = eps.get(usize::from(ep)) {
                    let data = payload(e0_seq | 0x8000_0000, usize::from(len) % 600);
                    if ck("try_send", e.try_send(&data), t).is_some() && e.addr() == E0 {
                        e0_seq += 1;
                        book.lock().unwrap().from_e0.push_back(data);
                    }
                }
            }
            Op::AllocSend { ep, len, drop } => {
                if let Some(e) = eps.get(usize::from(ep))
                    && let Some(mut tx) = ck("alloc_tx", e.alloc_tx(Timeout::NoWait), t)
                {
                    let len = usize::from(len).min(tx.capacity());
                    let data = payload(e0_seq | 0x8000_0000, len);
                    ck("write", tx.write(0, &data), t);
                    if !drop
                        && ck("send", tx.send(len).map_err(|e| e.error), t).is_some()
                        && e.addr() == E0
                    {
                        e0_seq += 1;
                        book.lock().unwrap().from_e0.push_back(data);
                    }
                }
            }
            Op::Recv { ep } => {
                if let Some(e) = eps.get(usize::from(ep)) {
                    recv_one(&book, isolated, e, false);
                }
            }
            Op::RecvZeroCopy { ep, keep } => {
                if let Some(e) = eps.get(usize::from(ep))
                    && let Some(m) = recv_one(&book, isolated, e, true).flatten()
                    && keep
                {
                    kept.push(m);
                }
            }
            Op::Create {
                addr,
                callback,
                announce,
            } => {
                let mut c = EndpointConfig::new().dst(P0).announce(announce);
                if let Some(a) = addr {
                    c = c.addr(0x400 + u32::from(a));
                }
                if announce {
                    c = c.name("fz").unwrap();
                }
                c = if callback {
                    c.callback(&on_msg)
                } else {
                    c.queue(2)
                };
                if let Some(e) = ck("create_endpoint", us.create_endpoint(c), t) {
                    eps.push(e);
                }
            }
            Op::Destroy { ep } => {
                // E0 stays: it is the one whose messages are followed.
                if let Some(e) = eps.get(usize::from(ep)).filter(|e| e.addr() != E0) {
                    let pending = e.pending().map_or(0, |n| n as u32);
                    if ck("destroy", e.destroy(), t).is_some() {
                        book.lock().unwrap().discarded += pending;
                    }
                }
            }
            Op::Release => {
                drop(kept.pop());
                let h = held.lock().unwrap().pop();
                if let Some(h) = h
                    && let Err(e) = us.release_held(h)
                {
                    panic!("release_held: {:?}", e.error);
                }
            }
            Op::Resume => {
                let h = held.lock().unwrap().pop();
                if let Some(h) = h {
                    match us.resume_held(h) {
                        Ok(Some(m)) => drop(m),
                        Ok(None) => {}
                        Err(e) => panic!("resume_held: {:?}", e.error),
                    }
                }
            }
            Op::Announce { ep, destroy } => {
                if let Some(e) = eps.get(usize::from(ep)) {
                    let kind = if destroy {
                        NsKind::Destroy
                    } else {
                        NsKind::Create
                    };
                    ck(
                        "ns_announce",
                        us.ns_announce("fz-ann", e.addr(), kind, Timeout::NoWait),
                        t,
                    );
                }
            }
            Op::Shutdown => {
                book.lock().unwrap().shut = true;
                ck("shutdown", us.shutdown(), t);
            }
            Op::Start => {
                let r = us.start();
                // A second start, or one after shutdown, may be refused as a misuse.
                if !matches!(r, Err(Error::Busy | Error::Config(_))) {
                    ck("start", r, t);
                }
            }
            Op::PeerPoll => {
                ck("peer poll", peer.poll(), t);
                drain_peer();
            }
            Op::PeerSend { to, len } => {
                let dst = match to % 4 {
                    0 => E0,
                    1 => E1,
                    2 => NOBODY,
                    _ => eps.get(usize::from(to / 4)).map_or(E0, Endpoint::addr),
                };
                let (src_ep, src) = if dst == E0 {
                    (&peer_eps[0], P0)
                } else {
                    (&peer_eps[1], P1)
                };
                let seq = book.lock().unwrap().published.len() as u32;
                let data = payload(seq, usize::from(len) % 497);
                if ck("peer send", src_ep.try_send_to(dst, &data), t).is_some() {
                    let mut b = book.lock().unwrap();
                    if dst == E0 {
                        b.to_e0.push_back(data.clone());
                    }
                    b.published.push(Msg { src, dst, data });
                }
            }
            Op::PeerNs(ref bytes) => {
                let n = bytes.len().min(496);
                ck(
                    "peer ns",
                    peer_eps[1].try_send_to(rpmsg::RPMSG_NS_ADDR, &bytes[..n]),
                    t,
                );
            }
            Op::PeerSendSpoiled {
                len,
                at,
                value,
                width,
            } => {
                let seq = book.lock().unwrap().published.len() as u32;
                let data = payload(seq, usize::from(len) % 497);
                if ck("peer send", peer_eps[1].try_send_to(E1, &data), t).is_some() {
                    let mut b = book.lock().unwrap();
                    b.spoiled.push(seq);
                    b.published.push(Msg {
                        src: P1,
                        dst: E1,
                        data: data.clone(),
                    });
                    if let Some(off) = hand.last_published(peer_role) {
                        let at = usize::from(at) % (16 + data.len());
                        // Never redirect it to E0 (whose messages the peer does not spoil).
                        let dst_bytes = 4..8;
                        let val = if (at & !3..(at & !3) + 4).any(|i| dst_bytes.contains(&i))
                            && (value == E0 || (value as u16) == E0 as u16 || value as u8 == 0)
                        {
                            NOBODY
                        } else {
                            value
                        };
                        hand.write(off + at, val, width);
                    }
                }
            }
            Op::Corrupt(ref c) => {
                let flags_only = matches!(
                    c,
                    Corruption::Ring {
                        part: Part::Avail | Part::Used,
                        at: 0 | 1,
                        width: Width::U8 | Width::U16,
                        ..
                    }
                );
                if isolated && !flags_only {
                    continue;
                }
                if !flags_only {
                    let mut b = book.lock().unwrap();
                    b.tampered = true;
                    b.may_hide |= match *c {
                        Corruption::Idx { delta, .. } => delta < 0,
                        Corruption::Wild { .. }
                        | Corruption::Ring { .. }
                        | Corruption::Buffer { .. } => true,
                        Corruption::Table { .. } | Corruption::Status(_) => false,
                    };
                }
                hand.apply(c);
            }
        }
        guards.check();
    }

    // The other core behaves from here on: give everything back and let both sides settle.
    drop(kept);
    let t = book.lock().unwrap().tampered;
    // Up to 8 rounds; a round that moved nothing (no counter, no ring index, no delivery, no
    // held buffer) is a fixed point: the next one would do the same nothing.
    let snapshot = || {
        let idx: Vec<u16> = hand
            .rings
            .iter()
            .flat_map(|v| {
                [
                    v.base + v.layout.avail + avail::IDX,
                    v.base + v.layout.used + used::IDX,
                ]
            })
            .map(|at| region.read_u16(at).unwrap_or(0))
            .collect();
        let b = book.lock().unwrap();
        let held_n = held.lock().unwrap().len();
        (us.stats(), peer.stats(), idx, b.delivered, held_n)
    };
    for _ in 0..8 {
        let before = snapshot();
        let hs = std::mem::take(&mut *held.lock().unwrap());
        for h in hs {
            if let Err(e) = us.release_held(h) {
                panic!("release_held: {:?}", e.error);
            }
        }
        ck("peer poll", peer.poll(), t);
        drain_peer();
        ck("poll", us.poll(), t);
        for e in &eps {
            while recv_one(&book, isolated, e, false).is_some() {}
        }
        guards.check();
        if snapshot() == before {
            break;
        }
    }
    let hs = std::mem::take(&mut *held.lock().unwrap());
    for h in hs {
        if let Err(e) = us.release_held(h) {
            panic!("release_held: {:?}", e.error);
        }
    }
    let ours = us.stats();
    let theirs = peer.stats();
    let b = book.lock().unwrap();
    account(&ours, &theirs, &b, us.is_up() && peer.is_up(), isolated);
    drop(b);

    // Shutdown ends it all; afterwards every call is LinkDown.
    ck("shutdown", us.shutdown(), t);
    assert_eq!(us.poll(), Err(Error::LinkDown), "poll after shutdown");
    let _ = peer.shutdown();
    guards.check();
}

/// Receives one message on `e` without waiting and checks it: `None` when there was none,
/// `Some(buffer)` (zero-copy) or `Some(None)` (copied) otherwise.
fn recv_one<'l>(
    book: &Mutex<Book>,
    isolated: bool,
    e: &Endpoint<'l>,
    zero_copy: bool,
) -> Option<Option<RxBuffer<'l>>> {
    let t = book.lock().unwrap().tampered;
    if zero_copy {
        let m = ck("recv_zero_copy", e.recv_zero_copy(Timeout::NoWait), t)?;
        let mut data = vec![0u8; m.len()];
        let n = m.copy_to(&mut data);
        data.truncate(n);
        book.lock()
            .unwrap()
            .check_delivery(m.dst(), m.src(), &data, isolated);
        Some(Some(m))
    } else {
        crate::with_scratch(|big| {
            let (n, src) = ck("recv", e.recv(big, Timeout::NoWait), t)?;
            book.lock()
                .unwrap()
                .check_delivery(e.addr(), src, &big[..n], isolated);
            Some(None)
        })
    }
}

/// The counters account for what the application did not get.
fn account(ours: &LinkStats, theirs: &LinkStats, b: &Book, both_up: bool, isolated: bool) {
    let ctx = || {
        format!(
            "ours {ours:?}, peer {theirs:?}, delivered {}, discarded {}",
            b.delivered, b.discarded
        )
    };
    assert!(
        b.delivered + b.discarded <= ours.rx_messages,
        "delivered more than counted: {}",
        ctx()
    );
    if !both_up || b.shut {
        return;
    }
    assert_eq!(ours.held, 0, "every buffer was given back: {}", ctx());
    // Everything the other core sent (its own announcements included) is counted once.
    let counted = ours.rx_messages + ours.rx_unknown_dst + ours.rx_malformed + ours.ns_malformed;
    if isolated || !b.tampered {
        assert_eq!(
            theirs.tx_messages,
            counted,
            "every message the peer sent is counted: {}",
            ctx()
        );
        assert_eq!(
            ours.rx_messages,
            b.delivered + b.discarded + ours.ns_received,
            "every message counted was delivered: {}",
            ctx()
        );
        if isolated {
            assert!(b.to_e0.is_empty(), "messages to E0 lost: {:?}", b.to_e0);
            assert!(
                b.from_e0.is_empty(),
                "messages from E0 lost: {:?}",
                b.from_e0
            );
        }
    } else if theirs.tx_messages > counted && !b.may_hide {
        let faults = ours.rx_malformed
            + ours.ns_malformed
            + ours.peer_violations
            + theirs.peer_violations
            + ours.sessions.saturating_sub(1);
        assert!(
            faults > 0,
            "messages lost without a counter moving: {}",
            ctx()
        );
    }
}
