//! The async API on embassy: the device side runs as embassy tasks, as remote firmware would,
//! on `embassy-executor`'s std platform with `embassy-time`'s std driver for timeouts; the
//! driver side is plain threads with the blocking API.
//!
//! `Executor::run` never returns, so each test runs its executor with `Executor::run_until` on
//! a thread of its own: the last task raises a `done` flag, the executor returns, and the test
//! thread, which waits for the tasks' report on a channel with a deadline, joins it. Each core
//! has an interrupt line served by an ISR thread that calls `Link::handle_notify`; nothing
//! polls the links on a timer, so a missed wake-up shows up as a test that times out.

mod common;

use common::{BellLink, Cores, Geometry, leak};
use embassy_executor::{Executor, Spawner};
use embassy_futures::select::{Either, select};
use embassy_time::{Duration as Ticks, Timer, with_timeout};
use rpmsg::{Endpoint, EndpointConfig, Error, LiteConfig, Timeout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a wait that must succeed may take before the test calls it hung: minutes, so a
/// loaded machine never fails it (item 14); only a broken run waits this long.
const HANG_GUARD: Duration = Duration::from_secs(120);

const SECOND: Duration = Duration::from_secs(1);

/// Buffers per direction.
const BUFFERS: usize = 16;

/// A driver and a device over RPMsg-Lite's layout with 16 buffers each way, in leaked memory
/// (embassy tasks take `'static` arguments), with an ISR thread per core.
fn cores() -> Cores {
    Cores::new(&Geometry::lite(LiteConfig::new(BUFFERS as u16, 496, 16)))
}

/// Runs an embassy executor on its own thread until `done` is raised.
fn executor_thread(
    init: impl FnOnce(Spawner) + Send + 'static,
    done: &'static AtomicBool,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let executor: &'static mut Executor = Box::leak(Box::new(Executor::new()));
        executor.run_until(init, || done.load(Ordering::Acquire));
    })
}

/// Joins the executor thread, which ends once `done` was raised.
fn join_executor(h: JoinHandle<()>) {
    let t = std::time::Instant::now();
    while !h.is_finished() {
        assert!(t.elapsed() < 5 * SECOND, "the executor did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
    h.join().expect("the executor thread panicked");
}

fn err(what: &str) -> impl Fn(Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The device's echo service: waits for link-up (first with a timeout that expires, because
/// the driver waits for `timed_out` before starting), then echoes `rounds` messages.
#[embassy_executor::task]
async fn echo_service(
    dev: &'static BellLink,
    ep: Endpoint<'static>,
    rounds: u32,
    timed_out: Sender<()>,
    report: Sender<Result<u32, String>>,
    done: &'static AtomicBool,
) {
    let r = async {
        if with_timeout(Ticks::from_millis(10), dev.wait_link_up_async())
            .await
            .is_ok()
        {
            return Err("up before the driver started".to_owned());
        }
        timed_out.send(()).map_err(|e| e.to_string())?;
        dev.wait_link_up_async().await.map_err(err("link up"))?;
        let mut buf = [0u8; 64];
        for round in 0..rounds {
            let (n, src) = if round % 2 == 0 {
                ep.recv_async(&mut buf).await.map_err(err("recv"))?
            } else {
                let m = ep.recv_zero_copy_async().await.map_err(err("recv"))?;
                (m.copy_to(&mut buf), m.src())
            };
            ep.send_to_async(src, &buf[..n])
                .await
                .map_err(err("send"))?;
        }
        Ok(rounds)
    }
    .await;
    let _ = report.send(r);
    done.store(true, Ordering::Release);
}

#[test]
fn device_tasks_wait_for_link_up_and_echo_on_the_embassy_executor() {
    const ROUNDS: u32 = 1000;
    let cores = cores();
    let ep = cores
        .dev
        .create_endpoint(EndpointConfig::new().addr(0x30).queue(4))
        .unwrap();
    cores.dev.start().unwrap();
    let (timed_out_tx, timed_out) = channel();
    let (report_tx, report) = channel();
    let done = leak(AtomicBool::new(false));
    let dev = cores.dev;
    let executor = executor_thread(
        move |spawner| {
            spawner.spawn(echo_service(dev, ep, ROUNDS, timed_out_tx, report_tx, done).unwrap());
        },
        done,
    );

    timed_out
        .recv_timeout(10 * SECOND)
        .expect("the device's first wait for link-up timed out");
    cores.drv.start().unwrap();
    let client = cores
        .drv
        .create_endpoint(EndpointConfig::new().addr(0x400).dst(0x30))
        .unwrap();
    let mut buf = [0u8; 64];
    for round in 0..ROUNDS {
        let msg = round.to_le_bytes();
        client.send(&msg).unwrap();
        let (n, src) = client.recv(&mut buf, Timeout::After(HANG_GUARD)).unwrap();
        assert_eq!((&buf[..n], src), (&msg[..], 0x30), "round {round}");
    }
    let echoed = report.recv_timeout(10 * SECOND).expect("no report");
    assert_eq!(echoed, Ok(ROUNDS));
    join_executor(executor);
    let s = cores.dev.stats();
    assert_eq!((s.rx_messages, s.tx_messages), (ROUNDS, ROUNDS));
    assert_eq!((s.held, s.rx_unknown_dst), (0, 0), "{s:?}");
}

/// What the racing task saw.
#[derive(Debug, PartialEq, Eq)]
struct Raced {
    received: u32,
    recv_cancelled: u32,
    sends_cancelled: u32,
    free_after: usize,
    held_after: u32,
}

/// Receives `messages` with every receive raced against a short timer, then races sends
/// against a timer while every buffer is taken, and counts the buffers afterwards.
#[embassy_executor::task]
async fn racer(
    dev: &'static BellLink,
    ep: Endpoint<'static>,
    messages: u32,
    report: Sender<Result<Raced, String>>,
    done: &'static AtomicBool,
) {
    let r = async {
        let (mut next, mut recv_cancelled) = (0u32, 0u32);
        let mut buf = [0u8; 16];
        let mut round = 0u32;
        while next < messages {
            round += 1;
            if round > 100 * messages {
                return Err(format!("no progress after message {next}"));
            }
            let got = if round % 2 == 0 {
                match select(ep.recv_async(&mut buf), Timer::after_micros(300)).await {
                    Either::First(r) => Some(r.map(|(n, src)| (buf[..n].to_vec(), src))),
                    Either::Second(()) => None,
                }
            } else {
                with_timeout(Ticks::from_micros(300), ep.recv_zero_copy_async())
                    .await
                    .ok()
                    .map(|r| r.map(|m| (m.copy_to(&mut buf), m.src())))
                    .map(|r| r.map(|(n, src)| (buf[..n].to_vec(), src)))
            };
            match got {
                None => recv_cancelled += 1,
                Some(r) => {
                    let (data, src) = r.map_err(err("recv"))?;
                    if (data.as_slice(), src) != (&next.to_le_bytes()[..], 0x400) {
                        return Err(format!("expected message {next}, got {data:?} from {src}"));
                    }
                    next += 1;
                }
            }
        }

        // Take every transmit buffer, then race sends that cannot get one.
        let held: Vec<_> = std::iter::from_fn(|| ep.alloc_tx(Timeout::NoWait).ok()).collect();
        let mut sends_cancelled = 0;
        for _ in 0..50 {
            match select(ep.send_to_async(0x400, b"x"), Timer::after_micros(200)).await {
                Either::First(r) => return Err(format!("a send went through: {r:?}")),
                Either::Second(()) => sends_cancelled += 1,
            }
        }
        if held.len() != BUFFERS {
            return Err(format!("only {} buffers were free", held.len()));
        }
        drop(held);
        let mut free = Vec::new();
        while let Ok(b) = with_timeout(Ticks::from_millis(50), ep.alloc_tx_async()).await {
            free.push(b.map_err(err("alloc"))?);
        }
        Ok(Raced {
            received: next,
            recv_cancelled,
            sends_cancelled,
            free_after: free.len(),
            held_after: dev.stats().held,
        })
    }
    .await;
    let _ = report.send(r);
    done.store(true, Ordering::Release);
}

#[test]
fn futures_dropped_by_select_and_with_timeout_lose_nothing_on_embassy() {
    const MESSAGES: u32 = 2000;
    let cores = cores();
    let (source, ep) = cores.endpoints(
        EndpointConfig::new().addr(0x400).dst(0x30),
        EndpointConfig::new().addr(0x30).queue(4),
    );
    cores.start();
    let (report_tx, report) = channel();
    let done = leak(AtomicBool::new(false));
    let dev = cores.dev;
    let executor = executor_thread(
        move |spawner| spawner.spawn(racer(dev, ep, MESSAGES, report_tx, done).unwrap()),
        done,
    );
    for seq in 0..MESSAGES {
        source.send(&seq.to_le_bytes()).unwrap();
        if seq % 25 == 0 {
            // Bursts and gaps, so the timer wins some races and the receive others.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let raced = report
        .recv_timeout(30 * SECOND)
        .expect("no report")
        .unwrap();
    join_executor(executor);
    assert!(raced.recv_cancelled > 0, "the timer never won: {raced:?}");
    assert_eq!(
        raced,
        Raced {
            received: MESSAGES,
            sends_cancelled: 50,
            free_after: BUFFERS,
            held_after: 0,
            ..raced
        }
    );
    let s = cores.dev.stats();
    assert_eq!(
        (s.rx_messages, s.rx_unknown_dst, s.held),
        (MESSAGES, 0, 0),
        "{s:?}"
    );
}
