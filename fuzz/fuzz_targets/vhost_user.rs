//! The vhost-user back-end's message handling: bytes from the front-end on a socket, each
//! message received and handled in turn (descriptors attached as anonymous files).
//! Invariants in `rpmsg_host::vhost_user::fuzz_messages`: no panic, accepted vrings inside one
//! memory region below 4 GiB, accepted regions disjoint.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rpmsg_host::vhost_user::fuzz_messages(data));
