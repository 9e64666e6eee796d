#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]

pub mod chardev;
pub mod doorbell;
pub mod error;
pub mod file;
pub mod geometry;
pub mod port;
pub mod raw;
pub mod service;
pub mod session;
pub mod sessions;
mod sys;
pub mod vhost_user;

pub use chardev::{Ctrl, DevError, Endpoint, EndpointInfo, Sysfs};
pub use doorbell::{DoorbellMode, DoorbellSocket, Side};
pub use error::HostError;
pub use file::{SharedFile, SideState};
pub use geometry::{Geometry, LayoutKind};
pub use port::{HostEnv, HostLink, HostPlatform, HostRawMutex};
pub use raw::{RawPingPong, RawRing};
pub use service::Service;
pub use session::{DoorbellStats, GeometrySpec, PeerStatus, RingCounts, Session, SessionOptions};
pub use sessions::Sessions;
