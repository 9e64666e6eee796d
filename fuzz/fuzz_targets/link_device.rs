//! Our `Link` in the device role (both layouts) against a driver the fuzzer plays.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rpmsg::Role;
use rpmsg_fuzz::link::{Input, run};

fuzz_target!(|input: Input| run(Role::Device, &input));
