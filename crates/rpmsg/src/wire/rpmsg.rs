//! The 16-byte RPMsg message header (wire.md section 5).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `src` |
//! | 4 | 4 | `dst` |
//! | 8 | 4 | `reserved`: written 0, ignored on receive (OpenAMP and RPMsg-Lite store bookkeeping there) |
//! | 12 | 2 | `len`: payload bytes after the header |
//! | 14 | 2 | `flags`: written 0, never interpreted |

use super::Error;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Length of the header; the payload starts right after it.
pub const HEADER_LEN: usize = 16;
/// The wildcard address (`RPMSG_ADDR_ANY`): "none chosen yet". Never a valid source or
/// destination on the wire.
pub const RPMSG_ADDR_ANY: u32 = 0xFFFF_FFFF;
/// The name-service endpoint address (`RPMSG_NS_ADDR`).
pub const RPMSG_NS_ADDR: u32 = 53;
/// Addresses below this are never handed out dynamically (`RPMSG_RESERVED_ADDRESSES`).
pub const RPMSG_RESERVED_ADDRESSES: u32 = 1024;

/// The header as it lies in a buffer: a plain struct of little-endian fields.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RpmsgHeader {
    /// Source endpoint address.
    pub src: U32,
    /// Destination endpoint address.
    pub dst: U32,
    /// Reserved; 0 on send, ignored on receive.
    pub reserved: U32,
    /// Payload length in bytes.
    pub len: U16,
    /// Flags; 0 on send, ignored on receive.
    pub flags: U16,
}

const _: () = assert!(core::mem::size_of::<RpmsgHeader>() == HEADER_LEN);

/// The meaning of a header: what we send and what we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpmsgRepr {
    /// Source endpoint address.
    pub src: u32,
    /// Destination endpoint address.
    pub dst: u32,
    /// Payload length in bytes.
    pub len: u16,
    /// Flags as found (we always send 0).
    pub flags: u16,
}

impl RpmsgRepr {
    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Reads a header from the first 16 bytes of `bytes`. Any 16 bytes are a header; whether its
    /// `len` fits the buffer is the caller's check (it knows the buffer).
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] when fewer than 16 bytes are given.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let (hdr, _) = RpmsgHeader::read_from_prefix(bytes).map_err(|_| Error::Truncated {
            need: HEADER_LEN,
            have: bytes.len(),
        })?;
        Ok(Self::from_header(&hdr))
    }

    /// Reads a header copied out of shared memory.
    pub fn from_bytes(bytes: &[u8; HEADER_LEN]) -> Self {
        Self::from_header(&RpmsgHeader::read_from_bytes(bytes).unwrap_or_else(|_| unreachable!()))
    }

    fn from_header(h: &RpmsgHeader) -> Self {
        Self {
            src: h.src.get(),
            dst: h.dst.get(),
            len: h.len.get(),
            flags: h.flags.get(),
        }
    }

    /// The header from its four little-endian words as read from memory: src, dst, reserved,
    /// then len in the low and flags in the high half.
    pub fn from_words(w: [u32; 4]) -> Self {
        Self {
            src: w[0],
            dst: w[1],
            len: w[3] as u16,
            flags: (w[3] >> 16) as u16,
        }
    }

    /// The header as four words for [`SharedRegion::write_words`](crate::SharedRegion::write_words);
    /// `reserved` is 0.
    pub fn to_words(&self) -> [u32; 4] {
        [
            self.src,
            self.dst,
            0,
            u32::from(self.len) | (u32::from(self.flags) << 16),
        ]
    }

    /// The 16 bytes to put in front of the payload; `reserved` is 0.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let hdr = RpmsgHeader {
            src: U32::new(self.src),
            dst: U32::new(self.dst),
            reserved: U32::new(0),
            len: U16::new(self.len),
            flags: U16::new(self.flags),
        };
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(hdr.as_bytes());
        out
    }

    /// Writes the header into the first 16 bytes of `buf`.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] when `buf` is shorter than 16 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Error> {
        let have = buf.len();
        let dst = buf.get_mut(..HEADER_LEN).ok_or(Error::Truncated {
            need: HEADER_LEN,
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

    /// A header as Linux sends it to a remote's endpoint 0x400 from its 0x401, 5 payload bytes.
    const LINUX_HDR: [u8; 16] = [
        0x01, 0x04, 0, 0, // src 0x401
        0x00, 0x04, 0, 0, // dst 0x400
        0, 0, 0, 0, // reserved
        5, 0, // len
        0, 0, // flags
    ];

    #[test]
    fn parses_and_emits_linux_header() {
        let r = RpmsgRepr::parse(&LINUX_HDR).unwrap();
        assert_eq!(
            r,
            RpmsgRepr {
                src: 0x401,
                dst: 0x400,
                len: 5,
                flags: 0
            }
        );
        assert_eq!(r.to_bytes(), LINUX_HDR);
    }

    /// The word form is the byte form read as four little-endian words.
    #[test]
    fn words_are_the_header_read_as_little_endian_words() {
        let words: [u32; 4] = core::array::from_fn(|i| {
            u32::from_le_bytes(LINUX_HDR[4 * i..4 * i + 4].try_into().unwrap())
        });
        let r = RpmsgRepr::from_words(words);
        assert_eq!(r, RpmsgRepr::parse(&LINUX_HDR).unwrap());
        assert_eq!(r.to_words(), words);
        let odd = RpmsgRepr {
            src: 0xDEAD_BEEF,
            dst: 53,
            len: 0xFFFF,
            flags: 0x8001,
        };
        let bytes = odd.to_bytes();
        let back: [u32; 4] = core::array::from_fn(|i| {
            u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap())
        });
        assert_eq!(odd.to_words(), back);
        assert_eq!(RpmsgRepr::from_words(back), odd);
    }

    #[test]
    fn ignores_reserved_written_by_rpmsg_lite() {
        // RPMsg-Lite leaves a descriptor index in bytes 10..12.
        let mut b = LINUX_HDR;
        b[10] = 3;
        let r = RpmsgRepr::parse(&b).unwrap();
        assert_eq!(r.len, 5);
        assert_eq!(r.to_bytes()[8..12], [0, 0, 0, 0]);
    }

    #[test]
    fn refuses_short_input() {
        assert_eq!(
            RpmsgRepr::parse(&LINUX_HDR[..15]),
            Err(Error::Truncated { need: 16, have: 15 })
        );
        assert!(
            RpmsgRepr {
                src: 0,
                dst: 0,
                len: 0,
                flags: 0
            }
            .emit(&mut [0; 8])
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn round_trips(src: u32, dst: u32, len: u16, flags: u16) {
            let r = RpmsgRepr { src, dst, len, flags };
            let mut buf = [0u8; 20];
            r.emit(&mut buf).unwrap();
            prop_assert_eq!(RpmsgRepr::parse(&buf).unwrap(), r);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = RpmsgRepr::parse(&bytes);
        }
    }
}
