//! Validated views over the bytes RPMsg puts on the wire.
//!
//! Each structure has its own file: [`rpmsg`] (the 16-byte message header), [`ns`] (the 40-byte
//! name-service message), [`vring`] (split-virtqueue constants, the descriptor and the ring layout
//! formulas) and [`rsc`] (the remoteproc resource table with its vdev, carveout and trace entries).
//!
//! # Contract
//!
//! Views never wrap memory the peer can write: the `shm` module copies bytes out of the shared
//! region first, and the views are built on the copy. Every `parse` checks lengths and values
//! before it reads, returns a typed [`Error`] naming the failed check, and **never panics**, whatever
//! the bytes; every `emit` writes into a buffer of exactly `buffer_len()` bytes and never panics on
//! one. All multi-byte fields are little-endian (wire.md section 2).

pub mod ns;
pub mod rpmsg;
pub mod rsc;
pub mod rsc_macro;
pub mod vring;

pub use ns::{Name, NsFlags, NsMessage, NsRepr};
pub use rpmsg::{RpmsgHeader, RpmsgRepr};
pub use rsc::{ResourceTable, VdevInfo, VringInfo};
pub use vring::VringDesc;

use core::fmt;

/// Why a wire structure was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are shorter than the structure needs.
    Truncated {
        /// Bytes the structure needs.
        need: usize,
        /// Bytes that were there.
        have: usize,
    },
    /// A name has no NUL within its 32 bytes, or is longer than 31 bytes.
    NameTooLong {
        /// Length of the name in bytes (32 when no NUL was found).
        len: usize,
    },
    /// A field holds a value the format forbids.
    BadValue {
        /// Which field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// An offset or size inside a structure points outside it.
    OutOfBounds {
        /// Which field.
        field: &'static str,
        /// The offset or end found.
        value: u64,
        /// The bound it must stay within.
        limit: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { need, have } => {
                write!(
                    f,
                    "truncated structure: {have} bytes where {need} are needed"
                )
            }
            Self::NameTooLong { len } => {
                write!(
                    f,
                    "name of {len} bytes is too long; names hold at most 31 bytes"
                )
            }
            Self::BadValue { field, value } => write!(f, "invalid {field}: {value:#x}"),
            Self::OutOfBounds {
                field,
                value,
                limit,
            } => {
                write!(
                    f,
                    "{field} {value:#x} lies outside the structure (limit {limit:#x})"
                )
            }
        }
    }
}

impl core::error::Error for Error {}
