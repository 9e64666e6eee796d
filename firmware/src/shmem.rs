//! The memory both sides share: the only module with `unsafe`.
//!
//! Two kinds, as real firmware has them:
//!
//! * [`selftest_regions`]: two regions in this image's RAM (`.bss`), for the self-test, whose
//!   two "cores" are one;
//! * [`board_window`]: a fixed window of the board's memory that the linker never allocates
//!   (QEMU mps2-an386's PSRAM at `0x2100_0000`), as RPMsg-Lite's `shmem_addr` is on a real
//!   two-core part.
//!
//! Each is handed out once, as a [`SharedRegion`], which touches the bytes only with atomic
//! accesses and never through a Rust reference.

#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use rpmsg::{LiteConfig, SharedRegion};

/// Bytes of the RPMsg-Lite region of the self-test: RPMsg-Lite's default layout.
pub const LITE_LEN: usize = LiteConfig::DEFAULT.region_len();
/// Bytes of the resource-table region of the self-test.
pub const RSC_LEN: usize = 0x2000;

/// Base of the board window: QEMU mps2-an386's 16 MiB PSRAM, outside `memory.x`.
pub const BOARD_WINDOW: usize = 0x2100_0000;
/// Bytes of the board window handed out: RPMsg-Lite's default layout.
pub const BOARD_WINDOW_LEN: usize = LiteConfig::DEFAULT.region_len();

/// Zeroed memory that only [`SharedRegion`]s touch.
#[repr(C, align(8))]
struct Shared<const LEN: usize>(UnsafeCell<[u8; LEN]>);

// SAFETY: the bytes are reached only through `SharedRegion`s, whose every access is atomic; no
// `&`/`&mut` to them is ever formed, so sharing the static between contexts is sound.
unsafe impl<const LEN: usize> Sync for Shared<LEN> {}

impl<const LEN: usize> Shared<LEN> {
    const fn new() -> Self {
        Self(UnsafeCell::new([0; LEN]))
    }
}

static LITE_MEM: Shared<LITE_LEN> = Shared::new();
static RSC_MEM: Shared<RSC_LEN> = Shared::new();
static COMPACT_MEM: Shared<LITE_LEN> = Shared::new();
static SELFTEST_TAKEN: AtomicBool = AtomicBool::new(false);
static WINDOW_TAKEN: AtomicBool = AtomicBool::new(false);

/// The self-test's regions: `[RPMsg-Lite layout, resource-table layout, RPMsg-Lite layout for
/// the compact remote]`, the first time it is called; `None` afterwards.
pub fn selftest_regions() -> Option<[SharedRegion<'static>; 3]> {
    if SELFTEST_TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    // SAFETY: each static is `LEN` bytes, 8-aligned (`repr(align(8))`), in RAM and alive for
    // `'static`. `UnsafeCell::get` yields a raw pointer without forming a reference, nothing
    // else in the program names these statics, and the flag above hands them out once, so no
    // `&`/`&mut` into the bytes exists while the regions do.
    let regions = unsafe {
        [
            SharedRegion::from_raw(LITE_MEM.0.get().cast(), LITE_LEN),
            SharedRegion::from_raw(RSC_MEM.0.get().cast(), RSC_LEN),
            SharedRegion::from_raw(COMPACT_MEM.0.get().cast(), LITE_LEN),
        ]
    };
    match regions {
        [Ok(a), Ok(b), Ok(c)] => Some([a, b, c]),
        _ => None,
    }
}

/// The board window, the first time it is called; `None` afterwards.
pub fn board_window() -> Option<SharedRegion<'static>> {
    if WINDOW_TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let base = core::ptr::with_exposed_provenance_mut::<u8>(BOARD_WINDOW);
    // SAFETY: mps2-an386 has RAM at 0x2100_0000..0x2200_0000 (its PSRAM), readable and writable
    // for the life of the program; memory.x does not give it to the linker, no Rust object lives
    // there, and the flag above hands it out once. The peer core may write it at any time,
    // which `SharedRegion`'s atomic accesses allow.
    unsafe { SharedRegion::from_raw(base, BOARD_WINDOW_LEN) }.ok()
}
