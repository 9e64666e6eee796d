//! The smallest useful rpmsg remote, for the footprint figure: what an RPMsg-Lite remote does
//! with the static API (`rpmsg_lite_remote_init`, `rpmsg_lite_wait_for_link_up`,
//! `rpmsg_lite_create_ept` with a receive callback, `rpmsg_lite_send`), in RPMsg-Lite's default
//! layout (2 buffers each way, 496-byte payloads) on a fixed shared-memory window.
//!
//! Sized for that: a link of 2 descriptors and 1 endpoint kept in a `static` (as RPMsg-Lite's
//! static context is), no formatting, a panic handler that halts, doorbells as a store to a
//! mailbox word, a SysTick clock. It is built, never run: its peer would be another core.
//!
//! `size.sh` builds it without this package's default `full` feature, so the core has only its
//! `role-device` and `layout-lite` features: the driver role and the resource-table layout are
//! not compiled in, as an RPMsg-Lite remote leaves out what its configuration does not use.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m_rt::entry;
use rpmsg::port::SpinEnvironment;
use rpmsg::{
    Config, EndpointConfig, LinearMap, Link, LiteConfig, Platform, Role, RxBuffer, Timeout,
};
use rpmsg_firmware_example::{clock, shmem};

/// The doorbell: on a real part, the mailbox register the other core's interrupt watches.
static MAILBOX: AtomicU32 = AtomicU32::new(0);
/// Payload bytes received, so the callback has an effect.
static RECEIVED: AtomicU32 = AtomicU32::new(0);

/// The board: the peer sees the window at the same address (RPMsg-Lite's `env_map_vatopa`
/// on a part with one address map), no cache to maintain.
struct Board {
    map: LinearMap,
}

impl Platform for Board {
    type Map = LinearMap;

    fn address_map(&self) -> &LinearMap {
        &self.map
    }

    fn notify(&self, id: u32) {
        MAILBOX.store(id | 0x8000_0000, Ordering::Release);
    }
}

type Remote = Link<'static, Board, SpinEnvironment<fn() -> u64>, 2, 1>;

/// The receive callback (RPMsg-Lite's `rl_ept_rx_cb_t`).
fn on_message(msg: RxBuffer<'_>) {
    RECEIVED.fetch_add(msg.len() as u32, Ordering::Relaxed);
}

#[entry]
fn main() -> ! {
    let Some(cp) = cortex_m::Peripherals::take() else {
        halt()
    };
    clock::start(cp.SYST);
    let Some(region) = shmem::board_window() else {
        halt()
    };
    let board = Board {
        map: LinearMap {
            base: shmem::BOARD_WINDOW as u64,
            len: region.len(),
        },
    };
    let env = SpinEnvironment::new(clock::now_us as fn() -> u64);
    let cfg = Config::lite(Role::Device, LiteConfig::DEFAULT);
    // rpmsg_lite_remote_init
    let Ok(link) = Link::new(region, board, env, cfg) else {
        halt()
    };
    let Some(link) = cortex_m::singleton!(: Remote = link) else {
        halt()
    };
    let link: &'static Remote = link;
    if link.start().is_err() || link.wait_link_up(Timeout::Forever).is_err() {
        halt()
    }
    // rpmsg_lite_create_ept with a callback
    let Ok(ep) = link.create_endpoint(EndpointConfig::new().addr(30).callback(&on_message)) else {
        halt()
    };
    // rpmsg_lite_send
    let _ = ep.send_to(1024, b"hello");
    // Received messages reach `on_message` from here (RPMsg-Lite: from the ISR's env_isr).
    loop {
        let _ = link.poll();
    }
}

fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    halt()
}
