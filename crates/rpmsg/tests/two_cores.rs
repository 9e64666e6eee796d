//! Two "cores" in one process: a driver link and a device link over one region, in both layouts.
//!
//! The stress tests run each side on its own thread, busy-polling, with traffic both ways at once
//! over three endpoints per side (fixed and dynamic addresses, queue and callback receive, copy
//! and zero-copy on both paths), and check every byte of every message, per-endpoint order, the
//! ring indices after wrap-around and the counters. The other tests take one feature at a time:
//! zero-copy buffers, held callback buffers, back-pressure, the name service and shutdown.
//!
//! `RPMSG_STRESS_MESSAGES` sets the number of messages each way of the two long runs (one per
//! layout; default 1,000,000, at least 65,537 so the 16-bit ring indices wrap). The other
//! pairings run a fifth of it, at least 100,000: on two busy-polling cores a 1M run takes 5-7 s
//! with 16 or 256 ring entries and about 14 s with RPMsg-Lite's 2 buffers.

mod common;

use common::{Geometry, MAX_PAYLOAD, Memory, announce_svc_and_lone, check_payload, fill_payload};
use rpmsg::port::CriticalSectionRawMutex;
use rpmsg::testing::TestLink;
use rpmsg::testing::cache::Stale;
use rpmsg::{
    Announcement, Endpoint, EndpointConfig, Error, HeldRx, LinkStats, LiteConfig, NsKind, NsQueue,
    Role, RxBuffer, RxHandler, Timeout, TxBuffer,
};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a wait that must succeed may take before the test calls it hung: minutes, so a
/// loaded machine never fails it (item 14); only a broken run waits this long.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// The threaded tests busy-poll; running two of them at once on a 2-core machine would only
/// measure the scheduler.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const SECOND: Duration = Duration::from_secs(1);

fn long_run() -> u64 {
    std::env::var("RPMSG_STRESS_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn short_run() -> u64 {
    let n = long_run();
    (n / 5).max(n.min(100_000))
}

// ---------------------------------------------------------------------------------------------
// Stress: both directions at once, three endpoints per side.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RxKind {
    /// `Endpoint::recv` into a local buffer.
    Copy,
    /// `Endpoint::recv_zero_copy`, holding every buffer that is there before dropping them.
    ZeroCopy,
    /// A callback checks the message inside `poll`.
    Callback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxKind {
    /// `Endpoint::try_send` to the default destination.
    Try,
    /// `Endpoint::alloc_tx`, `TxBuffer::write`, `TxBuffer::send`.
    ZeroCopy,
    /// `Link::send_offchannel` without waiting.
    Offchannel,
}

/// One side's endpoints: endpoint `k` talks to the peer's endpoint `k`.
struct Plan {
    /// Fixed addresses, or `None` for a dynamic one (the first dynamic address is 1024).
    addrs: [Option<u32>; 3],
    rx: [RxKind; 3],
    tx: [TxKind; 3],
}

const DYNAMIC: u32 = 1024;

const DRIVER_PLAN: Plan = Plan {
    addrs: [Some(0x100), None, Some(0x2000)],
    rx: [RxKind::Copy, RxKind::Callback, RxKind::ZeroCopy],
    tx: [TxKind::Try, TxKind::ZeroCopy, TxKind::Offchannel],
};

const DEVICE_PLAN: Plan = Plan {
    addrs: [Some(0x200), None, Some(0x3000)],
    rx: [RxKind::Callback, RxKind::ZeroCopy, RxKind::Copy],
    tx: [TxKind::ZeroCopy, TxKind::Offchannel, TxKind::Try],
};

impl Plan {
    fn addr(&self, k: usize) -> u32 {
        self.addrs[k].unwrap_or(DYNAMIC)
    }
}

/// What the two threads share: a failure to report, and who is done.
struct Shared {
    abort: AtomicBool,
    failure: Mutex<Option<String>>,
    started: [AtomicBool; 2],
    done: AtomicU32,
    /// Messages moved so far, by either thread.
    moves: AtomicU64,
    /// The move count last seen by a deadline check, and when it last changed.
    last_move: Mutex<(u64, Instant)>,
    /// How long without any progress counts as hung (a hang guard, not a speed limit: a loaded
    /// machine makes the run slow, never stuck).
    stall: Duration,
}

impl Shared {
    fn new(limit: Duration) -> Self {
        Self {
            abort: AtomicBool::new(false),
            failure: Mutex::new(None),
            started: [AtomicBool::new(false), AtomicBool::new(false)],
            done: AtomicU32::new(0),
            moves: AtomicU64::new(0),
            last_move: Mutex::new((0, Instant::now())),
            stall: limit,
        }
    }

    fn fail(&self, msg: String) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(msg);
        }
        self.abort.store(true, Ordering::SeqCst);
    }

    fn aborted(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }

    /// Counts progress (a message sent or received).
    fn moved(&self) {
        self.moves.fetch_add(1, Ordering::Relaxed);
    }

    /// Fails the run when nothing moved for the whole stall limit.
    fn check_deadline(&self, what: impl FnOnce() -> String) {
        let now = Instant::now();
        let moves = self.moves.load(Ordering::Relaxed);
        let mut last = self.last_move.lock().unwrap_or_else(|p| p.into_inner());
        if last.0 != moves {
            *last = (moves, now);
        } else if now.duration_since(last.1) > self.stall {
            drop(last);
            self.fail(format!(
                "no progress for {:?} (hung): {}",
                self.stall,
                what()
            ));
        }
    }
}

/// Makes the other thread stop when this one panics.
struct AbortOnPanic<'a>(&'a Shared);

impl Drop for AbortOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail("a side panicked".into());
        }
    }
}

/// The receiving end of one stream: the next sequence number it expects.
struct Stream {
    id: u8,
    src: u32,
    next: u64,
    quota: u64,
}

impl Stream {
    fn accept(&mut self, data: &[u8], src: u32) -> Result<(), String> {
        if src != self.src {
            return Err(format!(
                "stream {}: message {} from {src:#x} instead of {:#x}",
                self.id, self.next, self.src
            ));
        }
        if self.next >= self.quota {
            return Err(format!(
                "stream {}: message beyond the {} sent (a duplicate)",
                self.id, self.quota
            ));
        }
        check_payload(self.id, self.next, data)?;
        self.next += 1;
        Ok(())
    }
}

/// A stream's checker, usable as a callback.
struct Check<'a> {
    stream: Mutex<Stream>,
    shared: &'a Shared,
}

impl Check<'_> {
    fn accept(&self, data: &[u8], src: u32) {
        let r = self
            .stream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .accept(data, src);
        if let Err(e) = r {
            self.shared.fail(e);
        }
    }

    fn accept_buffer(&self, msg: &RxBuffer<'_>) {
        let mut buf = [0u8; MAX_PAYLOAD];
        match buf.get_mut(..msg.len()).map(|b| (msg.read(0, b), &*b)) {
            Some((Ok(()), data)) => self.accept(data, msg.src()),
            Some((Err(e), _)) => self.shared.fail(format!("reading a message: {e}")),
            None => self.shared.fail(format!(
                "message of {} bytes, more than a buffer",
                msg.len()
            )),
        }
    }

    fn complete(&self) -> bool {
        let s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        s.next == s.quota
    }
}

impl RxHandler for Check<'_> {
    fn on_message(&self, msg: RxBuffer<'_>) {
        self.accept_buffer(&msg);
    }
}

struct SideReport {
    stats: LinkStats,
    max_held: usize,
}

fn quota(per_dir: u64, k: usize) -> u64 {
    per_dir / 3 + u64::from((k as u64) < per_dir % 3)
}

/// One core: creates its endpoints, starts (after the peer when `after_peer`), then sends its
/// share and checks what arrives until both sides are done.
fn run_side<const N: usize>(
    geo: &Geometry,
    mem: &Memory,
    role: Role,
    shared: &Shared,
    per_dir: u64,
    after_peer: bool,
) -> SideReport {
    let _guard = AbortOnPanic(shared);
    let (me, peer, mine) = match role {
        Role::Driver => (&DRIVER_PLAN, &DEVICE_PLAN, 0u8),
        Role::Device => (&DEVICE_PLAN, &DRIVER_PLAN, 1u8),
    };
    let theirs = 1 - mine;
    let checks: [Check<'_>; 3] = std::array::from_fn(|k| Check {
        stream: Mutex::new(Stream {
            id: theirs * 3 + k as u8,
            src: peer.addr(k),
            next: 0,
            quota: quota(per_dir, k),
        }),
        shared,
    });
    let link: TestLink<'_, N> = mem.link(geo, role);
    let eps: Vec<Endpoint<'_>> = (0..3)
        .map(|k| {
            let mut c = EndpointConfig::new().dst(peer.addr(k));
            if let Some(a) = me.addrs[k] {
                c = c.addr(a);
            }
            c = match me.rx[k] {
                RxKind::Callback => c.callback(&checks[k]),
                RxKind::Copy | RxKind::ZeroCopy => c.queue(4),
            };
            link.create_endpoint(c).expect("endpoint")
        })
        .collect();
    for (k, ep) in eps.iter().enumerate() {
        assert_eq!(ep.addr(), me.addr(k), "dynamic addresses start at 1024");
    }

    if after_peer {
        while !shared.started[usize::from(theirs)].load(Ordering::SeqCst) && !shared.aborted() {
            shared.check_deadline(|| format!("{role:?} waiting for the peer to start"));
            std::thread::yield_now();
        }
    }
    link.start().expect("start");
    shared.started[usize::from(mine)].store(true, Ordering::SeqCst);
    if role == Role::Device {
        while !shared.aborted() {
            match link.wait_link_up(Timeout::After(SECOND / 10)) {
                Ok(()) => break,
                Err(Error::Timeout) => {
                    shared.check_deadline(|| "device waiting for link-up".into());
                }
                Err(e) => shared.fail(format!("device link-up: {e}")),
            }
        }
    }

    let mut sent = [0u64; 3];
    let mut buf = [0u8; MAX_PAYLOAD];
    let mut rx_buf = [0u8; MAX_PAYLOAD];
    let mut max_held = 0;
    let mut done = false;
    let mut spins = 0u32;
    while !shared.aborted() {
        let mut progress = false;
        for k in 0..3 {
            for _ in 0..4 {
                if sent[k] >= quota(per_dir, k) {
                    break;
                }
                let stream = mine * 3 + k as u8;
                let len = fill_payload(stream, sent[k], &mut buf);
                let data = &buf[..len];
                let r = match me.tx[k] {
                    TxKind::Try => eps[k].try_send(data),
                    TxKind::ZeroCopy => eps[k].alloc_tx(Timeout::NoWait).and_then(|mut tx| {
                        tx.write(0, data)?;
                        tx.send(len).map_err(|e| e.error)
                    }),
                    TxKind::Offchannel => {
                        link.send_offchannel(eps[k].addr(), peer.addr(k), data, Timeout::NoWait)
                    }
                };
                match r {
                    Ok(()) => {
                        sent[k] += 1;
                        progress = true;
                    }
                    Err(Error::NoBuffer) => break,
                    Err(e) => {
                        shared.fail(format!("{role:?} sending {stream}/{}: {e}", sent[k]));
                        break;
                    }
                }
            }
        }
        match link.poll() {
            Ok(n) => progress |= n > 0,
            Err(e) => shared.fail(format!("{role:?} poll: {e}")),
        }
        for k in 0..3 {
            match me.rx[k] {
                RxKind::Callback => {}
                RxKind::Copy => loop {
                    match eps[k].recv(&mut rx_buf, Timeout::NoWait) {
                        Ok((n, src)) => {
                            checks[k].accept(&rx_buf[..n], src);
                            progress = true;
                        }
                        Err(Error::NoBuffer) => break,
                        Err(e) => {
                            shared.fail(format!("{role:?} recv: {e}"));
                            break;
                        }
                    }
                },
                RxKind::ZeroCopy => {
                    let mut held = Vec::new();
                    loop {
                        match eps[k].recv_zero_copy(Timeout::NoWait) {
                            Ok(msg) => {
                                checks[k].accept_buffer(&msg);
                                held.push(msg);
                                progress = true;
                            }
                            Err(Error::NoBuffer) => break,
                            Err(e) => {
                                shared.fail(format!("{role:?} recv_zero_copy: {e}"));
                                break;
                            }
                        }
                    }
                    max_held = max_held.max(held.len());
                }
            }
        }
        if !done
            && (0..3).all(|k| sent[k] == quota(per_dir, k))
            && checks.iter().all(Check::complete)
        {
            done = true;
            shared.done.fetch_add(1, Ordering::SeqCst);
        }
        if shared.done.load(Ordering::SeqCst) == 2 {
            break;
        }
        spins = spins.wrapping_add(1);
        if spins % 4096 == 0 {
            shared.check_deadline(|| {
                let got: Vec<u64> = checks
                    .iter()
                    .map(|c| c.stream.lock().map(|s| s.next).unwrap_or(0))
                    .collect();
                format!(
                    "{role:?} sent {sent:?} received {got:?} of {per_dir} each way; stats {:?}",
                    link.stats()
                )
            });
        }
        if progress {
            shared.moved();
        } else {
            std::thread::yield_now();
        }
    }
    SideReport {
        stats: link.stats(),
        max_held,
    }
}

fn assert_clean(stats: &LinkStats, who: &str) {
    assert_eq!(stats.rx_unknown_dst, 0, "{who}: {stats:?}");
    assert_eq!(stats.rx_malformed, 0, "{who}: {stats:?}");
    assert_eq!(stats.ns_malformed, 0, "{who}: {stats:?}");
    assert_eq!(stats.peer_violations, 0, "{who}: {stats:?}");
    assert_eq!(stats.last_violation, None, "{who}: {stats:?}");
    assert_eq!(stats.held, 0, "{who}: {stats:?}");
    assert_eq!(stats.sessions, 1, "{who}: {stats:?}");
}

/// Runs `per_dir` messages each way between a driver and a device thread over `geo`.
/// Once on coherent memory, once on the cache model (stale lines keep their old bytes: with a
/// thread per core, a line may be written back between one core's invalidation and its read).
fn stress<const N: usize>(name: &str, geo: Geometry, per_dir: u64, device_first: bool) {
    for (geo, mem) in Memory::both(&geo, Stale::Keep) {
        // The model costs 3x to 15x the time per message: past the index wrap is enough there.
        let per_dir = if mem.cached() {
            per_dir.min(100_000)
        } else {
            per_dir
        };
        stress_on::<N>(
            &format!("{name} on {mem:?}"),
            &geo,
            &mem,
            per_dir,
            device_first,
        );
    }
}

fn stress_on<const N: usize>(
    name: &str,
    geo: &Geometry,
    mem: &Memory,
    per_dir: u64,
    device_first: bool,
) {
    let _serial = serial();
    let shared = Shared::new(HANG_GUARD);
    let t0 = Instant::now();
    let (drv, dev) = std::thread::scope(|s| {
        let shared = &shared;
        let d =
            s.spawn(move || run_side::<N>(geo, mem, Role::Driver, shared, per_dir, device_first));
        let v =
            s.spawn(move || run_side::<N>(geo, mem, Role::Device, shared, per_dir, !device_first));
        (d.join(), v.join())
    });
    let elapsed = t0.elapsed();
    if let Some(f) = shared
        .failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        panic!("{name}: {f}");
    }
    let (drv, dev) = match (drv, dev) {
        (Ok(d), Ok(v)) => (d, v),
        (Err(p), _) | (_, Err(p)) => std::panic::resume_unwind(p),
    };
    let rate = 2.0 * per_dir as f64 / elapsed.as_secs_f64();
    eprintln!(
        "{name}: {per_dir} messages each way in {elapsed:.2?} ({rate:.0} messages/s in total); \
         most zero-copy buffers held at once: driver {}, device {}",
        drv.max_held, dev.max_held
    );

    let expect = u32::try_from(per_dir).expect("fits");
    assert_eq!(drv.stats.tx_messages, expect, "driver {:?}", drv.stats);
    assert_eq!(dev.stats.rx_messages, expect, "device {:?}", dev.stats);
    assert_eq!(dev.stats.tx_messages, expect, "device {:?}", dev.stats);
    assert_eq!(drv.stats.rx_messages, expect, "driver {:?}", drv.stats);
    assert_clean(&drv.stats, "driver");
    assert_clean(&dev.stats, "device");

    // Past the 16-bit index wrap-around, on both rings and both index kinds.
    assert!(per_dir > 65_536, "too short to wrap the ring indices");
    let [r0, r1] = geo.rings();
    let wrapped = per_dir as u16;
    // Each index as the core that writes it sees it.
    let (driver, device) = (mem.region(Role::Driver), mem.region(Role::Device));
    assert_eq!(r1.avail_idx(&driver).unwrap(), wrapped, "vring 1 avail.idx");
    assert_eq!(r1.used_idx(&device).unwrap(), wrapped, "vring 1 used.idx");
    assert_eq!(r0.used_idx(&device).unwrap(), wrapped, "vring 0 used.idx");
    assert_eq!(
        r0.avail_idx(&driver).unwrap(),
        wrapped.wrapping_add(geo.num()),
        "vring 0 avail.idx: the initial buffers plus one return per message"
    );
}

#[test]
fn stress_lite_16_buffers_both_ways() {
    stress::<16>(
        "lite 16x496",
        Geometry::lite(LiteConfig::new(16, 496, 16)),
        long_run(),
        false,
    );
}

#[test]
fn stress_lite_default_2_buffers_device_starts_first() {
    stress::<2>(
        "lite default (2 buffers)",
        Geometry::lite(LiteConfig::DEFAULT),
        short_run(),
        true,
    );
}

#[test]
fn stress_rsc_256_entries_align_4096_driver_places_rings() {
    stress::<256>(
        "rsc num 256 align 4096 FW_RSC_ADDR_ANY",
        Geometry::rsc(256, 4096, false, 0),
        long_run(),
        true,
    );
}

#[test]
fn stress_rsc_16_entries_fixed_addresses_translated() {
    stress::<16>(
        "rsc num 16 align 16 fixed da, base 0x8000_0000",
        Geometry::rsc(16, 16, true, 0x8000_0000),
        short_run(),
        false,
    );
}

#[test]
fn stress_lite_translated_addresses() {
    stress::<16>(
        "lite 16x496 align 4096, base 0x8000_0000",
        Geometry::lite(LiteConfig::new(16, 496, 4096)).with_base(0x8000_0000),
        short_run(),
        true,
    );
}

// ---------------------------------------------------------------------------------------------
// One feature at a time, both links polled from one thread.

fn geometries() -> [Geometry; 2] {
    [
        Geometry::lite(LiteConfig::new(16, 496, 16)),
        Geometry::rsc(16, 16, false, 0x8000_0000),
    ]
}

fn bring_up(drv: &TestLink<'_, 16>, dev: &TestLink<'_, 16>) {
    dev.start().unwrap();
    drv.start().unwrap();
    dev.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();
    assert!(drv.is_up() && dev.is_up());
}

/// Polls both sides until neither has anything left to take.
fn pump(a: &TestLink<'_, 16>, b: &TestLink<'_, 16>) {
    for _ in 0..64 {
        if a.poll().unwrap() + b.poll().unwrap() == 0 {
            return;
        }
    }
    panic!("the links keep finding work");
}

/// Runs `f` with a started driver and device (16 entries per ring) in each geometry.
/// In each, both on coherent memory and on the non-coherent cache model (stale lines read as
/// poison: these tests run both cores in one thread).
fn each_geometry(mut f: impl FnMut(&Geometry, &Memory)) {
    for geo in geometries() {
        for (geo, mem) in Memory::both(&geo, Stale::Poison) {
            eprintln!("{geo:?} on {mem:?}");
            f(&geo, &mem);
            if let Some(s) = mem.cache_stats() {
                assert!(s.written_back > 0 && s.invalidated > 0, "{s:?}");
            }
        }
    }
}

#[test]
fn zero_copy_both_ways() {
    each_geometry(|geo, mem| {
        let drv: TestLink<'_, 16> = mem.link(geo, Role::Driver);
        let dev: TestLink<'_, 16> = mem.link(geo, Role::Device);
        let d_ep = drv
            .create_endpoint(EndpointConfig::new().addr(0x400).dst(0x500).queue(8))
            .unwrap();
        let v_ep = dev
            .create_endpoint(EndpointConfig::new().addr(0x500).dst(0x400).queue(8))
            .unwrap();
        bring_up(&drv, &dev);

        let sides: [(&Endpoint<'_>, &Endpoint<'_>, &TestLink<'_, 16>, &str); 2] = [
            (&d_ep, &v_ep, &dev, "driver to device"),
            (&v_ep, &d_ep, &drv, "device to driver"),
        ];
        for (tx_ep, rx_ep, rx_link, dir) in sides {
            // Every buffer can be taken, and one dropped unsent goes back to the pool.
            let all: Vec<TxBuffer<'_>> =
                std::iter::from_fn(|| tx_ep.alloc_tx(Timeout::NoWait).ok())
                    .take(100)
                    .collect();
            assert_eq!(all.len(), 16, "{dir}: one buffer per ring entry");
            assert!(matches!(
                tx_ep.alloc_tx(Timeout::NoWait),
                Err(Error::NoBuffer)
            ));
            drop(all);

            let mut bufs: Vec<TxBuffer<'_>> = (0..3)
                .map(|_| tx_ep.alloc_tx(Timeout::NoWait).unwrap())
                .collect();
            for (i, b) in bufs.iter_mut().enumerate() {
                assert_eq!(b.capacity(), 496, "{dir}");
                b.write(0, &[i as u8 + 1; 300]).unwrap();
                b.write(300, &[0xEE; 196]).unwrap();
                let mut back = [0u8; 4];
                b.read(298, &mut back).unwrap();
                assert_eq!(back, [i as u8 + 1, i as u8 + 1, 0xEE, 0xEE]);
                assert!(matches!(
                    b.write(490, &[0; 7]),
                    Err(Error::PayloadTooLarge { len: 497, max: 496 })
                ));
            }
            // A failed send hands the buffer back; sending it again works.
            let first = bufs.remove(0);
            let err = first.send(497).unwrap_err();
            assert!(matches!(err.error, Error::PayloadTooLarge { .. }), "{dir}");
            err.into_inner().send(300).unwrap();
            for b in bufs {
                b.send_to(rx_ep.addr(), 496).unwrap();
            }
            pump(&drv, &dev);

            // Hold all three at once, zero-copy, then drop them.
            let held: Vec<RxBuffer<'_>> = (0..3)
                .map(|_| rx_ep.recv_zero_copy(Timeout::NoWait).unwrap())
                .collect();
            assert!(matches!(
                rx_ep.recv_zero_copy(Timeout::NoWait),
                Err(Error::NoBuffer)
            ));
            assert_eq!(rx_link.stats().held, 3, "{dir}");
            for (i, m) in held.iter().enumerate() {
                assert_eq!(m.src(), tx_ep.addr(), "{dir}");
                assert_eq!(m.dst(), rx_ep.addr(), "{dir}");
                assert_eq!(m.len(), if i == 0 { 300 } else { 496 }, "{dir}");
                let mut data = vec![0u8; m.len()];
                m.read(0, &mut data).unwrap();
                assert!(data[..300].iter().all(|&b| b == i as u8 + 1), "{dir}");
                assert!(data[300..].iter().all(|&b| b == 0xEE), "{dir}");
                assert!(m.read(m.len(), &mut [0]).is_err());
            }
            drop(held);
            assert_eq!(rx_link.stats().held, 0, "{dir}");
            pump(&drv, &dev);
        }
        for s in [drv.stats(), dev.stats()] {
            assert_eq!((s.tx_messages, s.rx_messages), (3, 3), "{s:?}");
            assert_clean(&s, "zero copy");
        }
    });
}

#[test]
fn callback_keeps_buffers_with_into_held_until_released() {
    each_geometry(|geo, mem| {
        let kept: Mutex<Vec<HeldRx>> = Mutex::new(Vec::new());
        let keep = |msg: RxBuffer<'_>| kept.lock().unwrap().push(msg.into_held());
        let drv: TestLink<'_, 16> = mem.link(geo, Role::Driver);
        let dev: TestLink<'_, 16> = mem.link(geo, Role::Device);
        let d_ep = drv
            .create_endpoint(EndpointConfig::new().dst(0x500))
            .unwrap();
        dev.create_endpoint(EndpointConfig::new().addr(0x500).callback(&keep))
            .unwrap();
        bring_up(&drv, &dev);

        // The device keeps all 16 buffers: the driver runs out and stays out.
        for i in 0..16u8 {
            d_ep.try_send(&[i; 40]).unwrap();
        }
        pump(&drv, &dev);
        assert_eq!(kept.lock().unwrap().len(), 16);
        assert_eq!(dev.stats().held, 16);
        assert!(matches!(d_ep.try_send(b"more"), Err(Error::NoBuffer)));
        pump(&drv, &dev);
        assert!(matches!(d_ep.try_send(b"more"), Err(Error::NoBuffer)));

        // A held message can be read again later.
        let mut tokens = std::mem::take(&mut *kept.lock().unwrap());
        let third = dev
            .resume_held(tokens.remove(3))
            .unwrap()
            .expect("same session");
        let mut data = [0u8; 40];
        third.read(0, &mut data).unwrap();
        assert_eq!((data, third.src()), ([3u8; 40], d_ep.addr()));
        drop(third);
        assert_eq!(dev.stats().held, 15);
        d_ep.try_send(b"one buffer back").unwrap();
        assert!(matches!(d_ep.try_send(b"more"), Err(Error::NoBuffer)));
        pump(&drv, &dev);

        // Released later, all of them go back to the driver.
        for t in tokens {
            dev.release_held(t).unwrap();
        }
        assert_eq!(
            dev.stats().held,
            1,
            "the message sent after the first release"
        );
        for t in std::mem::take(&mut *kept.lock().unwrap()) {
            dev.release_held(t).unwrap();
        }
        assert_eq!(dev.stats().held, 0);
        for i in 0..16u8 {
            d_ep.try_send(&[i; 8]).unwrap();
        }
        pump(&drv, &dev);
        assert_eq!(kept.lock().unwrap().len(), 16);
        for t in std::mem::take(&mut *kept.lock().unwrap()) {
            dev.release_held(t).unwrap();
        }
        assert_eq!(dev.stats().rx_messages, 33);
        assert_clean(&dev.stats(), "device");
    });
}

#[test]
fn full_queue_backpressures_the_sender_without_loss() {
    let _serial = serial();
    const MESSAGES: u64 = 20_000;
    for (geo, mem) in geometries()
        .into_iter()
        .flat_map(|g| Memory::both(&g, Stale::Keep))
    {
        let started = AtomicBool::new(false);
        let (drv, dev) = std::thread::scope(|s| {
            let (geo, started, mem) = (&geo, &started, &mem);
            let sender = s.spawn(move || {
                let drv: TestLink<'_, 16> = mem.link(geo, Role::Driver);
                let ep = drv
                    .create_endpoint(EndpointConfig::new().addr(0x400).dst(0x500))
                    .unwrap();
                while !started.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                drv.start().unwrap();
                let mut buf = [0u8; MAX_PAYLOAD];
                for seq in 0..MESSAGES {
                    let len = fill_payload(7, seq, &mut buf);
                    // Blocks for a buffer while the reader is behind.
                    ep.send(&buf[..len]).unwrap();
                }
                // Wait until the reader has returned every buffer.
                let all = std::iter::from_fn(|| ep.alloc_tx(Timeout::After(5 * SECOND)).ok())
                    .take(16)
                    .count();
                assert_eq!(all, 16);
                drv.stats()
            });
            let reader = s.spawn(move || {
                let dev: TestLink<'_, 16> = mem.link(geo, Role::Device);
                let ep = dev
                    .create_endpoint(EndpointConfig::new().addr(0x500).queue(1))
                    .unwrap();
                dev.start().unwrap();
                started.store(true, Ordering::SeqCst);
                dev.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();
                let mut buf = [0u8; MAX_PAYLOAD];
                for seq in 0..MESSAGES {
                    assert!(ep.pending().unwrap() <= 1, "queue depth 1");
                    let (n, src) = ep.recv(&mut buf, Timeout::After(HANG_GUARD)).unwrap();
                    assert_eq!(src, 0x400);
                    if let Err(e) = check_payload(7, seq, &buf[..n]) {
                        panic!("{e}");
                    }
                    if seq % 1000 == 0 {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                assert!(matches!(
                    ep.recv(&mut buf, Timeout::NoWait),
                    Err(Error::NoBuffer)
                ));
                // Keep returning buffers until the sender has them all.
                let t = Instant::now();
                while dev.stats().held != 0 || t.elapsed() < Duration::from_millis(50) {
                    dev.poll().unwrap();
                    std::thread::yield_now();
                }
                dev.stats()
            });
            (sender.join().unwrap(), reader.join().unwrap())
        });
        let n = MESSAGES as u32;
        assert_eq!((drv.tx_messages, dev.rx_messages), (n, n));
        assert!(
            dev.backpressure > 0,
            "the slow reader never held the ring back: {dev:?}"
        );
        assert_clean(&dev, "device");
        assert_clean(&drv, "driver");
    }
}

type Ns = NsQueue<CriticalSectionRawMutex, 8>;

fn announced(q: &Ns) -> Vec<(String, u32, NsKind)> {
    std::iter::from_fn(|| q.pop())
        .map(|a: Announcement| (a.name.as_str().unwrap_or("?").to_owned(), a.addr, a.kind))
        .collect()
}

#[test]
fn name_service_binds_both_directions() {
    each_geometry(|geo, mem| {
        let (drv_q, dev_q) = (Ns::new(), Ns::new());
        let drv: TestLink<'_, 16> = mem.link(geo, Role::Driver);
        let dev: TestLink<'_, 16> = mem.link(geo, Role::Device);
        drv.set_ns_handler(&drv_q).unwrap();
        dev.set_ns_handler(&dev_q).unwrap();
        // Created before link-up: announced when it comes up.
        let host = drv
            .create_endpoint(
                EndpointConfig::new()
                    .name("svc-host")
                    .unwrap()
                    .announce(true),
            )
            .unwrap();
        let remote = dev
            .create_endpoint(
                EndpointConfig::new()
                    .addr(0x40)
                    .name("svc-remote")
                    .unwrap()
                    .announce(true),
            )
            .unwrap();
        let wants_host = dev
            .create_endpoint(EndpointConfig::new().addr(0x41).name("svc-host").unwrap())
            .unwrap();
        let wants_remote = drv
            .create_endpoint(EndpointConfig::new().name("svc-remote").unwrap())
            .unwrap();
        assert_eq!(wants_host.dst().unwrap(), None);
        bring_up(&drv, &dev);
        pump(&drv, &dev);
        assert!(drv.name_service() && dev.name_service());

        assert_eq!(
            wants_host.dst().unwrap(),
            Some(host.addr()),
            "bound by name"
        );
        assert_eq!(
            wants_remote.dst().unwrap(),
            Some(remote.addr()),
            "bound by name"
        );
        assert_eq!(
            announced(&drv_q),
            [],
            "bound announcements do not reach the handler"
        );
        assert_eq!(announced(&dev_q), []);

        // Bound endpoints talk without ever being told an address.
        wants_host.send(b"to host").unwrap();
        wants_remote.send(b"to remote").unwrap();
        pump(&drv, &dev);
        let mut buf = [0u8; 32];
        assert_eq!(
            host.recv(&mut buf, Timeout::NoWait).unwrap(),
            (7, wants_host.addr())
        );
        assert_eq!(
            remote.recv(&mut buf, Timeout::NoWait).unwrap(),
            (9, wants_remote.addr())
        );
        // The announcing endpoints learnt their peers from the first message.
        assert_eq!(host.dst().unwrap(), Some(wants_host.addr()));
        assert_eq!(remote.dst().unwrap(), Some(wants_remote.addr()));

        // Created while up, with nobody waiting for the name: the handler gets it.
        let orphan = drv
            .create_endpoint(EndpointConfig::new().name("orphan").unwrap().announce(true))
            .unwrap();
        dev.ns_announce("by-hand", 0x77, NsKind::Create, Timeout::NoWait)
            .unwrap();
        pump(&drv, &dev);
        assert_eq!(
            announced(&dev_q),
            [("orphan".to_owned(), orphan.addr(), NsKind::Create)]
        );
        assert_eq!(
            announced(&drv_q),
            [("by-hand".to_owned(), 0x77, NsKind::Create)]
        );

        // Destroying announces DESTROY: the handler sees the orphan go, a bound endpoint is
        // unbound.
        orphan.destroy().unwrap();
        host.destroy().unwrap();
        assert!(matches!(host.destroy(), Err(Error::EndpointDestroyed)));
        pump(&drv, &dev);
        assert_eq!(
            announced(&dev_q),
            [("orphan".to_owned(), orphan.addr(), NsKind::Destroy)]
        );
        assert_eq!(wants_host.dst().unwrap(), None, "unbound by the DESTROY");
        assert!(matches!(
            wants_host.send(b"x"),
            Err(Error::InvalidAddress(_))
        ));
        let (d, v) = (drv.stats(), dev.stats());
        assert_eq!(d.ns_received, 2, "{d:?}");
        assert_eq!(v.ns_received, 4, "{v:?}");
        assert_clean(&d, "driver");
        assert_clean(&v, "device");
    });
}

/// Every call a shut-down link offers fails with `LinkDown`.
fn assert_all_down(link: &TestLink<'_, 16>, ep: &Endpoint<'_>) {
    let mut buf = [0u8; 16];
    assert!(!link.is_up());
    assert_eq!(link.poll().unwrap_err(), Error::LinkDown, "poll");
    assert_eq!(link.shutdown().unwrap_err(), Error::LinkDown, "shutdown");
    assert_eq!(link.start().unwrap_err(), Error::LinkDown, "start");
    assert_eq!(
        link.wait_link_up(Timeout::NoWait).unwrap_err(),
        Error::LinkDown,
        "wait_link_up"
    );
    assert_eq!(
        link.create_endpoint(EndpointConfig::new()).unwrap_err(),
        Error::LinkDown,
        "create_endpoint"
    );
    assert_eq!(
        link.send_offchannel(ep.addr(), 0x99, b"x", Timeout::NoWait)
            .unwrap_err(),
        Error::LinkDown,
        "send_offchannel"
    );
    assert_eq!(
        link.ns_announce("late", ep.addr(), NsKind::Create, Timeout::NoWait)
            .unwrap_err(),
        Error::LinkDown,
        "ns_announce"
    );
    assert_eq!(
        ep.try_send_to(0x99, b"x").unwrap_err(),
        Error::LinkDown,
        "try_send_to"
    );
    assert_eq!(
        ep.send_to_timeout(0x99, b"x", Timeout::After(SECOND / 100))
            .unwrap_err(),
        Error::LinkDown,
        "send_to_timeout"
    );
    assert_eq!(
        ep.alloc_tx(Timeout::NoWait).unwrap_err(),
        Error::LinkDown,
        "alloc_tx"
    );
    assert_eq!(
        ep.recv(&mut buf, Timeout::NoWait).unwrap_err(),
        Error::LinkDown,
        "recv"
    );
    assert_eq!(
        ep.recv_zero_copy(Timeout::Forever).unwrap_err(),
        Error::LinkDown,
        "recv_zero_copy (forever ends too)"
    );
}

#[test]
fn driver_shutdown_reaches_the_device() {
    each_geometry(|geo, mem| {
        let dev_q = Ns::new();
        let drv: TestLink<'_, 16> = mem.link(geo, Role::Driver);
        let dev: TestLink<'_, 16> = mem.link(geo, Role::Device);
        dev.set_ns_handler(&dev_q).unwrap();
        let (svc, lone) = announce_svc_and_lone(&drv);
        let client = dev
            .create_endpoint(EndpointConfig::new().addr(0x41).name("svc").unwrap())
            .unwrap();
        bring_up(&drv, &dev);
        pump(&drv, &dev);
        assert_eq!(client.dst().unwrap(), Some(svc.addr()));
        assert_eq!(
            announced(&dev_q),
            [("lone".to_owned(), lone.addr(), NsKind::Create)]
        );
        client.send(b"queued, never read").unwrap();
        pump(&drv, &dev);

        // The device core keeps polling while the driver shuts down: with a resource table the
        // driver waits for it to take the DESTROYs before it resets the status byte.
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let (dev, stop) = (&dev, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    dev.poll().unwrap();
                    std::thread::yield_now();
                }
            });
            drv.shutdown().unwrap();
            stop.store(true, Ordering::SeqCst);
        });
        pump_one(&dev);
        assert_eq!(client.dst().unwrap(), None, "DESTROY unbinds the client");
        assert_eq!(
            announced(&dev_q),
            [("lone".to_owned(), lone.addr(), NsKind::Destroy)]
        );
        assert_all_down(&drv, &svc);

        match geo.status_offset() {
            None => {
                // RPMsg-Lite has no status byte: the device stays up.
                assert!(dev.is_up());
            }
            Some(status) => {
                assert_eq!(
                    mem.region(Role::Driver).read_u8(status).unwrap(),
                    0,
                    "status reset"
                );
                assert!(!dev.is_up(), "the device saw the reset");
                assert_eq!(
                    client.try_send(b"x").unwrap_err(),
                    Error::InvalidAddress(u32::MAX)
                );
                assert_eq!(
                    client.try_send_to(0x400, b"x").unwrap_err(),
                    Error::LinkDown,
                    "the session ended"
                );
                assert_eq!(
                    dev.wait_link_up(Timeout::NoWait).unwrap_err(),
                    Error::NotReady
                );

                // A new driver session brings the device back up.
                let drv2: TestLink<'_, 16> = mem.link(geo, Role::Driver);
                let again = drv2
                    .create_endpoint(EndpointConfig::new().name("svc").unwrap().announce(true))
                    .unwrap();
                drv2.start().unwrap();
                dev.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();
                pump(&drv2, &dev);
                assert_eq!(dev.stats().sessions, 2);
                assert_eq!(client.dst().unwrap(), Some(again.addr()), "bound again");
                client.send(b"new session").unwrap();
                pump(&drv2, &dev);
                let mut buf = [0u8; 16];
                assert_eq!(again.recv(&mut buf, Timeout::NoWait).unwrap(), (11, 0x41));
                assert_eq!(&buf[..11], b"new session");
            }
        }
    });
}

/// Polls one link until it has nothing left.
fn pump_one(link: &TestLink<'_, 16>) {
    while link.poll().unwrap() > 0 {}
}

#[test]
fn device_shutdown_reaches_the_driver() {
    each_geometry(|geo, mem| {
        let drv_q = Ns::new();
        let drv: TestLink<'_, 16> = mem.link(geo, Role::Driver);
        let dev: TestLink<'_, 16> = mem.link(geo, Role::Device);
        drv.set_ns_handler(&drv_q).unwrap();
        let (svc, lone) = announce_svc_and_lone(&dev);
        let client = drv
            .create_endpoint(EndpointConfig::new().name("svc").unwrap())
            .unwrap();
        bring_up(&drv, &dev);
        pump(&drv, &dev);
        assert_eq!(client.dst().unwrap(), Some(svc.addr()));
        assert_eq!(
            announced(&drv_q),
            [("lone".to_owned(), lone.addr(), NsKind::Create)]
        );

        dev.shutdown().unwrap();
        pump_one(&drv);
        assert_eq!(client.dst().unwrap(), None, "DESTROY unbinds the client");
        assert_eq!(
            announced(&drv_q),
            [("lone".to_owned(), lone.addr(), NsKind::Destroy)]
        );
        assert_all_down(&dev, &svc);
        assert!(drv.is_up(), "the driver side stays up");
        let d = drv.stats();
        assert_eq!(d.ns_received, 4, "{d:?}");
        assert_clean(&d, "driver");
    });
}
