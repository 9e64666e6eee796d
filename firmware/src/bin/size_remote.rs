//! The smallest useful rpmsg remote, for the footprint figure: what an RPMsg-Lite remote does
//! with the static API (`rpmsg_lite_remote_init`, `rpmsg_lite_is_link_up`,
//! `rpmsg_lite_create_ept` with a receive callback, `rpmsg_lite_send`, `env_isr`), in
//! RPMsg-Lite's default layout (2 buffers each way, 496-byte payloads) on a fixed
//! shared-memory window, with `rpmsg::compact::Remote`.
//!
//! Sized for that: the remote in a `static` (as RPMsg-Lite's static context is), no
//! formatting, a panic handler that halts, doorbells as a store to a mailbox word. It is built,
//! never run: its peer would be another core (the self-test runs the same remote against a
//! driver in QEMU).
//!
//! `size.sh` builds it without this package's default `full` feature, so the core has only its
//! `role-device` and `layout-lite` features.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m_rt::entry;
use rpmsg::compact::{Message, Remote, State};
use rpmsg::{LinearMap, LiteConfig, Platform};
use rpmsg_firmware_example::shmem;
use static_cell::ConstStaticCell;

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

/// The remote's state (RPMsg-Lite's static context): all zero, so it lies in `.bss`.
static STATE: ConstStaticCell<State<'static>> = ConstStaticCell::new(State::new());

/// The receive callback (RPMsg-Lite's `rl_ept_rx_cb_t`).
fn on_message(msg: Message<'_>) {
    RECEIVED.fetch_add(msg.len() as u32, Ordering::Relaxed);
}

#[entry]
fn main() -> ! {
    let Some(region) = shmem::board_window() else {
        halt()
    };
    let board = Board {
        map: LinearMap {
            base: shmem::BOARD_WINDOW as u64,
            len: region.len(),
        },
    };
    // rpmsg_lite_remote_init
    let Ok(mut remote) = Remote::new(region, board, LiteConfig::DEFAULT, STATE.take()) else {
        halt()
    };
    // rpmsg_lite_is_link_up, polled
    while remote.poll().is_ok() && !remote.is_up() {}
    // rpmsg_lite_create_ept with a callback
    if remote.create_endpoint(30, &on_message).is_err() {
        halt()
    }
    // rpmsg_lite_send
    let _ = remote.try_send(30, 1024, b"hello");
    // Received messages reach `on_message` from here (RPMsg-Lite: from the ISR's env_isr; an
    // application sharing the remote with an interrupt keeps it in a critical-section Mutex).
    loop {
        let _ = remote.poll();
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
