//! [`resource_table!`](crate::resource_table): a firmware's remoteproc resource table, laid out
//! at compile time and placed in the ELF section `.resource_table` (wire.md section 9.1).
//!
//! The macro builds an [`RscTableRepr`] from what the firmware declares (one vdev, optional
//! carveouts, an optional trace buffer), sizes a `static` with
//! [`RscTableRepr::buffer_len`] and fills it with [`RscTableRepr::emit`], both `const fn`s, so
//! the bytes are computed by the compiler and a table that cannot be emitted is a build error.
//! The `static` is an [`RscTableBytes`]: `#[repr(C, align(8))]` around the bytes.
//!
//! # Contract
//!
//! The host writes into the loaded table (`gfeatures`, the virtio `status` byte, each vring's
//! `da`) while the firmware runs, so the bytes are atomics, never plain `u8`s the compiler may
//! assume constant: read them with [`RscTableBytes::to_bytes`] (a snapshot) or through
//! [`RscTableBytes::as_atomic`]. The section must be kept and loaded where it is linked (its
//! load address equal to its run address, untouched by the start-up code); on `cortex-m-rt`
//! that takes a few lines of `memory.x`, shown in the macro's documentation.
//!
//! A [`Link`](crate::Link) in [`RscConfig`](crate::RscConfig) layout reads the table from its
//! shared region, at a region offset; a table in its own section lies outside that region, so
//! today the firmware copies [`RscTableBytes::to_bytes`] into the region before it starts the
//! link.

#![warn(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use super::rsc::{RscTableRepr, TraceRepr};
use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

/// The bytes of a resource table, in a `static` the host may write into.
///
/// Made by [`resource_table!`](crate::resource_table); `LEN` is the table's
/// [`buffer_len`](RscTableRepr::buffer_len). Aligned to 8 like the entries the host reads as
/// 32-bit words, and like a [`SharedRegion`](crate::SharedRegion) base.
#[repr(C, align(8))]
pub struct RscTableBytes<const LEN: usize> {
    bytes: [AtomicU8; LEN],
}

impl<const LEN: usize> RscTableBytes<LEN> {
    /// The table `repr` emits, for a `static` initializer.
    ///
    /// # Panics
    ///
    /// When `repr` does not emit exactly `LEN` bytes. In a `static` or `const` initializer,
    /// where the macro calls it, that is a compile-time error instead.
    #[expect(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        reason = "i < LEN, the length of both arrays"
    )]
    pub const fn new(repr: &RscTableRepr<'_>) -> Self {
        let mut buf = [0u8; LEN];
        match repr.emit(&mut buf) {
            Ok(n) if n == LEN => {}
            Ok(_) => panic!("resource table: LEN is larger than RscTableRepr::buffer_len()"),
            Err(_) => panic!(
                "resource table: LEN is smaller than RscTableRepr::buffer_len(), or the table \
                 reaches 4 GiB"
            ),
        }
        let mut bytes = [const { AtomicU8::new(0) }; LEN];
        let mut i = 0;
        while i < LEN {
            bytes[i] = AtomicU8::new(buf[i]);
            i += 1;
        }
        Self { bytes }
    }

    /// Bytes in the table.
    pub const fn len(&self) -> usize {
        LEN
    }

    /// Whether the table is empty (never, for a table with a header).
    pub const fn is_empty(&self) -> bool {
        LEN == 0
    }

    /// A copy of the table as it is now, host writes included (relaxed byte loads: take it
    /// after the event that orders them, such as `DRIVER_OK` in the status byte).
    pub fn to_bytes(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        for (o, b) in out.iter_mut().zip(&self.bytes) {
            *o = b.load(Ordering::Relaxed);
        }
        out
    }

    /// The bytes as atomics, for code that reads fields in place.
    pub const fn as_atomic(&self) -> &[AtomicU8] {
        &self.bytes
    }

    /// The local address of the table (what a host is told, or a loader checks).
    pub fn addr(&self) -> usize {
        core::ptr::from_ref(self).addr()
    }
}

impl<const LEN: usize> fmt::Debug for RscTableBytes<LEN> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RscTableBytes")
            .field("addr", &self.addr())
            .field("len", &LEN)
            .finish()
    }
}

/// `trace: ..` of [`resource_table!`](crate::resource_table) when given, else `None`.
#[doc(hidden)]
pub const fn optional_trace(given: &[Option<TraceRepr>]) -> Option<TraceRepr> {
    match given {
        [t, ..] => *t,
        [] => None,
    }
}

/// Declares a firmware's resource table: a `static` [`RscTableBytes`] in the ELF section
/// `.resource_table`, kept with `#[used]`, its bytes emitted at compile time by
/// [`RscTableRepr::emit`](crate::wire::rsc::RscTableRepr::emit).
///
/// Entries come in this order: the vdev (a
/// [`VdevRepr`](crate::wire::rsc::VdevRepr)), then the `carveouts` (an array of
/// [`CarveoutRepr`](crate::wire::rsc::CarveoutRepr), optional), then the `trace` buffer (an
/// `Option<`[`TraceRepr`](crate::wire::rsc::TraceRepr)`>`, optional). Every value must be a
/// constant expression; names go through the `const fn`
/// [`name_field`](crate::wire::rsc::name_field).
///
/// ```
/// use rpmsg::resource_table;
/// use rpmsg::wire::rsc::{
///     CarveoutRepr, FW_RSC_ADDR_ANY, ResourceTable, TraceRepr, VIRTIO_ID_RPMSG, VdevRepr,
///     VringInfo, name_field,
/// };
///
/// const fn named(name: &str) -> [u8; 32] {
///     match name_field(name) {
///         Ok(n) => n,
///         Err(_) => panic!("names hold at most 31 bytes"),
///     }
/// }
///
/// resource_table! {
///     /// What this firmware tells remoteproc.
///     pub static RESOURCE_TABLE = {
///         vdev: VdevRepr {
///             id: VIRTIO_ID_RPMSG,
///             notifyid: 0,
///             dfeatures: 1, // VIRTIO_RPMSG_F_NS
///             config_len: 0,
///             vrings: [
///                 VringInfo { da: 0x3000_0000, align: 0x1000, num: 256, notifyid: 1 },
///                 VringInfo { da: 0x3000_8000, align: 0x1000, num: 256, notifyid: 2 },
///             ],
///         },
///         carveouts: [CarveoutRepr {
///             da: 0x3001_0000,
///             pa: FW_RSC_ADDR_ANY,
///             len: 0x4_0000,
///             flags: 0,
///             name: named("vdev0buffer"),
///         }],
///         trace: Some(TraceRepr { da: 0x2000_8000, len: 0x400, name: named("trace0") }),
///     };
/// }
///
/// let bytes = RESOURCE_TABLE.to_bytes();
/// let vdev = ResourceTable::new_checked(&bytes[..])?.find_vdev(VIRTIO_ID_RPMSG)?.unwrap();
/// assert_eq!(vdev.vrings[1].da, 0x3000_8000);
/// assert_eq!(RESOURCE_TABLE.addr() % 8, 0);
/// # Ok::<(), rpmsg::wire::Error>(())
/// ```
///
/// # Keeping the section
///
/// `#[used]` keeps the `static` (on ELF it also marks the section `SHF_GNU_RETAIN`), but
/// `cortex-m-rt`'s `link.x` has no rule for `.resource_table`, so the linker places it as an
/// orphan wherever it sees fit. Give it an output section in `memory.x`: kept, in memory the host
/// can write, loaded where it is linked (no `AT>`), and out of reach of the start-up code's copy
/// of `.data` and zeroing of `.bss`:
///
/// ```text
/// SECTIONS
/// {
///   .resource_table : ALIGN(8)
///   {
///     KEEP(*(.resource_table .resource_table.*))
///   } > RAM
/// }
/// INSERT BEFORE .data;
/// ```
///
/// `llvm-readelf -S firmware.elf` then lists `.resource_table`. On Apple targets, whose
/// section names have another form, the attribute is left out.
#[macro_export]
macro_rules! resource_table {
    (
        $(#[$attr:meta])*
        $vis:vis static $name:ident = {
            vdev: $vdev:expr
            $(, carveouts: [$($carveout:expr),* $(,)?])?
            $(, trace: $trace:expr)?
            $(,)?
        };
    ) => {
        $(#[$attr])*
        #[used]
        #[cfg_attr(not(target_vendor = "apple"), unsafe(link_section = ".resource_table"))]
        $vis static $name: $crate::wire::rsc_macro::RscTableBytes<
            {
                $crate::wire::rsc::RscTableRepr {
                    vdev: ::core::option::Option::Some($vdev),
                    carveouts: &[$($($carveout),*)?],
                    trace: $crate::wire::rsc_macro::optional_trace(&[$($trace)?]),
                }
                .buffer_len()
            },
        > = $crate::wire::rsc_macro::RscTableBytes::new(&$crate::wire::rsc::RscTableRepr {
            vdev: ::core::option::Option::Some($vdev),
            carveouts: &[$($($carveout),*)?],
            trace: $crate::wire::rsc_macro::optional_trace(&[$($trace)?]),
        });
    };
}

#[cfg(test)]
mod tests {
    #![expect(clippy::indexing_slicing, reason = "test code on known buffers")]
    #![expect(
        unsafe_code,
        reason = "the macro puts each table in `.resource_table` with `link_section`, an unsafe \
                  attribute; a data section of its own is sound (crates using the macro are not \
                  linted for it, as the code comes from this crate)"
    )]

    use super::*;
    use crate::wire::rsc::{
        CarveoutRepr, FW_RSC_ADDR_ANY, RSC_CARVEOUT, RSC_TRACE, RSC_VDEV, ResourceTable,
        VIRTIO_ID_RPMSG, VdevInfo, VdevRepr, VringInfo, name_field, vdev_field,
    };

    const fn named(name: &str) -> [u8; 32] {
        match name_field(name) {
            Ok(n) => n,
            Err(_) => panic!("name too long"),
        }
    }

    const VDEV: VdevRepr = VdevRepr {
        id: VIRTIO_ID_RPMSG,
        notifyid: 0,
        dfeatures: 1,
        config_len: 0,
        vrings: [
            VringInfo {
                da: 0x6000_0400,
                align: 16,
                num: 4,
                notifyid: 1,
            },
            VringInfo {
                da: 0x6000_0800,
                align: 16,
                num: 4,
                notifyid: 2,
            },
        ],
    };

    resource_table! {
        /// A vdev with fixed vring addresses, a buffer carveout and a trace buffer.
        static FULL = {
            vdev: VDEV,
            carveouts: [CarveoutRepr {
                da: 0x6000_1000,
                pa: FW_RSC_ADDR_ANY,
                len: 0x1000,
                flags: 0,
                name: named("vdev0buffer"),
            }],
            trace: Some(TraceRepr { da: 0x2030_0000, len: 0x400, name: named("trace0") }),
        };
    }

    resource_table! {
        static VDEV_ONLY = { vdev: VDEV };
    }

    resource_table! {
        pub(crate) static TWO_CARVEOUTS = {
            vdev: VdevRepr { dfeatures: 0, ..VDEV },
            carveouts: [
                CarveoutRepr { da: 1, pa: 2, len: 3, flags: 4, name: named("a") },
                CarveoutRepr { da: 5, pa: 6, len: 7, flags: 8, name: named("b") },
            ],
            trace: None,
        };
    }

    /// `FULL` written out by hand from wire.md 9.1 and 9.2.
    #[rustfmt::skip]
    const GOLDEN: [u8; 200] = [
        // header
        1, 0, 0, 0,                 // ver 1
        3, 0, 0, 0,                 // num 3
        0, 0, 0, 0, 0, 0, 0, 0,     // reserved[2]
        28, 0, 0, 0,                // offset[0]: vdev
        96, 0, 0, 0,                // offset[1]: carveout
        152, 0, 0, 0,               // offset[2]: trace
        // vdev @ 28
        3, 0, 0, 0,                 // type RSC_VDEV
        7, 0, 0, 0,                 // id VIRTIO_ID_RPMSG
        0, 0, 0, 0,                 // notifyid 0
        1, 0, 0, 0,                 // dfeatures: name service
        0, 0, 0, 0,                 // gfeatures (the driver's)
        0, 0, 0, 0,                 // config_len
        0,                          // status (the driver's)
        2,                          // num_of_vrings
        0, 0,                       // reserved[2]
        // vring0 @ 56
        0x00, 0x04, 0x00, 0x60,     // da 0x6000_0400
        16, 0, 0, 0,                // align 16
        4, 0, 0, 0,                 // num 4
        1, 0, 0, 0,                 // notifyid 1
        0, 0, 0, 0,                 // pa / reserved
        // vring1 @ 76
        0x00, 0x08, 0x00, 0x60,     // da 0x6000_0800
        16, 0, 0, 0,                // align 16
        4, 0, 0, 0,                 // num 4
        2, 0, 0, 0,                 // notifyid 2
        0, 0, 0, 0,                 // pa / reserved
        // carveout @ 96
        0, 0, 0, 0,                 // type RSC_CARVEOUT
        0x00, 0x10, 0x00, 0x60,     // da 0x6000_1000
        0xff, 0xff, 0xff, 0xff,     // pa FW_RSC_ADDR_ANY
        0x00, 0x10, 0x00, 0x00,     // len 0x1000
        0, 0, 0, 0,                 // flags
        0, 0, 0, 0,                 // reserved
        b'v', b'd', b'e', b'v', b'0', b'b', b'u', b'f', // name "vdev0buffer"
        b'f', b'e', b'r', 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
        // trace @ 152
        2, 0, 0, 0,                 // type RSC_TRACE
        0x00, 0x00, 0x30, 0x20,     // da 0x2030_0000
        0x00, 0x04, 0x00, 0x00,     // len 0x400
        0, 0, 0, 0,                 // reserved
        b't', b'r', b'a', b'c', b'e', b'0', 0, 0, // name "trace0"
        0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn emits_the_hand_written_table() {
        assert_eq!(FULL.len(), 200);
        assert_eq!(FULL.to_bytes(), GOLDEN);
    }

    #[test]
    fn is_aligned_to_8() {
        assert_eq!(align_of_val(&FULL), 8);
        assert_eq!(FULL.addr() % 8, 0);
        assert_eq!(VDEV_ONLY.addr() % 8, 0);
        assert_eq!(size_of_val(&FULL), 200);
    }

    #[test]
    fn parser_finds_the_declared_vdev() {
        let bytes = FULL.to_bytes();
        let t = ResourceTable::new_checked(&bytes[..]).unwrap();
        assert_eq!(t.num_entries(), 3);
        let vdev = t.find_vdev(VIRTIO_ID_RPMSG).unwrap().unwrap();
        assert_eq!(
            vdev,
            VdevInfo {
                offset: 28,
                id: 7,
                notifyid: 0,
                dfeatures: 1,
                gfeatures: 0,
                config_len: 0,
                status: 0,
                num_of_vrings: 2,
                vrings: VDEV.vrings,
            }
        );
        assert_eq!(vdev.check_rpmsg(), Ok(()));
        assert_eq!(
            [t.entry_type(0), t.entry_type(1), t.entry_type(2)],
            [Ok(RSC_VDEV), Ok(RSC_CARVEOUT), Ok(RSC_TRACE)]
        );
        let c = t.carveout(1).unwrap();
        assert_eq!((c.da, c.pa, c.len), (0x6000_1000, FW_RSC_ADDR_ANY, 0x1000));
        assert_eq!(&c.name[..12], b"vdev0buffer\0");
        let tr = t.trace(2).unwrap();
        assert_eq!(
            (tr.da, tr.len, &tr.name[..7]),
            (0x2030_0000, 0x400, &b"trace0\0"[..])
        );
    }

    #[test]
    fn optional_entries_may_be_left_out() {
        // The same vdev, one offset slot instead of three.
        let mut expected = [0u8; 16 + 4 + 68];
        expected[..16].copy_from_slice(&GOLDEN[..16]);
        expected[4] = 1; // num 1
        expected[16] = 20; // offset[0]: vdev
        expected[20..].copy_from_slice(&GOLDEN[28..96]);
        let bytes = VDEV_ONLY.to_bytes();
        assert_eq!(bytes, expected);
        let t = ResourceTable::new_checked(&bytes[..]).unwrap();
        assert_eq!(t.find_vdev(VIRTIO_ID_RPMSG).unwrap().unwrap().offset, 20);

        let bytes = TWO_CARVEOUTS.to_bytes();
        let t = ResourceTable::new_checked(&bytes[..]).unwrap();
        assert_eq!(t.num_entries(), 3);
        assert_eq!(t.find_vdev(VIRTIO_ID_RPMSG).unwrap().unwrap().dfeatures, 0);
        assert_eq!(t.carveout(1).unwrap().len, 3);
        assert_eq!(t.carveout(2).unwrap().flags, 8);
        assert_eq!(t.entry_offset(2), Ok(16 + 3 * 4 + 68 + 56));
    }

    #[test]
    fn host_writes_are_seen() {
        resource_table! {
            static WRITTEN = { vdev: VDEV };
        }
        let vdev = 20;
        let status = &WRITTEN.as_atomic()[vdev + vdev_field::STATUS];
        status.store(0x07, Ordering::Relaxed);
        let bytes = WRITTEN.to_bytes();
        let t = ResourceTable::new_checked(&bytes[..]).unwrap();
        assert_eq!(t.vdev(0).unwrap().status, 0x07);
    }

    #[test]
    #[should_panic(expected = "LEN is smaller")]
    fn refuses_a_length_too_small() {
        let repr = RscTableRepr {
            vdev: Some(VDEV),
            carveouts: &[],
            trace: None,
        };
        let _ = RscTableBytes::<87>::new(&repr);
    }

    #[test]
    #[should_panic(expected = "LEN is larger")]
    fn refuses_a_length_too_large() {
        let repr = RscTableRepr {
            vdev: Some(VDEV),
            carveouts: &[],
            trace: None,
        };
        let _ = RscTableBytes::<89>::new(&repr);
    }
}
