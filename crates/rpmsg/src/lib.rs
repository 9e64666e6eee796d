//! # rpmsg: Remote Processor Messaging in Rust
//!
//! RPMsg lets two cores of one chip talk through shared memory: two virtio split virtqueues, a
//! pool of fixed-size buffers, a 16-byte message header, endpoints with 32-bit addresses and a
//! name service on address 53. This crate speaks it byte for byte like the Linux kernel
//! (`virtio_rpmsg_bus`), OpenAMP and NXP RPMsg-Lite, in both roles, with no allocator and no
//! global state, and it treats the other core as untrusted: every index, length and address it
//! writes is checked before use.
//!
//! ## Layers, bottom up
//!
//! * [`shm`]: the only module with `unsafe`: a [`SharedRegion`] with bounds-checked atomic
//!   field access, byte copies and fences.
//! * [`wire`]: validated views of the rpmsg header, the name-service message, the vring
//!   descriptor and the remoteproc resource table.
//! * [`virtqueue`]: the split ring, both sides ([`virtqueue::DriverQueue`],
//!   [`virtqueue::DeviceQueue`]), with peer faults reported as [`Violation`]s.
//! * [`layout`]: where rings and buffers lie (RPMsg-Lite's static layout or a resource table).
//! * [`link`]: one connection ([`Link`]) in [`Role::Driver`] or [`Role::Device`]: link-up,
//!   dispatch, sending, shutdown, counters. Inside, a protocol engine (the link's state and
//!   every step on it as `&mut self` methods, no lock, no I/O beyond the shared region and the
//!   platform hooks) under the `Link` shell (the lock, waiting, callbacks, handles).
//! * [`endpoint`], [`ns`], [`buffer`]: endpoints, the name service, zero-copy buffers.
//! * [`compact`]: [`compact::Remote`], the device side of an RPMsg-Lite link cut down to
//!   RPMsg-Lite's static remote API, for the smallest firmware (features `role-device` and
//!   `layout-lite`).
//! * [`port`]: the traits a chip ([`Platform`]) and an environment ([`Environment`]) implement.
//!
//! ## Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `role-driver` | on | [`Role::Driver`]: the host side, RPMsg-Lite's master (lays out rings, owns buffers) |
//! | `role-device` | on | [`Role::Device`]: the remote side |
//! | `layout-lite` | on | [`LayoutConfig::Lite`]: RPMsg-Lite's static layout |
//! | `layout-rsc-table` | on | [`LayoutConfig::RscTable`]: the remoteproc resource table (Linux, OpenAMP) |
//! | `std` | off | `std` error impls and a std environment (`port::StdEnvironment`) |
//! | `test-utils` | off | in-process test platform and memory (`testing`) |
//!
//! The role and layout features choose at build time what RPMsg-Lite and OpenAMP choose in
//! their configuration headers: a firmware that is only ever an RPMsg-Lite remote depends on
//! this crate with `default-features = false, features = ["role-device", "layout-lite"]`, and
//! the driver set-up, the resource-table parsing and the other role's ring paths stay out of
//! its image (a third of the flash of the minimal remote in `firmware/`). The types stay the
//! same in every build; a [`Config`] asking for a role or layout compiled out makes
//! [`Link::new`] return [`Error::Config`] naming the feature to enable. Features only add.
//!
//! ## Example
//!
//! Two "cores" in one test: a driver and a device over one region, with RPMsg-Lite's layout.
//!
//! ```
//! use rpmsg::{Config, EndpointConfig, LinearMap, LiteConfig, Link, Role, SharedRegion, Timeout};
//! use rpmsg::testing::{Loopback, TestEnv, TestMemory};
//!
//! let mut mem = TestMemory::new(LiteConfig::DEFAULT.region_len());
//! let region = mem.region();
//! let lite = LiteConfig::DEFAULT;
//! let driver: Link<_, _, 2> = Link::new(region, Loopback::new(region), TestEnv::new(), Config::lite(Role::Driver, lite))?;
//! let device: Link<_, _, 2> = Link::new(region, Loopback::new(region), TestEnv::new(), Config::lite(Role::Device, lite))?;
//! device.start()?;
//! driver.start()?;
//! device.wait_link_up(Timeout::Forever)?;
//!
//! let host = driver.create_endpoint(EndpointConfig::new().addr(1024))?;
//! let remote = device.create_endpoint(EndpointConfig::new().addr(30).queue(2))?;
//! host.send_to(30, b"hello")?;
//! let mut buf = [0u8; 496];
//! let (n, src) = remote.recv(&mut buf, Timeout::Forever)?;
//! assert_eq!((&buf[..n], src), (&b"hello"[..], 1024));
//! # Ok::<(), rpmsg::Error>(())
//! ```
//!
//! ## C names
//!
//! | Linux / OpenAMP / RPMsg-Lite | rpmsg |
//! |---|---|
//! | `rpmsg_lite_master_init`, `rpmsg_init_vdev` (host) | [`Link::new`] + [`Link::start`] in [`Role::Driver`] |
//! | `rpmsg_lite_remote_init`, `rpmsg_init_vdev` (remote) | the same in [`Role::Device`] |
//! | `rpmsg_lite_wait_for_link_up`, `rpmsg_lite_is_link_up` | [`Link::wait_link_up`], [`Link::is_up`] |
//! | `rpmsg_create_ept`, `rpmsg_lite_create_ept` | [`Link::create_endpoint`] |
//! | `rpmsg_destroy_ept`, `rpmsg_lite_destroy_ept` | [`Endpoint::destroy`] |
//! | `rpmsg_send`, `rpmsg_sendto`, `rpmsg_send_offchannel` | [`Endpoint::send`], [`Endpoint::send_to`], [`Endpoint::send_offchannel`] |
//! | `rpmsg_trysend*` | [`Endpoint::try_send`], [`Endpoint::try_send_to`], [`Endpoint::try_send_offchannel`] |
//! | `rpmsg_lite_send(.., timeout)` | [`Endpoint::send_to_timeout`] |
//! | `rpmsg_get_tx_payload_buffer`, `rpmsg_lite_alloc_tx_buffer` | [`Endpoint::alloc_tx`] |
//! | `rpmsg_send_nocopy`, `rpmsg_lite_send_nocopy` | [`TxBuffer::send`], [`TxBuffer::send_to`] |
//! | `rpmsg_release_tx_buffer` | drop the [`TxBuffer`] |
//! | `rpmsg_hold_rx_buffer`, `RL_HOLD` | [`RxBuffer::into_held`] |
//! | `rpmsg_release_rx_buffer`, `rpmsg_lite_release_rx_buffer` | drop the [`RxBuffer`], [`Link::release_held`] |
//! | `rpmsg_queue_recv`, `rpmsg_queue_recv_nocopy` | [`Endpoint::recv`], [`Endpoint::recv_zero_copy`] |
//! | `rpmsg_ns_bind`, `ns_bind_cb` | [`Link::set_ns_handler`] |
//! | `rpmsg_ns_announce` | [`EndpointConfig::announce`], [`Link::ns_announce`] |
//! | `rpmsg_get_mtu`, `rpmsg_get_tx_buffer_size` | [`Link::mtu`], [`TxBuffer::capacity`] |
//! | `rpmsg_lite_deinit`, `rpmsg_deinit_vdev` | [`Link::shutdown`] |
//! | RPMsg-Lite's static remote on the smallest parts | [`compact::Remote`] (device role, RPMsg-Lite layout, `&mut self`) |

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
// A build without every role and layout (Cargo features) leaves some shared helpers, states and
// imports unused; the full build, linted with `-D warnings`, still reports real dead code.
#![cfg_attr(
    not(all(
        feature = "role-driver",
        feature = "role-device",
        feature = "layout-lite",
        feature = "layout-rsc-table"
    )),
    allow(dead_code, unused_imports)
)]
// Without any role there is no link to run (`Link::new` refuses every `Config`): only the types
// and the lower layers remain, and the link's ring paths are unreachable.
#![cfg_attr(
    not(any(feature = "role-driver", feature = "role-device")),
    allow(unreachable_code, unused_variables, clippy::never_loop)
)]

pub mod asynch;
pub mod buffer;
#[cfg(all(feature = "role-device", feature = "layout-lite"))]
pub mod compact;
pub mod endpoint;
pub mod error;
pub mod layout;
pub mod link;
pub mod ns;
pub mod port;
pub mod shm;
// `testing` builds regions with `SharedRegion::from_slice`, which does not exist under loom.
#[cfg(all(any(test, feature = "test-utils"), not(loom)))]
pub mod testing;
pub mod virtqueue;
pub mod wire;

pub use buffer::{HeldError, HeldRx, RxBuffer, TxBuffer, TxError};
pub use endpoint::{Endpoint, EndpointConfig, RxHandler, RxMode};
pub use error::Error;
pub use layout::{LayoutConfig, LiteConfig, RscConfig};
pub use link::{Config, Link, LinkStats, Role};
pub use ns::{Announcement, NsCallbacks, NsHandler, NsKind, NsQueue};
pub use port::{
    AddressMap, Barrier, Environment, Instant, LinearMap, Platform, SegmentMap, Timeout,
};
pub use shm::SharedRegion;
pub use virtqueue::Violation;
pub use wire::rpmsg::{RPMSG_ADDR_ANY, RPMSG_NS_ADDR};
