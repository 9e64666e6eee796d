//! Callback receive, the native style of RPMsg-Lite (`rl_ept_rx_cb_t`) and OpenAMP
//! (`rpmsg_ept_cb`): the handler runs in the context that polls the link, the doorbell interrupt
//! on a real chip, reads the message in place, and either drops it (the buffer goes back to the
//! peer, `RL_RELEASE`) or keeps it with `RxBuffer::into_held` (`RL_HOLD`,
//! `rpmsg_hold_rx_buffer`) to finish outside the interrupt and give it back later with
//! `Link::release_held` (`rpmsg_release_rx_buffer`).
//!
//! Both "cores" run in this process over the `rpmsg::testing` helpers, and the main loop plays
//! the interrupt by calling `Link::poll`; on a chip the ISR calls `Link::handle_notify`.
//!
//! ```text
//! cargo run -p rpmsg --example callback --features test-utils
//! ```

use rpmsg::testing::{Loopback, TestEnv, TestMemory};
use rpmsg::{
    Announcement, Config, EndpointConfig, HeldRx, Link, LiteConfig, Role, RxBuffer, RxHandler,
    Timeout,
};
use std::sync::Mutex;

/// The device's handler: prints each message; keeps the ones that ask for it.
#[derive(Debug, Default)]
struct Handler {
    kept: Mutex<Vec<HeldRx>>,
}

impl RxHandler for Handler {
    fn on_message(&self, msg: RxBuffer<'_>) {
        let mut text = [0u8; 64];
        let n = msg.copy_to(&mut text);
        let text = String::from_utf8_lossy(&text[..n]);
        println!("device ISR: {text:?} from {}", msg.src());
        if text.starts_with("keep") {
            // RL_HOLD: the buffer stays ours, and away from the peer, until released.
            self.kept.lock().unwrap().push(msg.into_held());
        }
        // Otherwise `msg` drops here: RL_RELEASE.
    }
}

fn main() -> Result<(), rpmsg::Error> {
    // The handler and the announcement printer outlive the links that refer to them.
    let handler = Handler::default();
    let announcements = |a: &Announcement| {
        println!(
            "driver: service {:?} {:?} at {}",
            a.name.as_str().unwrap_or("?"),
            a.kind,
            a.addr
        );
    };

    let lite = LiteConfig::new(4, 496, 16);
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let driver: Link<'_, _, _, 4> = Link::new(
        region,
        Loopback::new(region),
        TestEnv::new(),
        Config::lite(Role::Driver, lite),
    )?;
    let device: Link<'_, _, _, 4> = Link::new(
        region,
        Loopback::new(region),
        TestEnv::new(),
        Config::lite(Role::Device, lite),
    )?;
    driver.set_ns_handler(&announcements)?;

    // rpmsg_lite_create_ept(dev, 30, rx_cb, data) plus rpmsg_ns_announce(.., "rpmsg-demo", ..).
    let service = device.create_endpoint(
        EndpointConfig::new()
            .addr(30)
            .name("rpmsg-demo")?
            .announce(true)
            .callback(&handler),
    )?;
    // A second service nobody on the driver waits for: its announcement goes to the handler.
    let _log = device.create_endpoint(EndpointConfig::new().name("rpmsg-log")?.announce(true))?;
    // A driver endpoint with the same name is bound to the service when it is announced.
    let client = driver.create_endpoint(EndpointConfig::new().name("rpmsg-demo")?.queue(4))?;

    device.start()?;
    driver.start()?;
    device.wait_link_up(Timeout::After(std::time::Duration::from_secs(1)))?;
    driver.poll()?; // the driver's "interrupt": takes the announcement
    assert_eq!(client.dst()?, Some(service.addr()), "bound by name");

    for text in ["hello", "keep me for later", "bye"] {
        client.send(text.as_bytes())?;
    }
    device.poll()?; // the device's "interrupt": runs the handler once per message

    // Outside the interrupt: finish the kept message, answer it, give the buffer back.
    let kept: Vec<HeldRx> = std::mem::take(&mut *handler.kept.lock().unwrap());
    assert_eq!(kept.len(), 1);
    for token in kept {
        if let Some(msg) = device.resume_held(token)? {
            let mut text = [0u8; 64];
            let n = msg.copy_to(&mut text);
            println!(
                "device task: finishing {:?}",
                String::from_utf8_lossy(&text[..n])
            );
            service.send_to(msg.src(), b"done")?;
            drop(msg); // rpmsg_release_rx_buffer
        }
    }
    assert_eq!(device.stats().held, 0, "every buffer went back");

    let mut reply = [0u8; 16];
    let (n, src) = client.recv(
        &mut reply,
        Timeout::After(std::time::Duration::from_secs(1)),
    )?;
    println!(
        "driver: {:?} from {src}",
        String::from_utf8_lossy(&reply[..n])
    );
    assert_eq!(&reply[..n], b"done");

    // rpmsg_lite_deinit on both sides: each sends a DESTROY for the endpoints it announced,
    // and every call on a link is LinkDown from then on.
    device.shutdown()?;
    driver.poll()?; // the DESTROYs: the client is unbound, "rpmsg-log" goes to the handler
    assert_eq!(client.dst()?, None);
    driver.shutdown()?;
    Ok(())
}
