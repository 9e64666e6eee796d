//! Our `Link` in the driver role (both layouts) against a device the fuzzer plays.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rpmsg::Role;
use rpmsg_fuzz::link::{Input, run};

fuzz_target!(|input: Input| run(Role::Driver, &input));
