//! Harnesses of the fuzz targets (fuzz_targets/): the fuzzer plays the other core.

#[allow(unreachable_pub, clippy::all)]
#[path = "../../crates/rpmsg/tests/common/mod.rs"]
mod common;
pub mod compact;
pub mod guard;
pub mod link;
