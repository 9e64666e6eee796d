//! The async API under tokio's multi-thread runtime.
//!
//! Each "core" has an interrupt line: the other core's `Platform::notify` raises it, and an ISR
//! thread serves it by calling `Link::handle_notify`, which wakes the link's async waiters. No
//! one polls the links on a timer unless a test says so, so a waker that is not woken shows up
//! as a test that does not finish. The async side is the driver, on tokio tasks; the device is
//! driven from plain threads with the blocking API.

mod common;

use common::{Cores, Geometry};
use rpmsg::{Endpoint, EndpointConfig, Error, LiteConfig, Timeout};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::time::{sleep, timeout};

/// How long a wait that must succeed may take before the test calls it hung: minutes, so a
/// loaded machine never fails it (item 14); only a broken run waits this long.
const HANG_GUARD: Duration = Duration::from_secs(120);

const SECOND: Duration = Duration::from_secs(1);

/// Buffers per direction.
const BUFFERS: u16 = 16;

/// A driver and a device over RPMsg-Lite's layout with 16 buffers each way, in leaked memory
/// (tokio tasks are `'static`), with an ISR thread per core.
fn cores() -> Cores {
    Cores::new(&Geometry::lite(LiteConfig::new(BUFFERS, 496, 16)))
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
    let cores = cores();
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
    let cores = cores();
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
    let cores = cores();
    let (ep, source) = cores.endpoints(
        EndpointConfig::new().addr(0x400).queue(4),
        EndpointConfig::new().addr(0x30).dst(0x400),
    );
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

/// Sends `BUFFERS` messages, the sequence numbers from `*seq` on, each within a second.
async fn send_one_per_buffer(ep: &Endpoint<'_>, seq: &mut u32) {
    for _ in 0..BUFFERS {
        timeout(SECOND, ep.send_async(&seq.to_le_bytes()))
            .await
            .unwrap()
            .unwrap();
        *seq += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_future_dropped_while_waiting_for_a_buffer_leaks_none() {
    let cores = cores();
    // `sink` is a reader that reads only when told to: until then every buffer stays with the
    // device.
    let (ep, sink) = cores.endpoints(
        EndpointConfig::new().addr(0x400).dst(0x30),
        EndpointConfig::new().addr(0x30).queue(1),
    );
    cores.start();
    let (read_tx, read_rx) = std::sync::mpsc::channel::<usize>();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        let mut seqs = Vec::new();
        while let Ok(n) = read_rx.recv() {
            for _ in 0..n {
                let (len, _) = sink.recv(&mut buf, Timeout::After(HANG_GUARD)).unwrap();
                let seq = u32::from_le_bytes(buf[..len].try_into().unwrap());
                seqs.push(seq);
                done_tx.send(seq).unwrap();
            }
        }
        seqs
    });

    // Fill the ring: BUFFERS sends complete, the next one waits.
    let mut seq = 0u32;
    send_one_per_buffer(&ep, &mut seq).await;
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
    send_one_per_buffer(&ep, &mut seq).await;
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
    let cores = cores();
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
