//! A monotonic clock from SysTick: one interrupt per millisecond bumps a counter.

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;

/// Core clock of the mps2-an386 FPGA image (and of QEMU's model of it).
pub const CORE_HZ: u32 = 25_000_000;

static MILLIS: AtomicU32 = AtomicU32::new(0);

/// Starts the 1 kHz tick.
pub fn start(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(CORE_HZ / 1000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Microseconds since [`start`], at millisecond resolution: the clock of
/// [`SpinEnvironment`](rpmsg::port::SpinEnvironment).
pub fn now_us() -> u64 {
    u64::from(MILLIS.load(Ordering::Relaxed)) * 1000
}

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}
