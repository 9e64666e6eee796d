//! The remoteproc resource table (wire.md section 9.1 and 9.2): how a firmware tells the host
//! where its vrings, memory carveouts and trace buffer are.
//!
//! The firmware places the table in the ELF section `.resource_table`; the host (Linux
//! remoteproc, an OpenAMP host, or our driver role) parses it, then writes the negotiated
//! `gfeatures`, the virtio `status` byte and each vring's final `da` back into the firmware's
//! copy. Layout, all little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `ver`: 1 |
//! | 4 | 4 | `num`: number of entries |
//! | 8 | 8 | `reserved[2]`: 0 |
//! | 16 + 4 i | 4 | `offset[i]`: from the table start to entry i, whose first word is its type |
//!
//! Entries: [`RSC_VDEV`] (28 bytes, then 20 per vring, then `config_len` bytes of config space;
//! field offsets in [`vdev_field`]), [`RSC_CARVEOUT`] (56 bytes) and [`RSC_TRACE`] (48 bytes).
//! Other types are left for the caller to skip, as Linux and OpenAMP do.
//!
//! # Contract
//!
//! [`ResourceTable`] is a view in the smoltcp manner: [`ResourceTable::new_checked`] validates the
//! header and the offset array, and after that no getter panics; each entry getter checks its
//! own entry and returns an [`Error`] naming the failed check, whatever the bytes. The view
//! holds a copy of the table, never memory the peer can write while we read. [`RscTableRepr`]
//! builds a table in a `const` context, so a firmware can place it in a `static`.
//!
//! # Example
//!
//! ```
//! use rpmsg::wire::rsc::{
//!     FW_RSC_ADDR_ANY, ResourceTable, RscTableRepr, VIRTIO_ID_RPMSG, VdevRepr, VringInfo,
//! };
//!
//! // Firmware side: one rpmsg vdev whose vrings the host places.
//! const fn vring(notifyid: u32) -> VringInfo {
//!     VringInfo { da: FW_RSC_ADDR_ANY, align: 0x1000, num: 256, notifyid }
//! }
//! const TABLE: RscTableRepr<'static> = RscTableRepr {
//!     vdev: Some(VdevRepr {
//!         id: VIRTIO_ID_RPMSG,
//!         notifyid: 0,
//!         dfeatures: 1, // VIRTIO_RPMSG_F_NS
//!         config_len: 0,
//!         vrings: [vring(1), vring(2)],
//!     }),
//!     carveouts: &[],
//!     trace: None,
//! };
//! // #[unsafe(link_section = ".resource_table")] on real firmware.
//! static RESOURCE_TABLE: [u8; TABLE.buffer_len()] = {
//!     let mut bytes = [0; TABLE.buffer_len()];
//!     match TABLE.emit(&mut bytes) {
//!         Ok(_) => bytes,
//!         Err(_) => panic!("buffer_len() bytes always hold the table"),
//!     }
//! };
//!
//! // Host side: find the rpmsg vdev and check it before laying out its rings.
//! let table = ResourceTable::new_checked(&RESOURCE_TABLE[..])?;
//! let vdev = table.find_vdev(VIRTIO_ID_RPMSG)?.expect("the table declares one");
//! vdev.check_rpmsg()?;
//! assert_eq!(vdev.vrings[1].notifyid, 2);
//! # Ok::<(), rpmsg::wire::Error>(())
//! ```
#![warn(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use super::Error;
use super::vring::MAX_QUEUE_SIZE;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Entry type: physically contiguous memory the host allocates or maps for the firmware.
pub const RSC_CARVEOUT: u32 = 0;
/// Entry type: a device-memory (IOMMU) mapping request; carveout layout.
pub const RSC_DEVMEM: u32 = 1;
/// Entry type: a trace buffer the host exposes (Linux: debugfs `traceN`).
pub const RSC_TRACE: u32 = 2;
/// Entry type: a virtio device with its vrings.
pub const RSC_VDEV: u32 = 3;
/// First vendor-specific entry type.
pub const RSC_VENDOR_START: u32 = 128;
/// End of the vendor-specific entry types.
pub const RSC_VENDOR_END: u32 = 512;

/// An address field meaning "the host chooses".
pub const FW_RSC_ADDR_ANY: u32 = 0xFFFF_FFFF;
/// A notify id meaning "the host chooses" (OpenAMP host).
pub const RSC_NOTIFY_ID_ANY: u32 = 0xFFFF_FFFF;
/// The virtio device id of rpmsg.
pub const VIRTIO_ID_RPMSG: u32 = 7;

/// Bytes of the table header (`ver`, `num`, `reserved[2]`); the offset array follows.
pub const HEADER_LEN: usize = 16;
/// Bytes of a vdev entry without its vrings and config space, type word included.
pub const VDEV_LEN: usize = 28;
/// Bytes of one vring entry inside a vdev.
pub const VRING_ENTRY_LEN: usize = 20;
/// Bytes of a carveout (or devmem) entry, type word included.
pub const CARVEOUT_LEN: usize = 56;
/// Bytes of a trace entry, type word included.
pub const TRACE_LEN: usize = 48;
/// Bytes of the `name` field of carveout and trace entries.
pub const NAME_LEN: usize = 32;

/// Bytes of one slot of the offset array.
const SLOT_LEN: usize = 4;
/// Most vrings a vdev may declare (Linux's limit; rpmsg needs exactly this many).
const MAX_VRINGS: u8 = 2;

/// Offsets inside a vdev entry, counted from its type word (wire.md 9.2). The link reads and
/// writes `status`, `gfeatures` and each vring's `da` in shared memory through these.
pub mod vdev_field {
    use super::{VDEV_LEN, VRING_ENTRY_LEN};

    /// `type` (u32): [`RSC_VDEV`](super::RSC_VDEV).
    pub const TYPE: usize = 0;
    /// `id` (u32): virtio device id.
    pub const ID: usize = 4;
    /// `notifyid` (u32): notify id of the vdev itself.
    pub const NOTIFYID: usize = 8;
    /// `dfeatures` (u32): features the device offers.
    pub const DFEATURES: usize = 12;
    /// `gfeatures` (u32): features the driver accepted; written by the driver.
    pub const GFEATURES: usize = 16;
    /// `config_len` (u32): bytes of config space after the vrings.
    pub const CONFIG_LEN: usize = 20;
    /// `status` (u8): the virtio status byte; written by the driver.
    pub const STATUS: usize = 24;
    /// `num_of_vrings` (u8).
    pub const NUM_OF_VRINGS: usize = 25;
    /// `reserved[2]` (u8 each): 0.
    pub const RESERVED: usize = 26;
    /// The first vring entry.
    pub const VRINGS: usize = VDEV_LEN;

    /// Offset of vring `k`'s entry; add the `VRING_*` offsets below for its fields. Saturates
    /// instead of overflowing for absurd `k`.
    pub const fn vring(k: usize) -> usize {
        VRINGS.saturating_add(VRING_ENTRY_LEN.saturating_mul(k))
    }

    /// `da` (u32) inside a vring entry: device address of the ring; written by the driver.
    pub const VRING_DA: usize = 0;
    /// `align` (u32) inside a vring entry.
    pub const VRING_ALIGN: usize = 4;
    /// `num` (u32) inside a vring entry: queue size.
    pub const VRING_NUM: usize = 8;
    /// `notifyid` (u32) inside a vring entry: doorbell id of the ring.
    pub const VRING_NOTIFYID: usize = 12;
    /// `pa` (Linux) or reserved (OpenAMP) (u32) inside a vring entry: 0.
    pub const VRING_RESERVED: usize = 16;
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawHeader {
    ver: U32,
    num: U32,
    /// `reserved[0]` in the low half, `reserved[1]` in the high half.
    reserved: U64,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawVdev {
    ty: U32,
    id: U32,
    notifyid: U32,
    dfeatures: U32,
    gfeatures: U32,
    config_len: U32,
    status: u8,
    num_of_vrings: u8,
    reserved: [u8; 2],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawVring {
    da: U32,
    align: U32,
    num: U32,
    notifyid: U32,
    reserved: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawCarveout {
    ty: U32,
    da: U32,
    pa: U32,
    len: U32,
    flags: U32,
    reserved: U32,
    name: [u8; NAME_LEN],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawTrace {
    ty: U32,
    da: U32,
    len: U32,
    reserved: U32,
    name: [u8; NAME_LEN],
}

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<RawHeader>() == HEADER_LEN);
    assert!(size_of::<RawVdev>() == VDEV_LEN);
    assert!(size_of::<RawVring>() == VRING_ENTRY_LEN);
    assert!(size_of::<RawCarveout>() == CARVEOUT_LEN);
    assert!(size_of::<RawTrace>() == TRACE_LEN);
    assert!(offset_of!(RawVdev, ty) == vdev_field::TYPE);
    assert!(offset_of!(RawVdev, id) == vdev_field::ID);
    assert!(offset_of!(RawVdev, notifyid) == vdev_field::NOTIFYID);
    assert!(offset_of!(RawVdev, dfeatures) == vdev_field::DFEATURES);
    assert!(offset_of!(RawVdev, gfeatures) == vdev_field::GFEATURES);
    assert!(offset_of!(RawVdev, config_len) == vdev_field::CONFIG_LEN);
    assert!(offset_of!(RawVdev, status) == vdev_field::STATUS);
    assert!(offset_of!(RawVdev, num_of_vrings) == vdev_field::NUM_OF_VRINGS);
    assert!(offset_of!(RawVdev, reserved) == vdev_field::RESERVED);
    assert!(offset_of!(RawVring, da) == vdev_field::VRING_DA);
    assert!(offset_of!(RawVring, align) == vdev_field::VRING_ALIGN);
    assert!(offset_of!(RawVring, num) == vdev_field::VRING_NUM);
    assert!(offset_of!(RawVring, notifyid) == vdev_field::VRING_NOTIFYID);
    assert!(offset_of!(RawVring, reserved) == vdev_field::VRING_RESERVED);
};

impl RawHeader {
    const fn into_bytes(self) -> [u8; HEADER_LEN] {
        zerocopy::transmute!(self)
    }
}

impl RawVdev {
    const fn into_bytes(self) -> [u8; VDEV_LEN] {
        zerocopy::transmute!(self)
    }
}

impl RawVring {
    const fn into_bytes(self) -> [u8; VRING_ENTRY_LEN] {
        zerocopy::transmute!(self)
    }
}

impl RawCarveout {
    const fn into_bytes(self) -> [u8; CARVEOUT_LEN] {
        zerocopy::transmute!(self)
    }
}

impl RawTrace {
    const fn into_bytes(self) -> [u8; TRACE_LEN] {
        zerocopy::transmute!(self)
    }
}

/// `n` as an index; saturates on targets where it does not fit, which no slice can reach.
fn index(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Copies an `R` out of `bytes` at `at`, or names `field` as running past the end.
fn read<R: FromBytes>(bytes: &[u8], field: &'static str, at: usize) -> Result<R, Error> {
    bytes
        .get(at..)
        .and_then(|tail| R::read_from_prefix(tail).ok())
        .map(|(r, _)| r)
        .ok_or(Error::OutOfBounds {
            field,
            value: (at as u64).saturating_add(size_of::<R>() as u64),
            limit: bytes.len() as u64,
        })
}

/// Fails with [`Error::BadValue`] on `type` unless the entry is of type `want`.
fn expect_type(ty: U32, want: u32) -> Result<(), Error> {
    match ty.get() {
        t if t == want => Ok(()),
        t => Err(Error::BadValue {
            field: "type",
            value: t.into(),
        }),
    }
}

/// One vring of a vdev entry, as the table holds it.
///
/// `da` and `notifyid` are the firmware's request until the driver has set `DRIVER_OK`: Linux
/// writes the final `da` and its own notify ids (0, 1, ... across the processor's vdevs) before
/// that, so the device reads them only afterwards (wire.md section 13, rows 16 and 35).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VringInfo {
    /// Device address of the ring, or [`FW_RSC_ADDR_ANY`] for "the host chooses".
    pub da: u32,
    /// Alignment of the used ring in the ring layout.
    pub align: u32,
    /// Queue size.
    pub num: u32,
    /// Doorbell id of the ring, or [`RSC_NOTIFY_ID_ANY`].
    pub notifyid: u32,
}

impl VringInfo {
    fn from_raw(r: &RawVring) -> Self {
        Self {
            da: r.da.get(),
            align: r.align.get(),
            num: r.num.get(),
            notifyid: r.notifyid.get(),
        }
    }

    const fn to_raw(self) -> RawVring {
        RawVring {
            da: U32::new(self.da),
            align: U32::new(self.align),
            num: U32::new(self.num),
            notifyid: U32::new(self.notifyid),
            reserved: U32::ZERO,
        }
    }
}

/// A parsed vdev entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VdevInfo {
    /// Byte offset of the entry (its type word) from the start of the table.
    pub offset: usize,
    /// Virtio device id; [`VIRTIO_ID_RPMSG`] for rpmsg.
    pub id: u32,
    /// Notify id of the vdev itself (status and config changes).
    pub notifyid: u32,
    /// Features the device offers (bit 0: name service).
    pub dfeatures: u32,
    /// Features the driver accepted.
    pub gfeatures: u32,
    /// Bytes of config space after the vrings.
    pub config_len: u32,
    /// The virtio status byte; test single bits, never the whole byte (wire.md 13, row 2).
    pub status: u8,
    /// Only the first `num_of_vrings` are meaningful; rpmsg needs exactly 2.
    pub num_of_vrings: u8,
    /// The vrings; those past `num_of_vrings` are zero.
    pub vrings: [VringInfo; 2],
}

impl VdevInfo {
    /// Checks that this vdev can carry rpmsg: id [`VIRTIO_ID_RPMSG`], two vrings, each with a
    /// power-of-two `num` of at most 32768 and a power-of-two `align` of at least 16 (the ring
    /// layout differs between peers below 16; wire.md 13, row 15).
    ///
    /// # Errors
    ///
    /// [`Error::BadValue`] naming `id`, `num_of_vrings`, `vring num` or `vring align`.
    pub fn check_rpmsg(&self) -> Result<(), Error> {
        if self.id != VIRTIO_ID_RPMSG {
            return Err(Error::BadValue {
                field: "id",
                value: self.id.into(),
            });
        }
        if self.num_of_vrings != MAX_VRINGS {
            return Err(Error::BadValue {
                field: "num_of_vrings",
                value: self.num_of_vrings.into(),
            });
        }
        for v in &self.vrings {
            if !v.num.is_power_of_two() || v.num > u32::from(MAX_QUEUE_SIZE) {
                return Err(Error::BadValue {
                    field: "vring num",
                    value: v.num.into(),
                });
            }
            if !v.align.is_power_of_two() || v.align < 16 {
                return Err(Error::BadValue {
                    field: "vring align",
                    value: v.align.into(),
                });
            }
        }
        Ok(())
    }
}

/// A resource table in a byte buffer: validated header, offset array and entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceTable<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ResourceTable<T> {
    /// Wraps `buffer` without checking it; see [`check_len`](Self::check_len).
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    ///
    /// # Errors
    ///
    /// As [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let table = Self::new_unchecked(buffer);
        table.check_len()?;
        Ok(table)
    }

    /// Checks the header and the offset array: `ver` is 1, `reserved` is 0, the offset array
    /// fits, and each entry's type word lies inside the buffer. Entries themselves are checked
    /// by their getters.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] below 16 bytes; [`Error::BadValue`] on `ver` or `reserved`;
    /// [`Error::OutOfBounds`] on `num` when the offset array does not fit, or on `entry offset`.
    pub fn check_len(&self) -> Result<(), Error> {
        let bytes = self.buffer.as_ref();
        let (hdr, _) = RawHeader::read_from_prefix(bytes).map_err(|_| Error::Truncated {
            need: HEADER_LEN,
            have: bytes.len(),
        })?;
        if hdr.ver.get() != 1 {
            return Err(Error::BadValue {
                field: "ver",
                value: hdr.ver.get().into(),
            });
        }
        if hdr.reserved.get() != 0 {
            return Err(Error::BadValue {
                field: "reserved",
                value: hdr.reserved.get(),
            });
        }
        let max = bytes.len().saturating_sub(HEADER_LEN) / SLOT_LEN;
        if index(hdr.num.get()) > max {
            return Err(Error::OutOfBounds {
                field: "num",
                value: hdr.num.get().into(),
                limit: max as u64,
            });
        }
        for i in 0..hdr.num.get() {
            self.entry_offset(i)?;
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The `ver` field.
    ///
    /// # Panics
    ///
    /// On a buffer shorter than 16 bytes, which only [`new_unchecked`](Self::new_unchecked)
    /// lets through.
    pub fn version(&self) -> u32 {
        self.header_word(0)
    }

    /// The `num` field: how many entries the offset array holds.
    ///
    /// # Panics
    ///
    /// As [`version`](Self::version).
    pub fn num_entries(&self) -> u32 {
        self.header_word(4)
    }

    fn header_word(&self, at: usize) -> u32 {
        read::<U32>(self.buffer.as_ref(), "header", at)
            .expect("a checked table holds its 16-byte header")
            .get()
    }

    /// Byte offset of entry `i` (its type word) from the start of the table.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] on `entry index` when `i >= num`, or on `entry offset` when the
    /// entry's type word lies outside the table.
    pub fn entry_offset(&self, i: u32) -> Result<usize, Error> {
        self.entry(i).map(|(offset, _)| offset)
    }

    /// Type of entry `i`: one of the `RSC_*` constants, or a value to skip.
    ///
    /// # Errors
    ///
    /// As [`entry_offset`](Self::entry_offset).
    pub fn entry_type(&self, i: u32) -> Result<u32, Error> {
        self.entry(i).map(|(_, ty)| ty)
    }

    /// Offset and type word of entry `i`.
    fn entry(&self, i: u32) -> Result<(usize, u32), Error> {
        let bytes = self.buffer.as_ref();
        let num = read::<U32>(bytes, "num", 4)?.get();
        if i >= num {
            return Err(Error::OutOfBounds {
                field: "entry index",
                value: i.into(),
                limit: num.into(),
            });
        }
        let slot = HEADER_LEN.saturating_add(SLOT_LEN.saturating_mul(index(i)));
        let offset = index(read::<U32>(bytes, "offset array", slot)?.get());
        let ty = read::<U32>(bytes, "entry offset", offset)?.get();
        Ok((offset, ty))
    }

    /// Entry `i` as a vdev: checks that it is one, that its 28 bytes, `num_of_vrings` vring
    /// entries and `config_len` bytes of config space lie inside the table, that it has at most
    /// 2 vrings and that `reserved` is 0. Whether it suits rpmsg is
    /// [`VdevInfo::check_rpmsg`]'s question.
    ///
    /// # Errors
    ///
    /// As [`entry_offset`](Self::entry_offset); [`Error::BadValue`] on `type`, `vdev reserved`
    /// or `num_of_vrings`; [`Error::OutOfBounds`] on `vdev`, `vring` or `config_len` for an
    /// entry running past the end.
    pub fn vdev(&self, i: u32) -> Result<VdevInfo, Error> {
        let bytes = self.buffer.as_ref();
        let offset = self.entry_offset(i)?;
        let raw: RawVdev = read(bytes, "vdev", offset)?;
        expect_type(raw.ty, RSC_VDEV)?;
        if raw.reserved != [0; 2] {
            let value = u16::from_le_bytes(raw.reserved).into();
            return Err(Error::BadValue {
                field: "vdev reserved",
                value,
            });
        }
        if raw.num_of_vrings > MAX_VRINGS {
            let value = raw.num_of_vrings.into();
            return Err(Error::BadValue {
                field: "num_of_vrings",
                value,
            });
        }
        let num_of_vrings = usize::from(raw.num_of_vrings);
        let mut vrings = [VringInfo::default(); 2];
        for (k, v) in vrings.iter_mut().enumerate().take(num_of_vrings) {
            let at = offset.saturating_add(vdev_field::vring(k));
            *v = VringInfo::from_raw(&read(bytes, "vring", at)?);
        }
        let config = offset.saturating_add(vdev_field::vring(num_of_vrings)) as u64;
        let end = config.saturating_add(raw.config_len.get().into());
        if end > bytes.len() as u64 {
            let limit = bytes.len() as u64;
            return Err(Error::OutOfBounds {
                field: "config_len",
                value: end,
                limit,
            });
        }
        Ok(VdevInfo {
            offset,
            id: raw.id.get(),
            notifyid: raw.notifyid.get(),
            dfeatures: raw.dfeatures.get(),
            gfeatures: raw.gfeatures.get(),
            config_len: raw.config_len.get(),
            status: raw.status,
            num_of_vrings: raw.num_of_vrings,
            vrings,
        })
    }

    /// The first vdev entry whose id is `virtio_id`.
    ///
    /// # Errors
    ///
    /// As [`vdev`](Self::vdev), for any vdev entry met before the match: a malformed vdev
    /// fails the whole table, as it does in Linux.
    pub fn find_vdev(&self, virtio_id: u32) -> Result<Option<VdevInfo>, Error> {
        let num = read::<U32>(self.buffer.as_ref(), "num", 4)?.get();
        for i in 0..num {
            if self.entry_type(i)? == RSC_VDEV {
                let vdev = self.vdev(i)?;
                if vdev.id == virtio_id {
                    return Ok(Some(vdev));
                }
            }
        }
        Ok(None)
    }

    /// Entry `i` as a carveout (type [`RSC_CARVEOUT`]), with `reserved` checked to be 0. After
    /// boot Linux has written the `da`, `pa` and `len` it chose.
    ///
    /// # Errors
    ///
    /// As [`entry_offset`](Self::entry_offset); [`Error::BadValue`] on `type` or
    /// `carveout reserved`; [`Error::OutOfBounds`] on `carveout`.
    pub fn carveout(&self, i: u32) -> Result<CarveoutRepr, Error> {
        let raw: RawCarveout = read(self.buffer.as_ref(), "carveout", self.entry_offset(i)?)?;
        expect_type(raw.ty, RSC_CARVEOUT)?;
        if raw.reserved.get() != 0 {
            let value = raw.reserved.get().into();
            return Err(Error::BadValue {
                field: "carveout reserved",
                value,
            });
        }
        Ok(CarveoutRepr {
            da: raw.da.get(),
            pa: raw.pa.get(),
            len: raw.len.get(),
            flags: raw.flags.get(),
            name: raw.name,
        })
    }

    /// Entry `i` as a trace buffer (type [`RSC_TRACE`]), with `reserved` checked to be 0.
    ///
    /// # Errors
    ///
    /// As [`entry_offset`](Self::entry_offset); [`Error::BadValue`] on `type` or
    /// `trace reserved`; [`Error::OutOfBounds`] on `trace`.
    pub fn trace(&self, i: u32) -> Result<TraceRepr, Error> {
        let raw: RawTrace = read(self.buffer.as_ref(), "trace", self.entry_offset(i)?)?;
        expect_type(raw.ty, RSC_TRACE)?;
        if raw.reserved.get() != 0 {
            let value = raw.reserved.get().into();
            return Err(Error::BadValue {
                field: "trace reserved",
                value,
            });
        }
        Ok(TraceRepr {
            da: raw.da.get(),
            len: raw.len.get(),
            name: raw.name,
        })
    }
}

/// The vdev a firmware declares. `gfeatures` and `status` are emitted as 0 (the driver writes
/// them), always with two vrings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VdevRepr {
    /// Virtio device id; [`VIRTIO_ID_RPMSG`] for rpmsg.
    pub id: u32,
    /// Notify id of the vdev itself.
    pub notifyid: u32,
    /// Features offered: bit 0 (name service) is the only one to offer (wire.md 13, row 36).
    pub dfeatures: u32,
    /// Bytes of config space, emitted as zeros and padded to a multiple of 4.
    pub config_len: u32,
    /// vring0 (device to driver) and vring1 (driver to device).
    pub vrings: [VringInfo; 2],
}

impl VdevRepr {
    /// Bytes the entry takes in the table, padding after the config space included.
    const fn entry_len(&self) -> usize {
        let config = (self.config_len as usize).saturating_add(3) & !3;
        vdev_field::vring(MAX_VRINGS as usize).saturating_add(config)
    }
}

/// A carveout entry: memory the firmware needs at `da`, allocated (`pa` of
/// [`FW_RSC_ADDR_ANY`]) or matched by `name` by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarveoutRepr {
    /// Device address, or [`FW_RSC_ADDR_ANY`].
    pub da: u32,
    /// Physical address, or [`FW_RSC_ADDR_ANY`].
    pub pa: u32,
    /// Length in bytes.
    pub len: u32,
    /// IOMMU protection flags.
    pub flags: u32,
    /// Name, NUL-padded; as found when parsed (see [`name_field`]).
    pub name: [u8; NAME_LEN],
}

/// A trace-buffer entry: `len` bytes of log at `da` the host may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRepr {
    /// Device address of the buffer.
    pub da: u32,
    /// Length in bytes.
    pub len: u32,
    /// Name, NUL-padded; as found when parsed (see [`name_field`]).
    pub name: [u8; NAME_LEN],
}

/// The 32-byte `name` field holding `name`: at most 31 bytes, then NUL padding. Usable in a
/// `const`.
///
/// # Errors
///
/// [`Error::NameTooLong`] when `name` is longer than 31 bytes.
pub const fn name_field(name: &str) -> Result<[u8; NAME_LEN], Error> {
    let mut field = [0; NAME_LEN];
    let mut src = name.as_bytes();
    if src.len() >= NAME_LEN {
        return Err(Error::NameTooLong { len: src.len() });
    }
    let mut dst: &mut [u8] = &mut field;
    while let ([d, dst_rest @ ..], [s, src_rest @ ..]) = (dst, src) {
        *d = *s;
        dst = dst_rest;
        src = src_rest;
    }
    Ok(field)
}

/// What a firmware declares: the table [`emit`](Self::emit) writes, entries in this order: the
/// vdev, the carveouts, the trace buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RscTableRepr<'a> {
    /// The virtio device, if any.
    pub vdev: Option<VdevRepr>,
    /// Memory carveouts.
    pub carveouts: &'a [CarveoutRepr],
    /// The trace buffer, if any.
    pub trace: Option<TraceRepr>,
}

impl RscTableRepr<'_> {
    /// Number of entries the table holds.
    pub const fn num_entries(&self) -> usize {
        (self.vdev.is_some() as usize)
            .saturating_add(self.carveouts.len())
            .saturating_add(self.trace.is_some() as usize)
    }

    /// Exact bytes [`emit`](Self::emit) writes. Usable in a `const`, to size a `static`.
    pub const fn buffer_len(&self) -> usize {
        let mut len = HEADER_LEN.saturating_add(SLOT_LEN.saturating_mul(self.num_entries()));
        if let Some(vdev) = &self.vdev {
            len = len.saturating_add(vdev.entry_len());
        }
        len = len.saturating_add(CARVEOUT_LEN.saturating_mul(self.carveouts.len()));
        if self.trace.is_some() {
            len = len.saturating_add(TRACE_LEN);
        }
        len
    }

    /// Writes the table into the first [`buffer_len`](Self::buffer_len) bytes of `buf` and
    /// returns that length. Usable in a `const`.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] when `buf` is shorter; [`Error::OutOfBounds`] on `table length` when
    /// the table would be 4 GiB or more (its offsets are 32-bit).
    #[expect(
        clippy::arithmetic_side_effects,
        clippy::cast_possible_truncation,
        reason = "every position is below buffer_len(), checked just above to fit in u32"
    )]
    pub const fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.buffer_len();
        if len > u32::MAX as usize {
            let limit = u32::MAX as u64;
            return Err(Error::OutOfBounds {
                field: "table length",
                value: len as u64,
                limit,
            });
        }
        let have = buf.len();
        let Some((table, _)) = buf.split_at_mut_checked(len) else {
            return Err(Error::Truncated { need: len, have });
        };
        let header = RawHeader {
            ver: U32::new(1),
            num: U32::new(self.num_entries() as u32),
            reserved: U64::ZERO,
        };
        put(table, 0, header.into_bytes());
        let mut slot = HEADER_LEN;
        let mut at = HEADER_LEN + SLOT_LEN * self.num_entries();
        if let Some(v) = &self.vdev {
            put(table, slot, (at as u32).to_le_bytes());
            slot += SLOT_LEN;
            let raw = RawVdev {
                ty: U32::new(RSC_VDEV),
                id: U32::new(v.id),
                notifyid: U32::new(v.notifyid),
                dfeatures: U32::new(v.dfeatures),
                gfeatures: U32::ZERO,
                config_len: U32::new(v.config_len),
                status: 0,
                num_of_vrings: MAX_VRINGS,
                reserved: [0; 2],
            };
            put(table, at, raw.into_bytes());
            put(
                table,
                at + vdev_field::vring(0),
                v.vrings[0].to_raw().into_bytes(),
            );
            put(
                table,
                at + vdev_field::vring(1),
                v.vrings[1].to_raw().into_bytes(),
            );
            let mut config = at + vdev_field::vring(2);
            at += v.entry_len();
            while config < at {
                put(table, config, [0; 4]);
                config += 4;
            }
        }
        let mut carveouts = self.carveouts;
        while let [c, rest @ ..] = carveouts {
            put(table, slot, (at as u32).to_le_bytes());
            slot += SLOT_LEN;
            let raw = RawCarveout {
                ty: U32::new(RSC_CARVEOUT),
                da: U32::new(c.da),
                pa: U32::new(c.pa),
                len: U32::new(c.len),
                flags: U32::new(c.flags),
                reserved: U32::ZERO,
                name: c.name,
            };
            put(table, at, raw.into_bytes());
            at += CARVEOUT_LEN;
            carveouts = rest;
        }
        if let Some(t) = &self.trace {
            put(table, slot, (at as u32).to_le_bytes());
            let raw = RawTrace {
                ty: U32::new(RSC_TRACE),
                da: U32::new(t.da),
                len: U32::new(t.len),
                reserved: U32::ZERO,
                name: t.name,
            };
            put(table, at, raw.into_bytes());
        }
        Ok(len)
    }
}

/// Writes `src` at `at` in `buf`; the caller has checked that it fits.
const fn put<const N: usize>(buf: &mut [u8], at: usize, src: [u8; N]) {
    if let Some((_, tail)) = buf.split_at_mut_checked(at) {
        if let Some(dst) = tail.first_chunk_mut::<N>() {
            *dst = src;
        }
    }
}

#[cfg(test)]
mod tests;
