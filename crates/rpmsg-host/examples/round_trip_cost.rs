//! The work of one round trip, without the cache-line transfers: a driver and a device link in
//! one thread over one shared file, busy-poll doorbell, 16-byte messages. Every receive finds
//! its message already there, so nothing spins: run it under
//! `valgrind --tool=callgrind` with two counts and divide the difference to get instructions per
//! round trip.
//!
//! ```text
//! cargo run --release -p rpmsg-host --example round_trip_cost -- 10000
//! ```

use rpmsg::{EndpointConfig, Timeout};
use rpmsg_host::{DoorbellMode, HostError, HostLink, Session, SessionOptions, Side};
use std::time::{Duration, Instant};

fn main() -> Result<(), HostError> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let path = SessionOptions::shm_path(&format!("rpmsg-rtcost-{}", std::process::id()));
    let mut opts = SessionOptions::new(&path, Side::Driver);
    opts.doorbell = Some(DoorbellMode::BusyPoll);
    opts.geometry.buffers = Some(16);
    let driver = Session::open(&opts)?;
    let device = Session::open(&SessionOptions::new(&path, Side::Device))?;
    let drv: HostLink<'_, 256, 8> = driver.link(driver.config()?)?;
    let dev: HostLink<'_, 256, 8> = device.link(device.config()?)?;
    dev.start()?;
    drv.start()?;
    dev.wait_link_up(Timeout::After(Duration::from_secs(1)))?;
    let a = drv.create_endpoint(EndpointConfig::new().addr(1024).queue(4))?;
    let b = dev.create_endpoint(EndpointConfig::new().addr(1025).queue(4))?;
    let msg = [7u8; 16];
    let mut buf = [0u8; 496];
    let t = Timeout::NoWait;
    let t0 = Instant::now();
    for _ in 0..n {
        a.send_to(1025, &msg)?;
        let (len, src) = b.recv(&mut buf, t)?;
        b.send_to(src, &buf[..len])?;
        a.recv(&mut buf, t)?;
    }
    let el = t0.elapsed();
    println!(
        "{n} round trips in one thread: {:.0} ns each (no cache-line transfers)",
        el.as_nanos() as f64 / n as f64
    );
    Ok(())
}
