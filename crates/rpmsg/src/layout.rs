//! Where the rings and buffers lie in shared memory.
//!
//! Two sources of truth, as the peers have them:
//!
//! * **RPMsg-Lite layout** ([`LiteConfig`]): no resource table. Both vrings at the start of the
//!   region, vring 1 one `vring_size` slot after vring 0, then `2 × buffer_count` buffers
//!   (vring 0's receive buffers first, then vring 1's transmit buffers), exactly what
//!   `rpmsg_lite_master_init` lays out (wire.md 9.4). Both sides must agree on alignment, slot
//!   size, count and buffer size, as RPMsg-Lite's compile-time constants do.
//! * **Resource-table layout** ([`RscConfig`]): a remoteproc resource table in the region holds a
//!   vdev entry whose vrings give address, alignment, size and notify id (Linux remoteproc,
//!   OpenAMP). The driver side owns the buffer pool and says where it is.
//!
//! Offsets here are region offsets: the region is the shared memory block, starting where
//! RPMsg-Lite's `shmem_addr` would.

use crate::error::Error;
use crate::shm::SharedRegion;
use crate::virtqueue::Violation;
use crate::wire::Error as WireError;
use crate::wire::rsc::{
    CARVEOUT_LEN, RSC_CARVEOUT, RSC_DEVMEM, RSC_TRACE, RSC_VDEV, ResourceTable, TRACE_LEN,
    VIRTIO_ID_RPMSG, VdevInfo, vdev_field,
};
use crate::wire::vring::{VringLayout, align_up, lite_vring_slot_size};

/// The RPMsg-Lite static layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiteConfig {
    /// RPMsg-Lite link id; queue notify ids are `(link_id << 1) | q`.
    pub link_id: u32,
    /// `VRING_ALIGN` (0x10 on MCU ports, 0x1000 when Linux shares the layout).
    pub vring_align: usize,
    /// `VRING_SIZE`: the slot each vring occupies (computed on MCU ports, 0x8000 on i.MX8M).
    pub vring_size: usize,
    /// `RL_BUFFER_COUNT`: buffers per direction, which is also each vring's `num`.
    pub buffer_count: u16,
    /// `RL_BUFFER_SIZE`: header plus payload, a multiple of 4.
    pub buffer_size: u32,
}

impl LiteConfig {
    /// RPMsg-Lite's defaults: 2 buffers per direction of 496 payload bytes, vring alignment 0x10.
    pub const DEFAULT: Self = Self::new(2, 496, 0x10);

    /// A layout with `count` buffers per direction of `payload` bytes each, vrings aligned to
    /// `align`, and the slot size MCU ports compute (`VRING_DESC_SIZE + VRING_AVAIL_SIZE +
    /// VRING_USED_SIZE`, each rounded to `align`).
    pub const fn new(count: u16, payload: u32, align: usize) -> Self {
        let slot = match lite_vring_slot_size(count, align) {
            Some(s) => s,
            None => 0,
        };
        Self {
            link_id: 0,
            vring_align: align,
            vring_size: slot,
            buffer_count: count,
            buffer_size: (payload + 16 + 3) & !3,
        }
    }

    /// The same with a fixed `VRING_SIZE` slot (e.g. 0x8000 on i.MX8M with `VRING_ALIGN` 0x1000).
    pub const fn with_vring_size(mut self, size: usize) -> Self {
        self.vring_size = size;
        self
    }

    /// The same on another RPMsg-Lite link id.
    pub const fn with_link_id(mut self, id: u32) -> Self {
        self.link_id = id;
        self
    }

    /// Region offsets of vring 0, vring 1 and the buffer area.
    pub const fn offsets(&self) -> (usize, usize, usize) {
        let buffers = match align_up(2 * self.vring_size, 4) {
            Some(b) => b,
            None => usize::MAX,
        };
        (0, self.vring_size, buffers)
    }

    /// Bytes of shared memory the layout needs.
    pub const fn region_len(&self) -> usize {
        let (_, _, buffers) = self.offsets();
        buffers + 2 * self.buffer_count as usize * self.buffer_size as usize
    }

    /// Region offset of buffer `j` (`j < count`: vring 0 receive buffers, then vring 1's).
    pub const fn buffer(&self, j: usize) -> usize {
        self.offsets().2 + j * self.buffer_size as usize
    }

    /// Checks the geometry and returns the vring layout both rings use.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the count is not a power of two, the alignment is below 16 (where
    /// RPMsg-Lite places the used ring differently), a ring does not fit its slot, a buffer
    /// cannot hold a header, or the region is too small.
    pub fn validate(&self, region_len: usize) -> Result<VringLayout, Error> {
        let l = VringLayout::new(self.buffer_count, self.vring_align)
            .map_err(|_| Error::Config("RPMsg-Lite buffer count must be a power of two and vring alignment a power of two >= 16"))?;
        if l.size > self.vring_size {
            return Err(Error::Config("the vring does not fit in vring_size"));
        }
        if self.buffer_size < 16 || self.buffer_size % 4 != 0 {
            return Err(Error::Config(
                "buffer size must be a multiple of 4 and hold the 16-byte header",
            ));
        }
        if self.vring_size % 16 != 0 {
            return Err(Error::Config("vring_size must be a multiple of 16"));
        }
        if self.region_len() > region_len {
            return Err(Error::Config(
                "shared region too small for the RPMsg-Lite layout",
            ));
        }
        Ok(l)
    }
}

impl Default for LiteConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The resource-table layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RscConfig {
    /// Region offset of the resource table.
    pub table_offset: usize,
    /// Bytes of the table's area (at most [`RscConfig::MAX_TABLE_LEN`]): the table may be
    /// shorter (its entries are found through its offset array), never longer. A device
    /// that does not know the driver's table gives the whole area reserved for it.
    pub table_len: usize,
    /// Driver side: where to place each vring whose `da` is `FW_RSC_ADDR_ANY` (region offsets).
    pub vring_offsets: [Option<usize>; 2],
    /// Driver side: region offset of the buffer pool (receive buffers first, then transmit).
    pub pool_offset: usize,
    /// Driver side: bytes per buffer (512 as Linux).
    pub buffer_size: u32,
    /// Driver side: most buffers per direction (Linux posts `min(num, 256)`).
    pub max_buffers: u16,
}

impl RscConfig {
    /// Largest table we read (it is copied to the stack to be parsed).
    pub const MAX_TABLE_LEN: usize = 1024;

    /// A table at `table_offset` of `table_len` bytes, with Linux's buffer defaults.
    pub const fn new(table_offset: usize, table_len: usize) -> Self {
        Self {
            table_offset,
            table_len,
            vring_offsets: [None, None],
            pool_offset: 0,
            buffer_size: 512,
            max_buffers: 256,
        }
    }

    /// Reads the table out of the region and finds its rpmsg vdev, as Linux remoteproc
    /// would: an offset array of any length, carveout, devmem, trace and vendor entries
    /// before or after the vdev (those it does not use are skipped), every entry checked to
    /// lie inside the table area and not to overlap the header, the offset array or the vdev.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the area configured is longer than 1024 bytes or outside the
    /// region (ours to fix); [`Error::PeerViolation`] with [`Violation::MalformedTable`] when
    /// the table in it is malformed or has no usable rpmsg vdev (the table's author's to fix).
    pub fn read_vdev(&self, region: &SharedRegion<'_>) -> Result<VdevInfo, Error> {
        let mut buf = [0u8; Self::MAX_TABLE_LEN];
        let dst = buf
            .get_mut(..self.table_len)
            .ok_or(Error::Config("resource table longer than 1024 bytes"))?;
        // Byte by byte, never a wider load: the status byte in it is written with byte stores
        // by the driver while the device polls it with byte loads, and a word-sized load over
        // it (`copy_out`) would make those accesses mixed-size (shm.rs; Miri's race detector,
        // tests/two_threads.rs). Once per start and per link-up, so the cost does not matter.
        let outside = |_| Error::Config("resource table lies outside the shared region");
        if !region.contains(self.table_offset, dst.len()) {
            return Err(outside(()));
        }
        for (k, d) in dst.iter_mut().enumerate() {
            *d = region
                .read_u8(self.table_offset + k)
                .map_err(|_| outside(()))?;
        }
        let table = ResourceTable::new_checked(&*dst).map_err(table_fault)?;
        let vdev = table
            .find_vdev(VIRTIO_ID_RPMSG)
            .map_err(table_fault)?
            .ok_or(malformed(
                "no rpmsg vdev (virtio id 7) among the entries: num",
                table.num_entries(),
            ))?;
        vdev.check_rpmsg().map_err(table_fault)?;
        check_overlaps(&table, &vdev)?;
        Ok(vdev)
    }

    /// Region offset of a vdev field (see `wire::rsc::vdev_field`).
    pub fn vdev_field(&self, vdev: &VdevInfo, field: usize) -> usize {
        self.table_offset + vdev.offset + field
    }
}

fn malformed(field: &'static str, value: u32) -> Error {
    Error::PeerViolation(Violation::MalformedTable { field, value })
}

/// A parse error of the peer's table, said as what is wrong with it.
fn table_fault(e: WireError) -> Error {
    let sat = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    match e {
        WireError::Truncated { have, .. } => malformed(
            "table area shorter than the 16-byte header: bytes",
            sat(have as u64),
        ),
        WireError::BadValue { field, value } => malformed(field, sat(value)),
        WireError::OutOfBounds { field, value, .. } => {
            let field = match field {
                "num" => "offset array does not fit the table area: num",
                "entry offset" => "an entry lies outside the table area: entry end",
                "vdev" => "vdev entry runs past the table area: end",
                "vring" => "vring entry runs past the table area: end",
                "config_len" => "vdev config space runs past the table area: end",
                other => other,
            };
            malformed(field, sat(value))
        }
        WireError::NameTooLong { len } => malformed("name length", sat(len as u64)),
    }
}

/// No entry starts inside the header or the offset array, and none overlaps the vdev (which
/// the driver writes: status, features, vring addresses).
fn check_overlaps(table: &ResourceTable<&[u8]>, vdev: &VdevInfo) -> Result<(), Error> {
    let num = table.num_entries();
    let array_end = 16 + 4 * num as usize;
    let vdev_end =
        vdev.offset + vdev_field::vring(usize::from(vdev.num_of_vrings)) + vdev.config_len as usize;
    for i in 0..num {
        let at = table.entry_offset(i).map_err(table_fault)?;
        let sat = u32::try_from(at).unwrap_or(u32::MAX);
        if at < array_end {
            return Err(malformed(
                "an entry overlaps the header or offset array: entry offset",
                sat,
            ));
        }
        if at == vdev.offset {
            continue;
        }
        let len = match table.entry_type(i).map_err(table_fault)? {
            RSC_CARVEOUT | RSC_DEVMEM => CARVEOUT_LEN,
            RSC_TRACE => TRACE_LEN,
            RSC_VDEV => vdev_field::VRINGS,
            // Vendor and unknown entries: only their type word is known.
            _ => 4,
        };
        if at < vdev_end && at + len > vdev.offset {
            return Err(malformed(
                "an entry overlaps the rpmsg vdev: entry offset",
                sat,
            ));
        }
    }
    Ok(())
}

/// Which layout a link uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutConfig {
    /// RPMsg-Lite's static layout.
    Lite(LiteConfig),
    /// A remoteproc resource table.
    RscTable(RscConfig),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpmsg_lite_default_offsets_match_master_init() {
        // rpmsg_lite_master_init with RL_BUFFER_COUNT 2, RL_BUFFER_PAYLOAD_SIZE 496 and an MCU
        // VRING_ALIGN 0x10: VRING_SIZE = 32 + 16 + 32 = 80, vring1 at +80,
        // sh_mem_base = align4(shmem + 2 * 80) = +160, buffers of 512 bytes.
        let c = LiteConfig::DEFAULT;
        assert_eq!(c.vring_size, 80);
        assert_eq!(c.buffer_size, 512);
        assert_eq!(c.offsets(), (0, 80, 160));
        assert_eq!(
            [c.buffer(0), c.buffer(1), c.buffer(2), c.buffer(3)],
            [160, 672, 1184, 1696]
        );
        assert_eq!(c.region_len(), 2208);
        let l = c.validate(2208).unwrap();
        // Inside each ring: descriptors at 0, avail at 32, used at 48.
        assert_eq!((l.avail, l.used), (32, 48));
        assert!(c.validate(2207).is_err());
    }

    #[test]
    fn imx8m_linux_compatible_offsets() {
        // i.MX8M: VRING_ALIGN 0x1000, VRING_SIZE 0x8000, RL_BUFFER_COUNT 256.
        let c = LiteConfig::new(256, 496, 0x1000).with_vring_size(0x8000);
        assert_eq!(c.offsets(), (0, 0x8000, 0x10000));
        assert_eq!(c.buffer(256), 0x10000 + 256 * 512);
        let l = c.validate(c.region_len()).unwrap();
        assert_eq!((l.avail, l.used), (4096, 8192));
    }

    #[test]
    fn refuses_bad_lite_geometry() {
        assert!(LiteConfig::new(3, 496, 0x10).validate(1 << 20).is_err());
        assert!(LiteConfig::new(4, 496, 8).validate(1 << 20).is_err());
        assert!(
            LiteConfig::new(256, 496, 0x1000)
                .with_vring_size(0x1000)
                .validate(1 << 24)
                .is_err()
        );
    }
}
