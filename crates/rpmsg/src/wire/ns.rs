//! The 40-byte name-service message sent to address 53 (wire.md section 7).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 32 | `name`: at most 31 bytes, NUL, zero padding (we send); up to the first NUL or 32 bytes (we accept) |
//! | 32 | 4 | `addr`: the announcing endpoint |
//! | 36 | 4 | `flags`: 0 create, 1 destroy; receivers test bit 0 |

use super::Error;
use core::fmt;
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Length of a name-service message.
pub const NS_MSG_LEN: usize = 40;
/// Bytes of the name field (`RPMSG_NAME_SIZE`).
pub const NAME_SIZE: usize = 32;
/// Longest name we send: one byte is kept for the NUL.
pub const NAME_MAX: usize = NAME_SIZE - 1;

/// The message as it lies in the payload.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct NsMessage {
    /// Service name.
    pub name: [u8; NAME_SIZE],
    /// Address of the announcing endpoint.
    pub addr: U32,
    /// Create (0) or destroy (1).
    pub flags: U32,
}

const _: () = assert!(core::mem::size_of::<NsMessage>() == NS_MSG_LEN);

/// An endpoint or service name: at most 32 bytes, no NUL inside.
///
/// Names we create hold at most 31 bytes ([`Name::new`]); a name received from RPMsg-Lite may
/// hold 32 (it sends no NUL then), and is truncated to 31 if we ever send it back, as Linux does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Name {
    bytes: [u8; NAME_SIZE],
    len: u8,
}

impl Name {
    /// The empty name (an endpoint without a name).
    pub const EMPTY: Self = Self {
        bytes: [0; NAME_SIZE],
        len: 0,
    };

    /// A name for an endpoint of ours.
    ///
    /// # Errors
    ///
    /// [`Error::NameTooLong`] above 31 bytes; [`Error::BadValue`] if it contains a NUL.
    pub fn new(name: &str) -> Result<Self, Error> {
        let b = name.as_bytes();
        if b.len() > NAME_MAX {
            return Err(Error::NameTooLong { len: b.len() });
        }
        if let Some(pos) = b.iter().position(|&c| c == 0) {
            return Err(Error::BadValue {
                field: "name (NUL at byte)",
                value: pos as u64,
            });
        }
        let mut bytes = [0u8; NAME_SIZE];
        bytes[..b.len()].copy_from_slice(b);
        Ok(Self {
            bytes,
            len: b.len() as u8,
        })
    }

    /// Reads a 32-byte name field: up to the first NUL, or all 32 bytes when there is none.
    pub fn from_field(field: &[u8; NAME_SIZE]) -> Self {
        let len = field.iter().position(|&c| c == 0).unwrap_or(NAME_SIZE);
        let mut bytes = [0u8; NAME_SIZE];
        bytes[..len].copy_from_slice(&field[..len]);
        Self {
            bytes,
            len: len as u8,
        }
    }

    /// The 32-byte field we send: at most 31 bytes, then NUL and zero padding.
    pub fn to_field(&self) -> [u8; NAME_SIZE] {
        let mut f = self.bytes;
        f[NAME_MAX] = 0;
        f
    }

    /// The name's bytes (no NUL).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The name as text, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(self.as_bytes()).ok()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the name is empty (an endpoint without a name is never announced).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => write!(f, "{s:?}"),
            None => write!(f, "{:x?}", self.as_bytes()),
        }
    }
}

/// Create or destroy; unknown values survive a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsFlags {
    /// `RPMSG_NS_CREATE` (0).
    Create,
    /// `RPMSG_NS_DESTROY` (1).
    Destroy,
    /// Any other value; [`NsFlags::is_destroy`] tests bit 0 as Linux and OpenAMP do.
    Unknown(u32),
}

impl NsFlags {
    /// Whether the receiver treats it as a destroy (bit 0 set).
    pub fn is_destroy(self) -> bool {
        u32::from(self) & 1 == 1
    }
}

impl From<u32> for NsFlags {
    fn from(v: u32) -> Self {
        match v {
            0 => Self::Create,
            1 => Self::Destroy,
            v => Self::Unknown(v),
        }
    }
}

impl From<NsFlags> for u32 {
    fn from(f: NsFlags) -> Self {
        match f {
            NsFlags::Create => 0,
            NsFlags::Destroy => 1,
            NsFlags::Unknown(v) => v,
        }
    }
}

/// The meaning of a name-service message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsRepr {
    /// Service name.
    pub name: Name,
    /// Address of the announcing endpoint.
    pub addr: u32,
    /// Create or destroy.
    pub flags: NsFlags,
}

impl NsRepr {
    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        NS_MSG_LEN
    }

    /// Parses a name-service payload, which must be exactly 40 bytes (all three peers drop
    /// other lengths).
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] below 40 bytes, [`Error::BadValue`] above.
    pub fn parse(payload: &[u8]) -> Result<Self, Error> {
        if payload.len() > NS_MSG_LEN {
            return Err(Error::BadValue {
                field: "name-service length",
                value: payload.len() as u64,
            });
        }
        let msg = NsMessage::read_from_bytes(payload).map_err(|_| Error::Truncated {
            need: NS_MSG_LEN,
            have: payload.len(),
        })?;
        Ok(Self {
            name: Name::from_field(&msg.name),
            addr: msg.addr.get(),
            flags: NsFlags::from(msg.flags.get()),
        })
    }

    /// The 40 payload bytes.
    pub fn to_bytes(&self) -> [u8; NS_MSG_LEN] {
        let msg = NsMessage {
            name: self.name.to_field(),
            addr: U32::new(self.addr),
            flags: U32::new(self.flags.into()),
        };
        let mut out = [0u8; NS_MSG_LEN];
        out.copy_from_slice(msg.as_bytes());
        out
    }

    /// Writes the message into the first 40 bytes of `buf`.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] when `buf` is shorter than 40 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Error> {
        let have = buf.len();
        let dst = buf.get_mut(..NS_MSG_LEN).ok_or(Error::Truncated {
            need: NS_MSG_LEN,
            have,
        })?;
        dst.copy_from_slice(&self.to_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// "rpmsg-raw" announced at 0x400, as a remote sends it to Linux.
    fn golden() -> [u8; 40] {
        let mut b = [0u8; 40];
        b[..9].copy_from_slice(b"rpmsg-raw");
        b[32..36].copy_from_slice(&[0x00, 0x04, 0, 0]);
        b
    }

    #[test]
    fn emits_and_parses_create() {
        let r = NsRepr {
            name: Name::new("rpmsg-raw").unwrap(),
            addr: 0x400,
            flags: NsFlags::Create,
        };
        assert_eq!(r.to_bytes(), golden());
        assert_eq!(NsRepr::parse(&golden()).unwrap(), r);
    }

    #[test]
    fn ignores_garbage_after_nul_as_openamp_sends_it() {
        let mut b = golden();
        b[20] = 0x5A;
        b[36] = 1;
        let r = NsRepr::parse(&b).unwrap();
        assert_eq!(r.name.as_bytes(), b"rpmsg-raw");
        assert!(r.flags.is_destroy());
    }

    #[test]
    fn accepts_32_byte_name_without_nul_and_sends_it_back_truncated() {
        let mut b = golden();
        b[..32].copy_from_slice(&[b'a'; 32]);
        let r = NsRepr::parse(&b).unwrap();
        assert_eq!(r.name.len(), 32);
        assert_eq!(r.to_bytes()[31], 0);
    }

    #[test]
    fn name_rules() {
        assert_eq!(
            Name::new(&"x".repeat(32)),
            Err(Error::NameTooLong { len: 32 })
        );
        assert!(Name::new(&"x".repeat(31)).is_ok());
        assert!(Name::new("a\0b").is_err());
    }

    #[test]
    fn refuses_wrong_lengths() {
        assert!(NsRepr::parse(&golden()[..39]).is_err());
        assert!(NsRepr::parse(&[0u8; 41]).is_err());
    }

    #[test]
    fn odd_flags_are_destroy() {
        assert!(NsFlags::from(3).is_destroy());
        assert!(!NsFlags::from(2).is_destroy());
        assert_eq!(u32::from(NsFlags::from(7)), 7);
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = NsRepr::parse(&bytes);
        }

        #[test]
        fn round_trips(name in "[a-z0-9_-]{0,31}", addr: u32, flags in 0u32..4) {
            let r = NsRepr { name: Name::new(&name).unwrap(), addr, flags: flags.into() };
            prop_assert_eq!(NsRepr::parse(&r.to_bytes()).unwrap(), r);
        }
    }
}
