//! The work of a one-way flood, without the cache-line transfers: a driver and a device link in
//! one thread over one shared file, busy-poll doorbell, 496-byte messages from the driver to a
//! callback endpoint of the device (`rpmsg bench`'s sink: the payload is copied out inside the
//! device's poll). The driver sends until every buffer is out, the device takes them all in
//! one poll, and so on: every step works on a full batch, as a flood does. Run it under
//! `valgrind --tool=callgrind` with two counts and divide the difference by the difference of
//! the counts to get instructions per message.
//!
//! ```text
//! cargo run --release -p rpmsg-host --example flood_cost -- 100000
//! ```

use rpmsg::{EndpointConfig, Error, RxBuffer, RxHandler, Timeout};
use rpmsg_host::{DoorbellMode, HostError, HostLink, Session, SessionOptions, Side};
use std::time::{Duration, Instant};

/// Copies each message out and counts it, as `rpmsg bench`'s sink does.
struct Sink {
    count: std::sync::atomic::AtomicU64,
}

impl RxHandler for Sink {
    fn on_message(&self, msg: RxBuffer<'_>) {
        let mut b = [0u8; 496];
        let n = msg.len().min(b.len());
        let _ = msg.read(0, &mut b[..n]);
        std::hint::black_box(&b);
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn main() -> Result<(), HostError> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    // Declared before the links: a callback endpoint borrows its handler for the link's life.
    let sink = Sink {
        count: std::sync::atomic::AtomicU64::new(0),
    };
    let path = SessionOptions::shm_path(&format!("rpmsg-floodcost-{}", std::process::id()));
    let mut opts = SessionOptions::new(&path, Side::Driver);
    opts.doorbell = Some(DoorbellMode::BusyPoll);
    opts.geometry.buffers = Some(64);
    let driver = Session::open(&opts)?;
    let device = Session::open(&SessionOptions::new(&path, Side::Device))?;
    let drv: HostLink<'_, 256, 8> = driver.link(driver.config()?)?;
    let dev: HostLink<'_, 256, 8> = device.link(device.config()?)?;
    dev.start()?;
    drv.start()?;
    dev.wait_link_up(Timeout::After(Duration::from_secs(1)))?;
    let a = drv.create_endpoint(EndpointConfig::new().addr(1024))?;
    dev.create_endpoint(EndpointConfig::new().addr(1025).callback(&sink))?;
    let msg = [7u8; 496];
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < n {
        match a.send_to_timeout(1025, &msg, Timeout::NoWait) {
            Ok(()) => sent += 1,
            Err(Error::NoBuffer) => {
                dev.poll()?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    dev.poll()?;
    let el = t0.elapsed();
    let got = sink.count.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(got, n, "every message reaches the sink");
    println!(
        "{n} messages of 496 bytes in one thread: {:.0} ns each (no cache-line transfers)",
        el.as_nanos() as f64 / n as f64
    );
    Ok(())
}
