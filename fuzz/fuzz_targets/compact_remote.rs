//! `compact::Remote` against a driver the fuzzer plays.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rpmsg_fuzz::compact::{Input, run};

fuzz_target!(|input: Input| run(&input));
