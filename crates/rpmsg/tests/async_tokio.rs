//! The async API under tokio's multi-thread runtime.
//!
//! Each "core" has an interrupt line: the other core's `Platform::notify` raises it, and an ISR
//! thread serves it by calling `Link::handle_notify`, which wakes the link's async waiters. No
//! one polls the links on a timer unless a test says so, so a waker that is not woken shows up
//! as a test that does not finish. The async side is the driver, on tokio tasks; the device is
//! driven from plain threads with the blocking API.

use rpmsg::port::{LinearMap, StdEnvironment};
use rpmsg::testing::TestMemory;
use rpmsg::{
    Config, Endpoint, EndpointConfig, Error, Link, LiteConfig, Platform, Role, SharedRegion,
    Timeout,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::time::{sleep, timeout};

const SECOND: Duration = Duration::from_secs(1);

/// Buffers per direction.
const BUFFERS: u16 = 16;

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

/// One core's inter-processor interrupt: pending doorbells, one bit per notify id.
#[derive(Debug, Default)]
struct Irq {
    pending: Mutex<u32>,
    cv: Condvar,
}

impl Irq {
    fn raise(&self, id: u32) {
        assert!(id < 32, "notify id {id} does not fit the mock mailbox");
        *self.pending.lock().unwrap() |= 1 << id;
        self.cv.notify_one();
    }

    fn take(&self, limit: Duration) -> u32 {
        let g = self.pending.lock().unwrap();
        let (mut g, _) = self.cv.wait_timeout_while(g, limit, |p| *p == 0).unwrap();
        std::mem::take(&mut *g)
    }
}

/// A platform whose `notify` raises the other core's [`Irq`].
#[derive(Debug)]
struct Doorbell {
    map: LinearMap,
    peer: &'static Irq,
}

impl Platform for Doorbell {
    type Map = LinearMap;

    fn address_map(&self) -> &LinearMap {
        &self.map
    }

    fn notify(&self, id: u32) {
        self.peer.raise(id);
    }
}

type BellLink = Link<'static, Doorbell, StdEnvironment, 16, 8>;

/// A driver and a device over RPMsg-Lite's layout with 16 buffers each way, in leaked memory
/// (tokio tasks are `'static`), with an ISR thread per core.
struct Cores {
    drv: &'static BellLink,
    dev: &'static BellLink,
    irqs: &'static [Irq; 2],
    stop: &'static AtomicBool,
    isrs: Vec<JoinHandle<()>>,
}

impl Cores {
    fn new() -> Self {
        let lite = LiteConfig::new(BUFFERS, 496, 16);
        let region: SharedRegion<'static> =
            Box::leak(Box::new(TestMemory::new(lite.region_len()))).region();
        let irqs: &'static [Irq; 2] = leak([Irq::default(), Irq::default()]);
        let link = |role: Role, peer: &'static Irq| {
            let platform = Doorbell {
                map: LinearMap {
                    base: 0,
                    len: region.len(),
                },
                peer,
            };
            let cfg = Config::lite(role, lite);
            leak(Link::new(region, platform, StdEnvironment::new(), cfg).unwrap())
        };
        let drv = link(Role::Driver, &irqs[1]);
        let dev = link(Role::Device, &irqs[0]);
        let stop = leak(AtomicBool::new(false));
        let isrs = [(drv, &irqs[0]), (dev, &irqs[1])]
            .into_iter()
            .map(|(link, irq)| {
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        // The timeout only lets the thread see `stop`.
                        let ids = irq.take(Duration::from_millis(50));
                        for id in (0..32).filter(|id| ids & (1 << id) != 0) {
                            let _ = link.handle_notify(id);
                        }
                    }
                })
            })
            .collect();
        Self {
            drv,
            dev,
            irqs,
            stop,
            isrs,
        }
    }

    /// Starts both sides; the device learns of the driver from its first doorbell.
    fn start(&self) {
        self.dev.start().unwrap();
        self.drv.start().unwrap();
        self.dev.wait_link_up(Timeout::After(5 * SECOND)).unwrap();
    }
}

impl Drop for Cores {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for irq in self.irqs {
            irq.raise(31);
        }
        for h in self.isrs.drain(..) {
            let _ = h.join();
        }
    }
}

/// Runs a device endpoint that echoes every message back to its sender until the link goes
/// down.
fn echo(ep: Endpoint<'static>) -> JoinHandle<u32> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 496];
        let mut n = 0;
        loop {
            match ep.recv(&mut buf, Timeout::Forever) {
                Ok((len, src)) => ep.send_to(src, &buf[..len]).unwrap(),
                Err(Error::LinkDown) => return n,
                Err(e) => panic!("echo: {e}"),
            }
            n += 1;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_on_worker_threads_echo_through_send_async_and_recv_async() {
    const TASKS: u32 = 4;
    const ROUNDS: u32 = 1000;
    let cores = Cores::new();
    let server = cores
        .dev
        .create_endpoint(EndpointConfig::new().addr(0x30).queue(8))
        .unwrap();
    let echo = echo(server);
    cores.dev.start().unwrap();
    cores.drv.start().unwrap();
    cores.drv.wait_link_up_async().await.unwrap();
    timeout(5 * SECOND, cores.dev.wait_link_up_async())
        .await
        .expect("the doorbell told the device")
        .unwrap();

    let drv = cores.drv;
    let tasks: Vec<_> = (0..TASKS)
        .map(|k| {
            tokio::spawn(async move {
                let ep = drv
                    .create_endpoint(EndpointConfig::new().addr(0x400 + k).dst(0x30))
                    .unwrap();
                let mut buf = [0u8; 16];
                for seq in 0..ROUNDS {
                    let msg = ((k << 24) | seq).to_le_bytes();
                    ep.send_async(&msg).await.unwrap();
                    let (n, src) = if seq % 2 == 0 {
                        ep.recv_async(&mut buf).await.unwrap()
                    } else {
                        let m = ep.recv_zero_copy_async().await.unwrap();
                        (m.copy_to(&mut buf), m.src())
                    };
                    assert_eq!((&buf[..n], src), (&msg[..], 0x30), "task {k}, round {seq}");
                }
                ep.destroy().unwrap();
            })
        })
        .collect();
    for t in tasks {
        timeout(30 * SECOND, t).await.expect("a task hung").unwrap();
    }
    cores.dev.shutdown().unwrap();
    assert_eq!(echo.join().unwrap(), TASKS * ROUNDS);
    let s = cores.drv.stats();
    assert_eq!(
        (s.tx_messages, s.rx_messages),
        (TASKS * ROUNDS, TASKS * ROUNDS)
    );
    assert_eq!((s.rx_unknown_dst, s.held), (0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_link_up_async_times_out_then_follows_the_peer() {
    let cores = Cores::new();
    cores.dev.start().unwrap();
    // The peer never started: the executor's timer ends the wait, and dropping it is harmless.
    for _ in 0..3 {
        assert!(
            timeout(Duration::from_millis(20), cores.dev.wait_link_up_async())
                .await
                .is_err()
        );
    }
    let dev = cores.dev;
    let waiter = tokio::spawn(async move { dev.wait_link_up_async().await });
    sleep(Duration::from_millis(20)).await;
    assert!(!waiter.is_finished());
    let drv = cores.drv;
    std::thread::spawn(move || drv.start().unwrap())
        .join()
        .unwrap();
    timeout(5 * SECOND, waiter)
        .await
        .expect("woken by the driver's first doorbell")
        .unwrap()
        .unwrap();
    assert!(cores.dev.is_up());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_raced_against_a_short_sleep_loses_and_duplicates_nothing() {
    const MESSAGES: u32 = 3000;
    let cores = Cores::new();
    let ep = cores
        .drv
        .create_endpoint(EndpointConfig::new().addr(0x400).queue(4))
        .unwrap();
    let source = cores
        .dev
        .create_endpoint(EndpointConfig::new().addr(0x30).dst(0x400))
        .unwrap();
    cores.start();
    let sender = std::thread::spawn(move || {
        for seq in 0..MESSAGES {
            source.send(&seq.to_le_bytes()).unwrap();
            if seq % 25 == 0 {
                // Bursts and gaps, so the sleep wins some races and the receive others.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    let (mut next, mut cancelled, mut round) = (0u32, 0u32, 0u32);
    let mut buf = [0u8; 16];
    while next < MESSAGES {
        round += 1;
        let got = if round % 2 == 0 {
            let r = tokio::select! {
                r = ep.recv_async(&mut buf) => Some(r),
                () = sleep(Duration::from_micros(300)) => None,
            };
            r.map(|r| r.map(|(n, src)| (buf[..n].to_vec(), src)))
        } else {
            tokio::select! {
                r = ep.recv_zero_copy_async() => Some(r.map(|m| {
                    let mut v = vec![0; m.len()];
                    m.read(0, &mut v).unwrap();
                    (v, m.src())
                })),
                () = sleep(Duration::from_micros(300)) => None,
            }
        };
        match got {
            None => cancelled += 1,
            Some(r) => {
                let (data, src) = r.unwrap();
                assert_eq!(
                    (data, src),
                    (next.to_le_bytes().to_vec(), 0x30),
                    "lost or duplicated"
                );
                next += 1;
            }
        }
        assert!(round < 100 * MESSAGES, "no progress");
    }
    sender.join().unwrap();
    assert!(cancelled > 0, "the sleep never won: the test raced nothing");
    assert!(
        timeout(Duration::from_millis(20), ep.recv_async(&mut buf))
            .await
            .is_err(),
        "one more"
    );
    let s = cores.drv.stats();
    assert_eq!(s.rx_messages, MESSAGES);
    assert_eq!(
        (s.held, s.rx_unknown_dst, s.rx_malformed),
        (0, 0, 0),
        "{s:?}"
    );
    assert_eq!(ep.pending().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_future_dropped_while_waiting_for_a_buffer_leaks_none() {
    let cores = Cores::new();
    let ep = cores
        .drv
        .create_endpoint(EndpointConfig::new().addr(0x400).dst(0x30))
        .unwrap();
    // A reader that reads only when told to: until then every buffer stays with the device.
    let sink = cores
        .dev
        .create_endpoint(EndpointConfig::new().addr(0x30).queue(1))
        .unwrap();
    cores.start();
    let (read_tx, read_rx) = std::sync::mpsc::channel::<usize>();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        let mut seqs = Vec::new();
        while let Ok(n) = read_rx.recv() {
            for _ in 0..n {
                let (len, _) = sink.recv(&mut buf, Timeout::After(5 * SECOND)).unwrap();
                let seq = u32::from_le_bytes(buf[..len].try_into().unwrap());
                seqs.push(seq);
                done_tx.send(seq).unwrap();
            }
        }
        seqs
    });

    // Fill the ring: BUFFERS sends complete, the next one waits.
    let mut seq = 0u32;
    for _ in 0..BUFFERS {
        timeout(SECOND, ep.send_async(&seq.to_le_bytes()))
            .await
            .unwrap()
            .unwrap();
        seq += 1;
    }
    for _ in 0..20 {
        tokio::select! {
            _ = ep.send_async(b"never") => panic!("a buffer appeared"),
            () = sleep(Duration::from_millis(1)) => {}
        }
    }
    assert!(
        timeout(Duration::from_millis(20), ep.alloc_tx_async())
            .await
            .is_err()
    );

    // A waiting send is woken by a returned buffer, then dropped before it runs again.
    let mut waiting = Box::pin(ep.send_async(b"dropped after its wake-up"));
    assert!(
        timeout(Duration::from_millis(10), waiting.as_mut())
            .await
            .is_err()
    );
    read_tx.send(1).unwrap();
    assert_eq!(done_rx.recv().await, Some(0));
    let t = std::time::Instant::now();
    while ep.alloc_tx(Timeout::NoWait).is_err() {
        assert!(
            t.elapsed() < 5 * SECOND,
            "the returned buffer never reached the driver"
        );
        tokio::task::yield_now().await;
    }
    drop(waiting);

    // Drain the device: every buffer is usable again, none lost to the dropped futures.
    read_tx.send(usize::from(BUFFERS) - 1).unwrap();
    for want in 1..u32::from(BUFFERS) {
        assert_eq!(done_rx.recv().await, Some(want));
    }
    let mut all = Vec::new();
    for _ in 0..BUFFERS {
        all.push(
            timeout(SECOND, ep.alloc_tx_async())
                .await
                .expect("a buffer leaked")
                .unwrap(),
        );
    }
    assert_eq!(ep.alloc_tx(Timeout::NoWait).unwrap_err(), Error::NoBuffer);
    drop(all);
    // And they carry messages.
    for _ in 0..BUFFERS {
        timeout(SECOND, ep.send_async(&seq.to_le_bytes()))
            .await
            .unwrap()
            .unwrap();
        seq += 1;
    }
    read_tx.send(usize::from(BUFFERS)).unwrap();
    drop(read_tx);
    let seqs = reader.join().unwrap();
    assert_eq!(
        seqs,
        (0..seq).collect::<Vec<_>>(),
        "only the completed sends arrived"
    );
    assert_eq!(cores.drv.stats().tx_messages, seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_wakes_async_waiters_with_link_down() {
    let cores = Cores::new();
    let ep = cores
        .drv
        .create_endpoint(EndpointConfig::new().addr(0x400).dst(0x30))
        .unwrap();
    cores.start();
    let held: Vec<_> = std::iter::from_fn(|| ep.alloc_tx(Timeout::NoWait).ok()).collect();
    assert_eq!(held.len(), usize::from(BUFFERS));
    let receiver = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        ep.recv_async(&mut buf).await
    });
    let sender = tokio::spawn(async move { ep.send_async(b"x").await });
    sleep(Duration::from_millis(20)).await;
    assert!(!receiver.is_finished() && !sender.is_finished());

    cores.drv.shutdown().unwrap();
    let r = timeout(5 * SECOND, receiver)
        .await
        .expect("recv still waits");
    assert_eq!(r.unwrap().unwrap_err(), Error::LinkDown, "recv");
    let r = timeout(5 * SECOND, sender).await.expect("send still waits");
    assert_eq!(r.unwrap().unwrap_err(), Error::LinkDown, "send");
    drop(held);
    assert_eq!(
        cores.drv.wait_link_up_async().await.unwrap_err(),
        Error::LinkDown
    );
}
