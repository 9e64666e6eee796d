//! The legacy virtio split ring as RPMsg uses it (wire.md section 3): constants, the 16-byte
//! descriptor, and where the descriptor table, available ring and used ring lie for a queue of
//! `num` entries and a given alignment.

use super::Error;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Descriptor flag: the chain continues in `next`.
pub const VRING_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the device writes this buffer.
pub const VRING_DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer is an indirect descriptor table.
pub const VRING_DESC_F_INDIRECT: u16 = 4;
/// `avail.flags`: the driver asks not to be interrupted when buffers are used.
pub const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// `used.flags`: the device asks not to be notified when buffers are made available.
pub const VRING_USED_F_NO_NOTIFY: u16 = 1;

/// Device feature bit 0: name-service announcements.
pub const VIRTIO_RPMSG_F_NS: u32 = 0;
/// Transport feature bit 29: event-index suppression. We never offer or accept it.
pub const VIRTIO_RING_F_EVENT_IDX: u32 = 29;

/// Virtio status bit: the guest noticed the device.
pub const VIRTIO_CONFIG_S_ACKNOWLEDGE: u8 = 0x01;
/// Virtio status bit: the guest has a driver for it.
pub const VIRTIO_CONFIG_S_DRIVER: u8 = 0x02;
/// Virtio status bit: the driver is ready; the rings are live.
pub const VIRTIO_CONFIG_S_DRIVER_OK: u8 = 0x04;
/// Virtio status bit: features negotiated (never written by Linux for rpmsg, a legacy device).
pub const VIRTIO_CONFIG_S_FEATURES_OK: u8 = 0x08;
/// Virtio status bit: the device needs a reset (OpenAMP host uses it).
pub const VIRTIO_CONFIG_S_NEEDS_RESET: u8 = 0x40;
/// Virtio status bit: the driver gave up.
pub const VIRTIO_CONFIG_S_FAILED: u8 = 0x80;

/// Bytes of one descriptor.
pub const DESC_LEN: usize = 16;
/// Bytes of one used-ring element.
pub const USED_ELEM_LEN: usize = 8;
/// Largest queue size every peer accepts (RPMsg-Lite's cap).
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// A descriptor as it lies in the table.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct VringDesc {
    /// Peer ("physical") address of the buffer.
    pub addr: U64,
    /// Length of the buffer.
    pub len: U32,
    /// `VRING_DESC_F_*`.
    pub flags: U16,
    /// Next descriptor when `NEXT` is set.
    pub next: U16,
}

const _: () = assert!(core::mem::size_of::<VringDesc>() == DESC_LEN);

/// Offsets inside the available ring, from its start.
pub mod avail {
    /// `flags` (u16).
    pub const FLAGS: usize = 0;
    /// `idx` (u16).
    pub const IDX: usize = 2;
    /// Slot `i` of the ring (u16). `i < num`, so `4 + 2 * i` cannot overflow.
    pub const fn ring(i: u16) -> usize {
        4 + 2 * i as usize
    }
}

/// Offsets inside the used ring, from its start.
pub mod used {
    /// `flags` (u16).
    pub const FLAGS: usize = 0;
    /// `idx` (u16).
    pub const IDX: usize = 2;
    /// `id` (u32) of element `i`.
    pub const fn id(i: u16) -> usize {
        4 + 8 * i as usize
    }
    /// `len` (u32) of element `i`.
    pub const fn len(i: u16) -> usize {
        8 + 8 * i as usize
    }
}

/// Rounds `v` up to a multiple of `align` (a power of two); `None` on overflow.
pub const fn align_up(v: usize, align: usize) -> Option<usize> {
    match v.checked_add(align - 1) {
        Some(x) => Some(x & !(align - 1)),
        None => None,
    }
}

/// Where one vring's three parts lie, as offsets from the ring's start (the standard legacy
/// layout of Linux and OpenAMP; RPMsg-Lite agrees for every `align >= 16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VringLayout {
    /// Queue size, a power of two.
    pub num: u16,
    /// The alignment the used ring was placed with.
    pub align: usize,
    /// Offset of the available ring (`16 * num`).
    pub avail: usize,
    /// Offset of the used ring.
    pub used: usize,
    /// Total bytes of the ring, up to the end of `avail_event`.
    pub size: usize,
}

impl VringLayout {
    /// The standard layout for `num` entries aligned to `align`:
    /// `used = align_up(16 num + 6 + 2 num, align)`, `size = used + 6 + 8 num`.
    ///
    /// # Errors
    ///
    /// [`Error::BadValue`] unless `num` is a power of two in `1..=32768` and `align` a power of
    /// two of at least 16 (RPMsg-Lite places the used ring differently below 16).
    pub const fn new(num: u16, align: usize) -> Result<Self, Error> {
        if num == 0 || !num.is_power_of_two() || num > MAX_QUEUE_SIZE {
            return Err(Error::BadValue {
                field: "vring num",
                value: num as u64,
            });
        }
        if align < 16 || !align.is_power_of_two() || align > (1 << 20) {
            return Err(Error::BadValue {
                field: "vring align",
                value: align as u64,
            });
        }
        let n = num as usize;
        // n <= 32768 and align <= 1 MiB: every product and sum below fits in 32 bits.
        let avail = DESC_LEN * n;
        let used = match align_up(avail + 6 + 2 * n, align) {
            Some(u) => u,
            None => {
                return Err(Error::BadValue {
                    field: "vring align",
                    value: align as u64,
                });
            }
        };
        Ok(Self {
            num,
            align,
            avail,
            used,
            size: used + 6 + USED_ELEM_LEN * n,
        })
    }

    /// Offset of descriptor `i` (`i < num`).
    pub const fn desc(&self, i: u16) -> usize {
        DESC_LEN * i as usize
    }

    /// Offset of `used_event` (after the available ring).
    pub const fn used_event(&self) -> usize {
        self.avail + 4 + 2 * self.num as usize
    }

    /// Offset of `avail_event` (after the used ring).
    pub const fn avail_event(&self) -> usize {
        self.used + 4 + USED_ELEM_LEN * self.num as usize
    }
}

/// The size RPMsg-Lite MCU ports reserve for each vring (`VRING_SIZE` when the platform header
/// computes it): descriptor table, available ring and used ring each rounded up to `align`,
/// counting the one-element arrays its structs declare.
pub const fn lite_vring_slot_size(num: u16, align: usize) -> Option<usize> {
    let n = num as usize;
    let desc = align_up(DESC_LEN * n, align);
    // struct vring_avail is 6 bytes (flags, idx, ring[1]); plus num slots and used_event.
    let avail = align_up(6 + 2 * n + 2, align);
    // struct vring_used is 12 bytes (flags, idx, ring[1]); plus num elements and avail_event.
    let used = align_up(12 + USED_ELEM_LEN * n + 2, align);
    match (desc, avail, used) {
        (Some(d), Some(a), Some(u)) => Some(d + a + u),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_256_entry_ring() {
        // wire.md 3.4: num 256, align 4096 -> avail 4096, used_event 4612, used 8192,
        // avail_event 10244, total 10246.
        let l = VringLayout::new(256, 4096).unwrap();
        assert_eq!(
            (l.avail, l.used_event(), l.used, l.avail_event(), l.size),
            (4096, 4612, 8192, 10244, 10246)
        );
    }

    #[test]
    fn rpmsg_lite_mcu_default() {
        // RL_BUFFER_COUNT 2, VRING_ALIGN 0x10: desc 32, avail 16, used 32 -> VRING_SIZE 80.
        assert_eq!(lite_vring_slot_size(2, 16), Some(80));
        let l = VringLayout::new(2, 16).unwrap();
        assert_eq!((l.avail, l.used, l.size), (32, 48, 70));
    }

    #[test]
    fn refuses_bad_geometry() {
        assert!(VringLayout::new(0, 16).is_err());
        assert!(VringLayout::new(3, 16).is_err());
        assert!(VringLayout::new(4, 8).is_err());
        assert!(VringLayout::new(4, 24).is_err());
        assert!(VringLayout::new(32768, 4096).is_ok());
    }

    #[test]
    fn field_offsets() {
        assert_eq!(avail::ring(3), 10);
        assert_eq!(used::id(2), 20);
        assert_eq!(used::len(2), 24);
    }
}
