//! Blocking use, the style of NXP's RTOS layer (`rpmsg_rtos_*`) and RPMsg-Lite's queue API
//! (`rpmsg_queue_*`): each endpoint keeps its messages in a bounded queue, and tasks block in
//! `recv` / `send` with a timeout while the link does the rest.
//!
//! Both "cores" run in this process over the `rpmsg::testing` helpers, each on its own thread
//! with `StdEnvironment` (a condition variable to sleep on, the std clock). The device runs an
//! echo service announced as "rpmsg-echo"; the driver binds to it by name, sends with copies
//! and zero-copy, and shuts the device down at the end, which wakes the service's blocked
//! receive with `Error::LinkDown`.
//!
//! ```text
//! cargo run -p rpmsg --example blocking --features test-utils
//! ```

use rpmsg::port::StdEnvironment;
use rpmsg::testing::{Loopback, TestMemory};
use rpmsg::{Config, Endpoint, EndpointConfig, Error, Link, LiteConfig, Role, Timeout};
use std::time::Duration;

/// The device's echo service: answers in capitals until the link goes down.
fn echo_service(ep: Endpoint<'_>) -> Result<u32, Error> {
    let mut buf = [0u8; 496];
    let mut answered = 0;
    loop {
        // rpmsg_queue_recv(.., RL_BLOCK): blocks until a message or the end of the link.
        let (n, src) = match ep.recv(&mut buf, Timeout::Forever) {
            Ok(m) => m,
            Err(Error::LinkDown) => return Ok(answered),
            Err(e) => return Err(e),
        };
        buf[..n].make_ascii_uppercase();
        // rpmsg_lite_send(.., RL_BLOCK): waits for a free buffer.
        ep.send_to_timeout(src, &buf[..n], Timeout::Forever)?;
        answered += 1;
    }
}

/// The driver's side of the conversation.
fn talk(driver: &Link<'_, Loopback, StdEnvironment, 8>, client: Endpoint<'_>) -> Result<(), Error> {
    let second = Timeout::After(Duration::from_secs(1));
    // Wait for the device's announcement to bind the client to the service.
    let t = std::time::Instant::now();
    let service = loop {
        if let Some(dst) = client.dst()? {
            break dst;
        }
        if t.elapsed() > Duration::from_secs(1) {
            return Err(Error::Timeout);
        }
        driver.poll()?;
        std::thread::sleep(Duration::from_millis(1));
    };

    let mut reply = [0u8; 496];
    for line in ["hello", "from", "the driver"] {
        // rpmsg_lite_send with a timeout, then rpmsg_queue_recv with one.
        client.send_to_timeout(service, line.as_bytes(), second)?;
        let (n, src) = client.recv(&mut reply, second)?;
        println!(
            "driver: {line:?} -> {:?} from {src}",
            String::from_utf8_lossy(&reply[..n])
        );
    }

    // Zero-copy both ways: rpmsg_lite_alloc_tx_buffer + rpmsg_lite_send_nocopy, then
    // rpmsg_queue_recv_nocopy + rpmsg_queue_nocopy_free.
    let mut tx = client.alloc_tx(second)?;
    let text = b"written in place";
    tx.write(0, text)?;
    tx.send(text.len()).map_err(|e| e.error)?;
    let msg = client.recv_zero_copy(second)?;
    let n = msg.copy_to(&mut reply);
    println!(
        "driver: zero-copy reply {:?}",
        String::from_utf8_lossy(&reply[..n])
    );
    drop(msg);
    Ok(())
}

fn main() -> Result<(), Error> {
    let second = Timeout::After(Duration::from_secs(1));
    let lite = LiteConfig::new(8, 496, 16);
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let new = |role| -> Result<Link<'_, Loopback, StdEnvironment, 8>, Error> {
        Link::new(
            region,
            Loopback::new(region),
            StdEnvironment::new(),
            Config::lite(role, lite),
        )
    };
    let (driver, device) = (new(Role::Driver)?, new(Role::Device)?);

    // rpmsg_queue_create + rpmsg_lite_create_ept(.., rpmsg_queue_rx_cb, q): a queue of 4.
    let service = device.create_endpoint(
        EndpointConfig::new()
            .name("rpmsg-echo")?
            .announce(true)
            .queue(4),
    )?;
    let client = driver.create_endpoint(EndpointConfig::new().name("rpmsg-echo")?.queue(4))?;

    std::thread::scope(|s| -> Result<(), Error> {
        let device = &device;
        let server = s.spawn(move || {
            // rpmsg_lite_remote_init + rpmsg_lite_wait_for_link_up(.., 1000)
            device.start()?;
            device.wait_link_up(second)?;
            echo_service(service)
        });
        // rpmsg_lite_master_init: the driver is up at once.
        let talked = driver.start().and_then(|()| talk(&driver, client));
        // rpmsg_lite_deinit on the device: its blocked service wakes with LinkDown (also when
        // talking failed, so that the thread ends).
        device.shutdown()?;
        let answered = server.join().expect("the service panicked")?;
        talked?;
        println!("device: answered {answered} messages, then saw the link go down");
        assert_eq!(answered, 4);
        Ok(())
    })?;
    driver.shutdown()
}
