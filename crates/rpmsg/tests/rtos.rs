//! The RTOS layer: link-up that synchronises, blocking receive and send with timeouts, bounded
//! per-endpoint queues that back-pressure the peer, and a shutdown that wakes every waiter.
//!
//! These environments drive the links here:
//!
//! * [`VirtualClock`]: a clock that only moves when a caller waits, so every timeout expires
//!   deterministically and without sleeping;
//! * `StdEnvironment` with a `common::Doorbell` platform (`common::Cores`): each "core" has an
//!   interrupt line served by an ISR thread that calls `Link::handle_notify`, as an RTOS port
//!   does;
//! * [`ObservableEnv`]: a condition-variable environment that counts its waiters, so a test
//!   knows a thread is blocked before it acts;
//! * `SpinEnvironment`, the bare-metal one, on a microsecond counter;
//!
//! and `testing::TestEnv` (busy-polling) for the four-by-100,000 stress run.

mod common;

use common::{Cores, Geometry, announce_svc_and_lone, join_within, leak, leaked_region};
use rpmsg::port::{CriticalSectionRawMutex, Instant, SpinEnvironment, StdEnvironment};
use rpmsg::testing::{Loopback, TestEnv, TestLink, TestMemory};
use rpmsg::{
    Config, Endpoint, EndpointConfig, Environment, Error, Link, LiteConfig, NsKind, NsQueue, Role,
    RxBuffer, SharedRegion, Timeout, TxBuffer,
};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long a wait that must succeed may take before the test calls it hung: minutes, so a
/// loaded machine never fails it (item 14); only a broken run waits this long.
const HANG_GUARD: Duration = Duration::from_secs(120);

const SECOND: Duration = Duration::from_secs(1);

/// The threaded tests: two at once on a 2-core machine would only measure the scheduler.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tasks hand endpoints and buffers to each other: all of them cross threads.
#[test]
fn links_endpoints_and_buffers_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Link<'static, Loopback, StdEnvironment, 16>>();
    send_sync::<Endpoint<'static>>();
    send_sync::<TxBuffer<'static>>();
    send_sync::<RxBuffer<'static>>();
}

// ---------------------------------------------------------------------------------------------
// A virtual clock.

/// An environment whose clock stands still until someone waits: `wait(deadline)` jumps to the
/// deadline. Nothing sleeps, so a 250 ms timeout takes microseconds and ends at exactly 250 ms.
#[derive(Debug, Default)]
struct VirtualClock {
    micros: AtomicU64,
    waits: AtomicU32,
}

impl VirtualClock {
    fn waits(&self) -> u32 {
        self.waits.load(Ordering::SeqCst)
    }
}

impl Environment for VirtualClock {
    type RawMutex = CriticalSectionRawMutex;

    fn now(&self) -> Instant {
        Instant(self.micros.load(Ordering::SeqCst))
    }

    fn wait(&self, deadline: Option<Instant>) {
        self.waits.fetch_add(1, Ordering::SeqCst);
        let d = deadline.expect("blocking calls always wait with a deadline (the poll interval)");
        self.micros.fetch_max(d.0, Ordering::SeqCst);
    }

    fn wake(&self) {}
}

type VirtualLink<'r, const N: usize> = Link<'r, Loopback, VirtualClock, N, 8>;

/// Poll interval of the virtual-clock links: not a divisor of the timeouts below, so the last
/// nap is cut short by the deadline.
const POLL: Duration = Duration::from_millis(7);

fn virtual_link<'r, const N: usize>(
    region: SharedRegion<'r>,
    mut cfg: Config,
) -> VirtualLink<'r, N> {
    cfg.poll_interval = POLL;
    Link::new(region, Loopback::new(region), VirtualClock::default(), cfg).unwrap()
}

/// Runs `call` with `Timeout::After(timeout)` and checks that it fails with `Error::Timeout`
/// after at least `timeout` and less than `timeout + POLL` of virtual time.
fn assert_times_out<T: std::fmt::Debug>(
    env: &VirtualClock,
    timeout: Duration,
    what: &str,
    call: impl FnOnce(Timeout) -> Result<T, Error>,
) {
    let start = env.now();
    let r = call(Timeout::After(timeout));
    let elapsed = Duration::from_micros(env.now().0 - start.0);
    assert_eq!(r.unwrap_err(), Error::Timeout, "{what}");
    assert!(
        elapsed >= timeout && elapsed < timeout + POLL,
        "{what}: timed out after {elapsed:?} of virtual time, asked for {timeout:?}"
    );
}

/// Runs `call` with `Timeout::NoWait` and checks that it fails with `empty` at once.
fn assert_no_wait<T: std::fmt::Debug>(
    env: &VirtualClock,
    empty: Error,
    what: &str,
    call: impl FnOnce(Timeout) -> Result<T, Error>,
) {
    let (start, waits) = (env.now(), env.waits());
    assert_eq!(call(Timeout::NoWait).unwrap_err(), empty, "{what}");
    assert_eq!(
        (env.now(), env.waits()),
        (start, waits),
        "{what}: NoWait waited"
    );
}

#[test]
fn wait_link_up_times_out_when_the_peer_never_starts() {
    let geos = [
        Geometry::lite(LiteConfig::DEFAULT),
        Geometry::rsc(16, 16, false, 0x8000_0000),
    ];
    for geo in geos {
        let mut mem = TestMemory::new(geo.region_len());
        let region = mem.region();
        geo.prepare(&region);
        let dev: VirtualLink<'_, 16> = virtual_link(region, geo.config(Role::Device));
        assert_eq!(
            dev.wait_link_up(Timeout::NoWait).unwrap_err(),
            Error::NotReady,
            "{geo:?}: not started"
        );
        dev.start().unwrap();
        let env = dev.environment();
        assert_no_wait(env, Error::NotReady, "wait_link_up", |t| {
            dev.wait_link_up(t)
        });
        assert_times_out(env, Duration::from_millis(250), "wait_link_up", |t| {
            dev.wait_link_up(t)
        });
        assert!(!dev.is_up());

        // The driver starts late: the same call now succeeds without waiting.
        let drv: VirtualLink<'_, 16> = virtual_link(region, geo.config(Role::Driver));
        drv.start().unwrap();
        drv.wait_link_up(Timeout::NoWait).unwrap();
        let waits = env.waits();
        dev.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();
        assert_eq!(env.waits(), waits, "{geo:?}: up on the first look");
    }
}

#[test]
fn every_blocking_call_times_out_on_a_virtual_clock() {
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let drv: VirtualLink<'_, 2> = virtual_link(region, Config::lite(Role::Driver, lite));
    let dev: VirtualLink<'_, 2> = virtual_link(region, Config::lite(Role::Device, lite));
    dev.start().unwrap();
    drv.start().unwrap();
    dev.poll().unwrap();
    assert!(dev.is_up() && drv.is_up());
    let d_ep = drv
        .create_endpoint(EndpointConfig::new().addr(0x400).dst(0x30))
        .unwrap();
    let v_ep = dev
        .create_endpoint(EndpointConfig::new().addr(0x30).dst(0x400))
        .unwrap();

    for (link, ep) in [(&drv, &d_ep), (&dev, &v_ep)] {
        let who = format!("{:?}", link.role());
        let env = link.environment();
        let mut buf = [0u8; 64];

        // Nothing queued.
        assert_no_wait(env, Error::NoBuffer, &who, |t| ep.recv(&mut buf, t));
        assert_no_wait(env, Error::NoBuffer, &who, |t| ep.recv_zero_copy(t));
        assert_times_out(env, Duration::from_millis(100), &who, |t| {
            ep.recv(&mut buf, t)
        });
        assert_times_out(env, Duration::from_millis(101), &who, |t| {
            ep.recv_zero_copy(t)
        });

        // No free buffer: hold both.
        let held: Vec<TxBuffer<'_>> = (0..2)
            .map(|_| ep.alloc_tx(Timeout::NoWait).unwrap())
            .collect();
        assert_no_wait(env, Error::NoBuffer, &who, |t| ep.alloc_tx(t));
        assert_no_wait(env, Error::NoBuffer, &who, |t| {
            ep.send_to_timeout(0x99, b"x", t)
        });
        assert_times_out(env, Duration::from_millis(50), &who, |t| ep.alloc_tx(t));
        assert_times_out(env, Duration::from_millis(333), &who, |t| {
            ep.send_to_timeout(0x99, b"x", t)
        });
        assert_times_out(env, Duration::from_millis(1), &who, |t| {
            link.send_offchannel(ep.addr(), 0x99, b"x", t)
        });
        drop(held);
        // The buffers came back: the same calls succeed at once.
        let waits = env.waits();
        drop(ep.alloc_tx(Timeout::After(HANG_GUARD)).unwrap());
        assert_eq!(
            env.waits(),
            waits,
            "{who}: a dropped TxBuffer is free again"
        );
    }
    assert_eq!(drv.stats().tx_messages + dev.stats().tx_messages, 0);
}

/// Bare metal: `SpinEnvironment` reads a microsecond counter (a SysTick or timer here played by
/// the std clock) and spins; blocking calls poll the rings while they wait.
#[test]
fn spin_environment_carries_a_super_loop_exchange_and_times_out() {
    let boot = std::time::Instant::now();
    let clock = move || boot.elapsed().as_micros() as u64;
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let new = |role| {
        let env = SpinEnvironment::new(clock);
        let l: Link<'_, _, _, 2> =
            Link::new(region, Loopback::new(region), env, Config::lite(role, lite)).unwrap();
        l
    };
    let (drv, dev) = (new(Role::Driver), new(Role::Device));
    let d_ep = drv
        .create_endpoint(EndpointConfig::new().addr(0x400).dst(30))
        .unwrap();
    let v_ep = dev.create_endpoint(EndpointConfig::new().addr(30)).unwrap();
    dev.start().unwrap();
    drv.start().unwrap();
    dev.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();
    let mut buf = [0u8; 16];
    for round in 0u32..100 {
        d_ep.send(&round.to_le_bytes()).unwrap();
        let (n, src) = v_ep.recv(&mut buf, Timeout::After(HANG_GUARD)).unwrap();
        v_ep.send_to(src, &buf[..n]).unwrap();
        let (n, _) = d_ep.recv(&mut buf, Timeout::After(HANG_GUARD)).unwrap();
        assert_eq!(&buf[..n], round.to_le_bytes());
    }
    let limit = Duration::from_millis(5);
    let start = clock();
    assert_eq!(
        v_ep.recv(&mut buf, Timeout::After(limit)).unwrap_err(),
        Error::Timeout
    );
    assert!(Duration::from_micros(clock() - start) >= limit);
}

// ---------------------------------------------------------------------------------------------
// An interrupt line per core, served by an ISR thread (`common::Cores`).

#[test]
fn wait_link_up_returns_once_the_peer_starts() {
    let _serial = serial();
    for geo in [
        Geometry::lite(LiteConfig::new(16, 496, 16)),
        Geometry::rsc(16, 16, true, 0x8000_0000),
    ] {
        let mut p = Cores::new(&geo);
        p.dev.start().unwrap();
        let dev = p.dev;
        let waiter = std::thread::spawn(move || dev.wait_link_up(Timeout::After(10 * SECOND)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            !waiter.is_finished(),
            "{geo:?}: up before the driver started"
        );
        p.drv.start().unwrap();
        join_within(waiter, 10 * SECOND, "wait_link_up").unwrap();
        assert!(p.dev.is_up() && p.drv.is_up());
        assert_eq!(p.dev.stats().sessions, 1);
        p.stop_isrs();
    }
}

#[test]
fn queue_of_depth_one_backpressures_100_messages_in_order() {
    let _serial = serial();
    const MESSAGES: u32 = 100;
    for geo in [
        Geometry::lite(LiteConfig::new(16, 496, 16)),
        Geometry::rsc(16, 16, false, 0x8000_0000),
    ] {
        let mut p = Cores::new(&geo);
        let reader = p
            .dev
            .create_endpoint(EndpointConfig::new().addr(0x500).queue(1))
            .unwrap();
        let writer = p
            .drv
            .create_endpoint(EndpointConfig::new().addr(0x400).dst(0x500))
            .unwrap();
        p.start();

        let sender = std::thread::spawn(move || {
            for seq in 0..MESSAGES {
                // Waits for a buffer while the reader is behind.
                writer.send(&seq.to_le_bytes())?;
            }
            Ok::<_, Error>(())
        });
        let mut buf = [0u8; 16];
        for seq in 0..MESSAGES {
            // A slow reader: the ISR keeps taking doorbells meanwhile.
            std::thread::sleep(Duration::from_millis(2));
            assert!(
                reader.pending().unwrap() <= 1,
                "a queue of depth 1 holds one message"
            );
            let (n, src) = reader.recv(&mut buf, Timeout::After(HANG_GUARD)).unwrap();
            assert_eq!(
                (&buf[..n], src),
                (&seq.to_le_bytes()[..], 0x400),
                "message {seq}"
            );
        }
        join_within(sender, 10 * SECOND, "sender").unwrap();
        assert_eq!(
            reader
                .recv(&mut buf, Timeout::After(Duration::from_millis(20)))
                .unwrap_err(),
            Error::Timeout,
            "nothing beyond the 100"
        );
        let (d, v) = (p.drv.stats(), p.dev.stats());
        assert_eq!((d.tx_messages, v.rx_messages), (MESSAGES, MESSAGES));
        assert!(
            v.backpressure > 0,
            "the slow reader never held the ring back: {v:?}"
        );
        assert_eq!(
            (v.rx_unknown_dst, v.rx_malformed, v.peer_violations, v.held),
            (0, 0, 0, 0),
            "no drops, nothing left held: {v:?}"
        );
        p.stop_isrs();
    }
}

// ---------------------------------------------------------------------------------------------
// Four senders, four receivers, 100,000 messages each.

#[test]
fn four_senders_and_four_queues_carry_100_000_messages_each_in_order() {
    let _serial = serial();
    const PER_ENDPOINT: u64 = 100_000;
    const K: usize = 4;
    let lite = LiteConfig::new(64, 496, 16);
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let drv: TestLink<'_, 64> = Link::new(
        region,
        Loopback::new(region),
        TestEnv::new(),
        Config::lite(Role::Driver, lite),
    )
    .unwrap();
    let dev: TestLink<'_, 64> = Link::new(
        region,
        Loopback::new(region),
        TestEnv::new(),
        Config::lite(Role::Device, lite),
    )
    .unwrap();
    let src = |k: usize| 0x400 + k as u32;
    let dst = |k: usize| 0x500 + k as u32;
    let senders: Vec<_> = (0..K)
        .map(|k| {
            drv.create_endpoint(EndpointConfig::new().addr(src(k)).dst(dst(k)))
                .unwrap()
        })
        .collect();
    let receivers: Vec<_> = (0..K)
        .map(|k| {
            dev.create_endpoint(EndpointConfig::new().addr(dst(k)).queue(16))
                .unwrap()
        })
        .collect();
    dev.start().unwrap();
    drv.start().unwrap();
    dev.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();

    let limit = Timeout::After(30 * SECOND);
    std::thread::scope(|s| {
        for (k, ep) in senders.iter().enumerate() {
            s.spawn(move || {
                for seq in 0..PER_ENDPOINT {
                    let mut msg = [k as u8; 12];
                    msg[..8].copy_from_slice(&seq.to_le_bytes());
                    // Each sender waits for buffers its own way; all share the 64 of the ring.
                    let r = match k {
                        0 => ep.send(&msg),
                        1 => ep.send_to_timeout(dst(k), &msg, limit),
                        2 => ep.alloc_tx(limit).and_then(|mut tx| {
                            tx.write(0, &msg)?;
                            tx.send(msg.len()).map_err(|e| e.error)
                        }),
                        _ => ep.send_to(dst(k), &msg),
                    };
                    if let Err(e) = r {
                        panic!("sender {k}, message {seq}: {e}");
                    }
                }
            });
        }
        for (k, ep) in receivers.iter().enumerate() {
            s.spawn(move || {
                let mut buf = [0u8; 32];
                for seq in 0..PER_ENDPOINT {
                    let (n, from) = if k % 2 == 0 {
                        ep.recv(&mut buf, limit)
                    } else {
                        ep.recv_zero_copy(limit)
                            .map(|m| (m.copy_to(&mut buf), m.src()))
                    }
                    .unwrap_or_else(|e| panic!("receiver {k}, message {seq}: {e}"));
                    let got = u64::from_le_bytes(buf[..8].try_into().unwrap());
                    assert_eq!(
                        (n, from, got, &buf[8..12]),
                        (12, src(k), seq, &[k as u8; 4][..]),
                        "receiver {k}: lost, duplicated or reordered"
                    );
                }
            });
        }
    });
    for ep in &receivers {
        assert_eq!(ep.pending().unwrap(), 0);
        assert_eq!(
            ep.recv_zero_copy(Timeout::NoWait).unwrap_err(),
            Error::NoBuffer
        );
    }
    let (d, v) = (drv.stats(), dev.stats());
    let total = (K as u64 * PER_ENDPOINT) as u32;
    assert_eq!((d.tx_messages, v.rx_messages), (total, total));
    assert_eq!(
        (v.rx_unknown_dst, v.rx_malformed, v.peer_violations, v.held),
        (0, 0, 0, 0),
        "{v:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Shutdown.

#[test]
fn driver_shutdown_wakes_the_devices_blocked_recv_and_send_with_link_down() {
    let _serial = serial();
    // The resource-table layout: the driver's shutdown resets the status byte.
    let geo = Geometry::rsc(16, 16, false, 0x8000_0000);
    let region = leaked_region(geo.region_len());
    geo.prepare(&region);
    let link = |role: Role| {
        let l: Link<'static, Loopback, StdEnvironment, 16> = Link::new(
            region,
            geo.platform(region),
            StdEnvironment::new(),
            geo.config(role),
        )
        .unwrap();
        leak(l)
    };
    let (drv, dev) = (link(Role::Driver), link(Role::Device));
    let ep = dev
        .create_endpoint(EndpointConfig::new().addr(0x41).dst(0x400))
        .unwrap();
    drv.create_endpoint(EndpointConfig::new().addr(0x400))
        .unwrap();
    dev.start().unwrap();
    drv.start().unwrap();
    dev.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();

    // Take every buffer the driver gave us, so a send has to wait.
    let held: Vec<_> = std::iter::from_fn(|| ep.alloc_tx(Timeout::NoWait).ok()).collect();
    assert_eq!(held.len(), 16);
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        ep.recv(&mut buf, Timeout::Forever)
    });
    let sender = std::thread::spawn(move || ep.send_to_timeout(0x400, b"x", Timeout::Forever));
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !receiver.is_finished() && !sender.is_finished(),
        "both wait"
    );

    drv.shutdown().unwrap();
    assert_eq!(
        join_within(receiver, 5 * SECOND, "recv").unwrap_err(),
        Error::LinkDown
    );
    assert_eq!(
        join_within(sender, 5 * SECOND, "send").unwrap_err(),
        Error::LinkDown
    );
    assert!(!dev.is_up());
    let mut buf = [0u8; 16];
    assert_eq!(
        ep.recv(&mut buf, Timeout::NoWait).unwrap_err(),
        Error::LinkDown
    );
    assert_eq!(ep.try_send(b"x").unwrap_err(), Error::LinkDown);
    assert_eq!(ep.alloc_tx(Timeout::Forever).unwrap_err(), Error::LinkDown);
    // Buffers of the ended session are dropped harmlessly.
    drop(held);
    assert_eq!(dev.stats().held, 0);
}

/// A condition-variable environment that counts the threads inside `wait`. A thread counted
/// there has read the wake-up generation under the same lock, so a `wake` after the count is
/// seen cannot be missed.
#[derive(Debug)]
struct ObservableEnv {
    start: std::time::Instant,
    state: Mutex<(u64, usize)>,
    cv: Condvar,
}

impl ObservableEnv {
    fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
            state: Mutex::new((0, 0)),
            cv: Condvar::new(),
        }
    }

    /// Waits until `n` threads are blocked in `wait`.
    fn until_waiting(&self, n: usize) {
        let t = std::time::Instant::now();
        while self.state.lock().unwrap().1 != n {
            assert!(t.elapsed() < 5 * SECOND, "{n} waiters never blocked");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Environment for ObservableEnv {
    type RawMutex = CriticalSectionRawMutex;

    fn now(&self) -> Instant {
        Instant(self.start.elapsed().as_micros() as u64)
    }

    fn wait(&self, deadline: Option<Instant>) {
        let mut g = self.state.lock().unwrap();
        let seen = g.0;
        let left = deadline.map_or(3600 * SECOND, |d| {
            Duration::from_micros(d.0.saturating_sub(self.now().0))
        });
        g.1 += 1;
        let (mut g, _) = self
            .cv
            .wait_timeout_while(g, left, |s| s.0 == seen)
            .unwrap();
        g.1 -= 1;
    }

    fn wake(&self) {
        self.state.lock().unwrap().0 += 1;
        self.cv.notify_all();
    }
}

#[test]
fn own_shutdown_wakes_blocked_callers_with_link_down() {
    let _serial = serial();
    let lite = LiteConfig::DEFAULT;
    for role in [Role::Driver, Role::Device] {
        let region = leaked_region(lite.region_len());
        let link = |r: Role| {
            let mut cfg = Config::lite(r, lite);
            // Blocked callers never look again on their own: only a wake-up ends their wait.
            cfg.poll_interval = 3600 * SECOND;
            let l: Link<'static, Loopback, ObservableEnv, 2> =
                Link::new(region, Loopback::new(region), ObservableEnv::new(), cfg).unwrap();
            leak(l)
        };
        let (drv, dev) = (link(Role::Driver), link(Role::Device));
        dev.start().unwrap();
        drv.start().unwrap();
        dev.poll().unwrap();
        assert!(dev.is_up() && drv.is_up());
        let me = if role == Role::Driver { drv } else { dev };
        let ep = me
            .create_endpoint(EndpointConfig::new().addr(0x77).dst(0x99))
            .unwrap();
        let held: Vec<_> = std::iter::from_fn(|| ep.alloc_tx(Timeout::NoWait).ok()).collect();
        assert_eq!(held.len(), 2);
        let receiver = std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            ep.recv(&mut buf, Timeout::Forever)
        });
        let sender = std::thread::spawn(move || ep.send_to_timeout(0x99, b"x", Timeout::Forever));
        me.environment().until_waiting(2);

        me.shutdown().unwrap();
        let what = format!("{role:?} recv");
        assert_eq!(
            join_within(receiver, 5 * SECOND, &what).unwrap_err(),
            Error::LinkDown
        );
        let what = format!("{role:?} send");
        assert_eq!(
            join_within(sender, 5 * SECOND, &what).unwrap_err(),
            Error::LinkDown
        );
        drop(held);
    }
}

#[test]
fn lite_driver_shutdown_reaches_the_device_only_as_name_service_destroys() {
    let lite = LiteConfig::new(16, 496, 16);
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let new = |role| -> TestLink<'_, 16> {
        Link::new(
            region,
            Loopback::new(region),
            TestEnv::new(),
            Config::lite(role, lite),
        )
        .unwrap()
    };
    let (drv, dev) = (new(Role::Driver), new(Role::Device));
    let others = NsQueue::<CriticalSectionRawMutex, 4>::new();
    dev.set_ns_handler(&others).unwrap();
    let (svc, lone) = announce_svc_and_lone(&drv);
    let client = dev
        .create_endpoint(EndpointConfig::new().addr(0x41).name("svc").unwrap())
        .unwrap();
    dev.start().unwrap();
    drv.start().unwrap();
    dev.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();
    while dev.poll().unwrap() > 0 {}
    assert_eq!(client.dst().unwrap(), Some(svc.addr()), "bound by name");
    assert_eq!(
        others.pop().map(|a| (a.addr, a.kind)),
        Some((lone.addr(), NsKind::Create))
    );

    drv.shutdown().unwrap();
    while dev.poll().unwrap() > 0 {}
    // What the device learns: a DESTROY per announced endpoint, nothing else.
    assert_eq!(
        client.dst().unwrap(),
        None,
        "the DESTROY unbound the client"
    );
    assert_eq!(
        others.pop().map(|a| (a.addr, a.kind)),
        Some((lone.addr(), NsKind::Destroy))
    );
    assert_eq!(others.pop(), None);
    assert_eq!(
        client.try_send(b"x").unwrap_err(),
        Error::InvalidAddress(u32::MAX)
    );
    // RPMsg-Lite has no status byte: the link stays up, a blocked receive runs to its timeout,
    // and sends go into the ring until the buffers the driver will never return run out.
    assert!(dev.is_up());
    dev.wait_link_up(Timeout::NoWait).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        client
            .recv(&mut buf, Timeout::After(Duration::from_millis(20)))
            .unwrap_err(),
        Error::Timeout
    );
    let sent = std::iter::from_fn(|| client.try_send_to(svc.addr(), b"lost").ok()).count();
    assert_eq!(sent, 16, "every receive buffer the driver posted");
    assert_eq!(
        client.try_send_to(svc.addr(), b"x").unwrap_err(),
        Error::NoBuffer
    );
}
