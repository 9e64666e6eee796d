//! The `compact_remote` target: `compact::Remote` (device role, RPMsg-Lite layout) against a
//! driver the fuzzer plays: an honest `Link` in the driver role whose rings and buffers the
//! fuzzer also writes between any two steps, doorbells rung or not.
//!
//! Invariants: no byte outside the region changes; every call returns success or an error a
//! hostile driver may cause; every message a callback receives is one the driver published to
//! that address with those bytes (unless the fuzzer rewrote shared memory); without rewrites,
//! the counters account for every message the driver sent and the driver receives every
//! message the remote sent, with its bytes.

use crate::common::Geometry;
use crate::guard::Guarded;
use crate::link::{Corruption, Hand, allowed, payload};
use arbitrary::Arbitrary;
use rpmsg::compact::{Message, Remote, State};
use rpmsg::testing::Loopback;
use rpmsg::wire::vring::{avail, used};
use rpmsg::{
    Config, EndpointConfig, Error, LiteConfig, NsKind, RPMSG_ADDR_ANY, RPMSG_NS_ADDR, Role, Timeout,
};
use std::sync::Mutex;
use std::time::Duration;

const NUM: u16 = 4;
const MAX_OPS: usize = 96;
/// The driver's endpoints: a queue (P0) and one that only counts.
const P0: u32 = 0x200;
/// The remote's first endpoint (echo) and second (plain).
const R0: u32 = 30;
const R1: u32 = 31;

/// One fuzz input.
#[derive(Debug, Arbitrary)]
pub struct Input {
    /// Ignore every `Corrupt` step: the driver behaves, and everything must add up exactly.
    pub clean: bool,
    /// What happens, in order.
    pub ops: Vec<Op>,
}

/// One step.
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    /// `Remote::poll`.
    Poll,
    /// `Remote::handle_notify(id)`.
    Notify(u8),
    /// `Remote::try_send` of `len` bytes from R0 or R1 to P0.
    TrySend {
        /// From R1 (otherwise R0).
        r1: bool,
        /// Payload length.
        len: u16,
    },
    /// `create_endpoint` at `addr` (53 included; any when `None`).
    Create(Option<u8>),
    /// `destroy_endpoint`.
    Destroy(u8),
    /// `Remote::announce`.
    Announce {
        /// Address.
        addr: u8,
        /// A destroy announcement.
        destroy: bool,
    },
    /// The driver polls and drains P0.
    PeerPoll,
    /// The driver sends `len` bytes to R0, R1, 53 or `addr`.
    PeerSend {
        /// Destination choice.
        to: u8,
        /// Payload length.
        len: u16,
    },
    /// The driver rewrites shared memory.
    Corrupt(Corruption),
}

#[derive(Default)]
struct Book {
    published: Vec<(u32, Vec<u8>)>,
    delivered: u32,
    tampered: bool,
    /// Bytes the remote sent to P0 not received yet.
    to_p0: std::collections::VecDeque<Vec<u8>>,
}

fn ck<T>(what: &str, r: Result<T, Error>) -> Option<T> {
    match r {
        Ok(t) => Some(t),
        Err(e)
            if allowed(&e) || matches!(e, Error::UnknownEndpoint(_) | Error::InvalidAddress(_)) =>
        {
            None
        }
        Err(e) => panic!("{what}: unexpected error {e:?}"),
    }
}

/// Runs one input.
pub fn run(input: &Input) {
    let lite = LiteConfig::new(NUM, 496, 16);
    Guarded::reuse(lite.region_len(), |mem| run_in(mem, lite, input));
}

#[allow(clippy::too_many_lines)]
fn run_in(mem: &mut Guarded, lite: LiteConfig, input: &Input) {
    let geo = Geometry::lite(lite);
    let (region, guards) = mem.split();
    let book = Mutex::new(Book::default());
    let on_msg = |mut m: Message<'_>| {
        let mut data = vec![0u8; m.len()];
        let n = m
            .copy_to(&mut data)
            .expect("a buffer of the message's length");
        data.truncate(n);
        let mut b = book.lock().unwrap();
        b.delivered += 1;
        if !b.tampered {
            assert!(
                b.published
                    .iter()
                    .any(|(dst, d)| *dst == m.dst() && *d == data),
                "{:#x} received {data:?}, which the driver never sent it",
                m.dst()
            );
        }
        // R0 echoes: a send from inside the callback.
        if m.dst() == R0 && m.src() == P0 {
            let echo = payload(0x4000_0000 | b.delivered, data.len());
            if ck("reply", m.reply(&echo)).is_some() {
                b.to_p0.push_back(echo);
            }
        }
    };
    let mut state: State<'_, 8, 4> = State::new();
    let mut remote: Remote<'_, Loopback, 8, 4> =
        Remote::new(region, Loopback::new(region), lite, &mut state).unwrap();
    let mut cfg = Config::lite(Role::Driver, lite);
    cfg.send_timeout = Duration::ZERO;
    let driver: crate::FuzzLink<'_, 8> = crate::fuzz_link(region, geo.base, cfg);
    let p0 = driver
        .create_endpoint(EndpointConfig::new().addr(P0).queue(8))
        .unwrap();
    remote.create_endpoint(R0, &on_msg).unwrap();
    remote.create_endpoint(R1, &on_msg).unwrap();
    driver.start().unwrap();
    ck("poll", remote.poll());
    let hand = Hand {
        region,
        geo,
        rings: geo.rings(),
    };
    let drain = |b: &Mutex<Book>| {
        crate::with_scratch(|big| {
            while let Ok((n, src)) = p0.recv(big, Timeout::NoWait) {
                let mut b = b.lock().unwrap();
                if !b.tampered && (src == R0 || src == R1) {
                    let want = b.to_p0.pop_front().unwrap_or_else(|| {
                        panic!("the driver received {:?} the remote never sent", &big[..n])
                    });
                    assert_eq!(&big[..n], &want[..], "the driver received other bytes");
                }
            }
        });
    };
    let mut seq = 0u32;
    for op in input.ops.iter().take(MAX_OPS) {
        match *op {
            Op::Poll => {
                ck("poll", remote.poll());
            }
            Op::Notify(id) => {
                ck("handle_notify", remote.handle_notify(u32::from(id % 4)));
            }
            Op::TrySend { r1, len } => {
                seq += 1;
                let data = payload(0x2000_0000 | seq, usize::from(len) % 600);
                let src = if r1 { R1 } else { R0 };
                if ck("try_send", remote.try_send(src, P0, &data)).is_some() {
                    book.lock().unwrap().to_p0.push_back(data);
                }
            }
            Op::Create(addr) => {
                let a = addr.map_or(RPMSG_ADDR_ANY, |a| u32::from(a) % 64);
                ck("create_endpoint", remote.create_endpoint(a, &on_msg));
            }
            Op::Destroy(addr) => {
                ck(
                    "destroy_endpoint",
                    remote.destroy_endpoint(u32::from(addr) % 64),
                );
            }
            Op::Announce { addr, destroy } => {
                let kind = if destroy {
                    NsKind::Destroy
                } else {
                    NsKind::Create
                };
                ck("announce", remote.announce("fz", u32::from(addr), kind));
            }
            Op::PeerPoll => {
                ck("driver poll", driver.poll());
                drain(&book);
            }
            Op::PeerSend { to, len } => {
                let dst = match to % 4 {
                    0 => R0,
                    1 => R1,
                    2 => RPMSG_NS_ADDR,
                    _ => u32::from(to / 4) % 64,
                };
                let s = book.lock().unwrap().published.len() as u32;
                let data = payload(s, usize::from(len) % 497);
                if ck("driver send", p0.try_send_to(dst, &data)).is_some() {
                    book.lock().unwrap().published.push((dst, data));
                }
            }
            Op::Corrupt(ref c) => {
                if input.clean {
                    continue;
                }
                book.lock().unwrap().tampered = true;
                hand.apply(c);
            }
        }
        guards.check();
    }
    // The driver behaves from here on. Up to 6 rounds; one that moved nothing (no counter, no
    // ring index, no delivery) is a fixed point.
    let snapshot = |remote: &Remote<'_, Loopback, 8, 4>| {
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
        (
            *remote.stats(),
            driver.stats(),
            idx,
            book.lock().unwrap().delivered,
        )
    };
    for _ in 0..6 {
        let before = snapshot(&remote);
        ck("poll", remote.poll());
        ck("driver poll", driver.poll());
        drain(&book);
        if snapshot(&remote) == before {
            break;
        }
    }
    guards.check();
    let b = book.lock().unwrap();
    let ours = remote.stats();
    let theirs = driver.stats();
    assert!(
        b.delivered <= ours.rx_messages,
        "delivered more than counted"
    );
    if !b.tampered && remote.is_up() {
        let counted = ours.rx_messages + ours.rx_unknown_dst + ours.rx_malformed;
        assert_eq!(
            theirs.tx_messages, counted,
            "every message the driver sent is counted: ours {ours:?}, driver {theirs:?}"
        );
        assert_eq!(
            ours.rx_messages, b.delivered,
            "every message counted was delivered"
        );
        assert!(
            b.to_p0.is_empty(),
            "messages to the driver lost: {:?}",
            b.to_p0
        );
        assert_eq!(
            ours.peer_violations, 0,
            "an honest driver broke nothing: {ours:?}"
        );
    }
}
