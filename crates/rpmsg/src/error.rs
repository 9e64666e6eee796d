//! The public error type.
//!
//! One enum for everything a caller of the link, an endpoint or a buffer can meet. Each variant
//! says what went wrong with the numbers involved, and [`Error::is_peer_fault`] /
//! [`Error::is_transient`] classify it with exhaustive matches, so a new variant forces a
//! decision.

use crate::shm::AccessError;
use crate::virtqueue::Violation;
use core::fmt;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// No free transmit buffer right now (`try_*`), or none arrived within the timeout.
    NoBuffer,
    /// A blocking call's timeout expired.
    Timeout,
    /// The link is not up yet: the peer has not started its side.
    NotReady,
    /// The link was shut down, the peer reset it, or a peer fault broke it.
    LinkDown,
    /// The address is taken by another endpoint of this link (or is the name service's).
    AddressInUse(u32),
    /// No endpoint of this link has this address.
    UnknownEndpoint(u32),
    /// The endpoint was already destroyed.
    EndpointDestroyed,
    /// Every endpoint slot of this link is in use.
    TooManyEndpoints {
        /// Slots the link was built with.
        capacity: usize,
    },
    /// The address is not usable here (`RPMSG_ADDR_ANY` as a source or destination).
    InvalidAddress(u32),
    /// A name longer than 31 bytes, or containing a NUL.
    InvalidName {
        /// Its length in bytes.
        len: usize,
    },
    /// The payload does not fit in one buffer.
    PayloadTooLarge {
        /// Bytes offered.
        len: usize,
        /// Bytes a buffer holds.
        max: usize,
    },
    /// The caller's receive buffer is too small for the next message (which stays queued).
    BufferTooSmall {
        /// Bytes the message needs.
        need: usize,
        /// Bytes offered.
        have: usize,
    },
    /// The name service was not negotiated with the peer (`VIRTIO_RPMSG_F_NS`).
    NsUnavailable,
    /// The endpoint receives through a callback, so it has no queue to read.
    NotQueued,
    /// A buffer or token that belongs to another link, or to an earlier life of this one.
    ForeignBuffer,
    /// The configuration cannot work; the message says which value.
    Config(&'static str),
    /// The peer broke the protocol; the link may be unusable.
    PeerViolation(Violation),
    /// The link was entered from a context that interrupted it (an interrupt handler while a
    /// task held its lock under a no-op mutex).
    Busy,
    /// A call that takes messages from the rings (`poll`, `handle_notify`, `recv*`,
    /// `wait_link_up` and their async forms) was made from inside one of this link's receive
    /// callbacks. It would run the next message's callback inside this one, one stack frame per
    /// queued message; the poll that runs the callback takes the next messages when it returns.
    InCallback,
}

impl Error {
    /// Whether the other core caused it.
    pub fn is_peer_fault(&self) -> bool {
        match self {
            Self::PeerViolation(_) => true,
            Self::NoBuffer
            | Self::Timeout
            | Self::NotReady
            | Self::LinkDown
            | Self::AddressInUse(_)
            | Self::UnknownEndpoint(_)
            | Self::EndpointDestroyed
            | Self::TooManyEndpoints { .. }
            | Self::InvalidAddress(_)
            | Self::InvalidName { .. }
            | Self::PayloadTooLarge { .. }
            | Self::BufferTooSmall { .. }
            | Self::NsUnavailable
            | Self::NotQueued
            | Self::ForeignBuffer
            | Self::Config(_)
            | Self::Busy
            | Self::InCallback => false,
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::NoBuffer | Self::Timeout | Self::NotReady | Self::Busy | Self::InCallback => true,
            Self::LinkDown
            | Self::AddressInUse(_)
            | Self::UnknownEndpoint(_)
            | Self::EndpointDestroyed
            | Self::TooManyEndpoints { .. }
            | Self::InvalidAddress(_)
            | Self::InvalidName { .. }
            | Self::PayloadTooLarge { .. }
            | Self::BufferTooSmall { .. }
            | Self::NsUnavailable
            | Self::NotQueued
            | Self::ForeignBuffer
            | Self::Config(_)
            | Self::PeerViolation(_) => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoBuffer => {
                f.write_str("no free transmit buffer; the peer has not returned any yet")
            }
            Self::Timeout => f.write_str("timed out; the peer did not answer in time"),
            Self::NotReady => f.write_str("link not up yet; wait for the peer to start its side"),
            Self::LinkDown => f.write_str("link is down; bring it up again before using it"),
            Self::AddressInUse(a) => write!(f, "address {a} is already in use on this link"),
            Self::UnknownEndpoint(a) => write!(f, "no endpoint with address {a} on this link"),
            Self::EndpointDestroyed => f.write_str("endpoint was already destroyed"),
            Self::TooManyEndpoints { capacity } => {
                write!(
                    f,
                    "all {capacity} endpoint slots are in use; destroy one or build the link with more"
                )
            }
            Self::InvalidAddress(a) => write!(f, "address {a:#x} cannot be used here"),
            Self::InvalidName { len } => {
                write!(
                    f,
                    "name of {len} bytes is invalid; names hold at most 31 bytes and no NUL"
                )
            }
            Self::PayloadTooLarge { len, max } => {
                write!(
                    f,
                    "payload of {len} bytes exceeds the {max} a buffer holds; split the message"
                )
            }
            Self::BufferTooSmall { need, have } => {
                write!(
                    f,
                    "message of {need} bytes does not fit the {have}-byte buffer; it stays queued"
                )
            }
            Self::NsUnavailable => f.write_str("the peer did not negotiate the name service"),
            Self::NotQueued => f.write_str("endpoint receives through a callback, not a queue"),
            Self::ForeignBuffer => {
                f.write_str("buffer belongs to another link or an earlier link session")
            }
            Self::Config(what) => write!(f, "invalid configuration: {what}"),
            Self::PeerViolation(v) => write!(f, "peer protocol violation: {v}"),
            Self::Busy => {
                f.write_str("link is busy in an interrupted context; call again from outside it")
            }
            Self::InCallback => f.write_str(
                "called from inside a receive callback of this link; return from the callback \
                 and poll or receive from outside it",
            ),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::PeerViolation(v) => Some(v),
            _ => None,
        }
    }
}

impl From<Violation> for Error {
    fn from(v: Violation) -> Self {
        Self::PeerViolation(v)
    }
}

impl From<AccessError> for Error {
    fn from(e: AccessError) -> Self {
        Self::PeerViolation(Violation::OutOfRegion(e))
    }
}
