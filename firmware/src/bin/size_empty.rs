//! An empty `cortex-m-rt` firmware: the baseline the footprint figure subtracts (vector table,
//! reset handler, start-up code), built with the same profile as `size-remote`.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use cortex_m_rt::entry;

#[entry]
fn main() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
