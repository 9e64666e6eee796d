//! rpmsg on a Cortex-M4, as QEMU's `mps2-an386` board runs it.
//!
//! What the binaries share:
//!
//! * [`shmem`]: the memory the two sides share, the only module with `unsafe`;
//! * [`platform`]: a [`Platform`](rpmsg::Platform) whose peer sees the region at another address
//!   ([`PEER_BASE`](platform::PEER_BASE)), whose doorbells are flags polled by the other side, and
//!   whose cache hooks count their calls (the M4 has no data cache) and check what they get;
//! * `clock` (feature `clock`, part of `full`): a millisecond SysTick for
//!   [`rpmsg::port::SpinEnvironment`].
//!
//! Binaries: `selftest` (both roles in one image, checked end to end), `size-remote` (the
//! smallest useful remote, for the footprint figure) and `size-empty` (an empty `cortex-m-rt`
//! firmware, the baseline to subtract). `size.sh` prints the footprint table, `ci.sh` runs it all.

#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

#[cfg(feature = "clock")]
pub mod clock;
pub mod platform;
pub mod shmem;
