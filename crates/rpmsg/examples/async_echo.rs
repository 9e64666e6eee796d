//! Async use: `recv_async`, `recv_zero_copy_async`, `send_async`, `wait_link_up_async` on
//! tokio's multi-thread runtime. The core does not depend on tokio: the futures are woken by the
//! link, so the same code runs on embassy or any other executor.
//!
//! Both "cores" run in this process over the `rpmsg::testing` memory. Each core has a doorbell:
//! the other core's `Platform::notify` raises it, and an "interrupt" task serves it by calling
//! `Link::handle_notify`, which moves messages into endpoint queues and wakes the tasks waiting
//! on the link, as the doorbell ISR does on a chip. The device runs an echo service, the driver
//! a client; timeouts come from the executor (`tokio::time::timeout`), and every future can be
//! dropped while it waits without losing a message or a buffer.
//!
//! ```text
//! cargo run -p rpmsg --example async_echo --features test-utils
//! ```

use rpmsg::port::{LinearMap, StdEnvironment};
use rpmsg::testing::TestMemory;
use rpmsg::{
    Config, Endpoint, EndpointConfig, Error, Link, LiteConfig, Platform, Role, SharedRegion,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::timeout;

/// One core's doorbell: the notify ids rung and not yet served, and the interrupt line.
#[derive(Debug, Default)]
struct Doorbell {
    pending: AtomicU32,
    irq: Notify,
}

/// The platform of one core: ringing the other core's doorbell is its whole job here.
#[derive(Debug)]
struct Board {
    map: LinearMap,
    peer: &'static Doorbell,
}

impl Platform for Board {
    type Map = LinearMap;

    fn address_map(&self) -> &LinearMap {
        &self.map
    }

    fn notify(&self, id: u32) {
        self.peer.pending.fetch_or(1 << (id % 32), Ordering::AcqRel);
        self.peer.irq.notify_one();
    }
}

type AsyncLink = Link<'static, Board, StdEnvironment, 8>;

/// The "interrupt handler": serves the doorbell until the link goes down.
async fn interrupt(link: &'static AsyncLink, bell: &'static Doorbell) {
    loop {
        bell.irq.notified().await;
        let ids = bell.pending.swap(0, Ordering::AcqRel);
        for id in (0..32).filter(|id| ids & (1 << id) != 0) {
            if let Err(Error::LinkDown) = link.handle_notify(id) {
                return;
            }
        }
    }
}

/// The device's service: echoes every message back until the link goes down.
async fn echo(ep: Endpoint<'static>) -> Result<u32, Error> {
    let mut echoed = 0;
    loop {
        let msg = match ep.recv_zero_copy_async().await {
            Ok(m) => m,
            Err(Error::LinkDown) => return Ok(echoed),
            Err(e) => return Err(e),
        };
        let mut data = [0u8; 496];
        let n = msg.copy_to(&mut data);
        let src = msg.src();
        drop(msg); // the buffer goes back to the driver before we wait for one to answer with
        ep.send_to_async(src, &data[..n]).await?;
        echoed += 1;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    // Firmware would put these in `static`s; leaking them gives the same `'static` here.
    let lite = LiteConfig::new(8, 496, 16);
    let region: SharedRegion<'static> =
        Box::leak(Box::new(TestMemory::new(lite.region_len()))).region();
    let bells: &'static [Doorbell; 2] = Box::leak(Box::default());
    let link = |role: Role, peer: &'static Doorbell| -> Result<&'static AsyncLink, Error> {
        let map = LinearMap {
            base: 0,
            len: region.len(),
        };
        let board = Board { map, peer };
        let cfg = Config::lite(role, lite);
        Ok(Box::leak(Box::new(Link::new(
            region,
            board,
            StdEnvironment::new(),
            cfg,
        )?)))
    };
    // The driver rings the device's doorbell, and the other way round.
    let driver = link(Role::Driver, &bells[1])?;
    let device = link(Role::Device, &bells[0])?;
    tokio::spawn(interrupt(driver, &bells[0]));
    tokio::spawn(interrupt(device, &bells[1]));

    let service = device.create_endpoint(EndpointConfig::new().addr(30).queue(4))?;
    let server = tokio::spawn(echo(service));
    device.start()?;
    // Nobody started the driver yet: the executor's timer ends the wait, harmlessly.
    let early = timeout(Duration::from_millis(10), device.wait_link_up_async()).await;
    println!("device: link up after 10 ms? {}", early.is_ok());

    driver.start()?;
    device.wait_link_up_async().await?;
    println!("device: link up");

    let client = driver.create_endpoint(EndpointConfig::new().addr(1024).dst(30).queue(4))?;
    let mut buf = [0u8; 496];
    for round in 0..100u32 {
        let msg = format!("ping {round}");
        client.send_async(msg.as_bytes()).await?;
        let (n, src) = timeout(Duration::from_secs(1), client.recv_async(&mut buf))
            .await
            .map_err(|_| Error::Timeout)??;
        assert_eq!((&buf[..n], src), (msg.as_bytes(), 30));
        if round % 25 == 0 {
            println!("driver: {:?}", String::from_utf8_lossy(&buf[..n]));
        }
    }

    // The device shuts down: its service's pending receive ends with LinkDown.
    device.shutdown()?;
    let echoed = server.await.expect("the service panicked")?;
    println!("device: echoed {echoed} messages");
    assert_eq!(echoed, 100);
    driver.shutdown()
}
