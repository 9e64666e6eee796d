//! Where the rings and buffers lie in the shared file, for both layouts, and the core
//! [`Config`] that goes with each role.
//!
//! Peer addresses are region offsets: both processes use a [`LinearMap`] with base 0, so a
//! descriptor's `addr` is the buffer's byte offset from the start of the file.
//!
//! # RPMsg-Lite layout
//!
//! Exactly `rpmsg_lite_master_init`'s, from [`LiteConfig::new`]`(buffers, buffer_size - 16,
//! align)`: vring 0 at 0, vring 1 one slot later, then `buffers` receive buffers (vring 0)
//! followed by `buffers` transmit buffers (vring 1).
//!
//! # Resource-table layout
//!
//! The driver side writes a remoteproc resource table with one rpmsg vdev (name service
//! offered, vring notify ids 0 and 1, `da = FW_RSC_ADDR_ANY`) before anyone can open the file;
//! at start it writes the vrings' final `da` into the table and sets `DRIVER_OK`, and the
//! device side reads the table only then. Offsets:
//!
//! | region offset | what |
//! |---|---|
//! | 0 | resource table (88 bytes; 1 KiB reserved, the most the core reads, and read whole: a table of any valid shape in it is accepted) |
//! | `align_up(0x400, align)` | vring 0 |
//! | `align_up(vring 0 end, align)` | vring 1 |
//! | `align_up(vring 1 end, 64)` | buffer pool: `buffers` receive buffers, then `buffers` transmit buffers |

use crate::error::HostError;
use rpmsg::layout::LayoutConfig;
use rpmsg::wire::rsc::{FW_RSC_ADDR_ANY, RscTableRepr, VIRTIO_ID_RPMSG, VdevRepr, VringInfo};
use rpmsg::wire::vring::{VringLayout, align_up};
use rpmsg::{Config, LinearMap, LiteConfig, Role, RscConfig, SharedRegion};
use std::fmt;
use std::str::FromStr;

/// Which of the two layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayoutKind {
    /// RPMsg-Lite's static layout: no resource table.
    Lite,
    /// A remoteproc resource table at offset 0, written by the driver side.
    RscTable,
}

impl LayoutKind {
    /// The command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lite => "lite",
            Self::RscTable => "rsc-table",
        }
    }

    pub(crate) fn code(self) -> u32 {
        match self {
            Self::Lite => 1,
            Self::RscTable => 2,
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::Lite),
            2 => Some(Self::RscTable),
            _ => None,
        }
    }
}

impl fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LayoutKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lite" => Ok(Self::Lite),
            "rsc-table" | "rsc" => Ok(Self::RscTable),
            _ => Err(format!("unknown layout {s:?}; use lite or rsc-table")),
        }
    }
}

/// The shape of the shared memory: layout, buffer count and size, vring alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Which layout.
    pub layout: LayoutKind,
    /// Buffers per direction, which is also each vring's size: a power of two up to 256.
    pub buffers: u16,
    /// Bytes per buffer, the 16-byte header included: a multiple of 4, at least 32.
    pub buffer_size: u32,
    /// Vring alignment: a power of two, at least 16.
    pub align: u32,
    /// RPMsg-Lite layout: `VRING_SIZE`, the fixed slot each vring occupies (0: the size MCU
    /// ports compute from the count and alignment; RPMsg-Lite's i.MX ports use 0x8000 with
    /// alignment 0x1000). Both sides must agree. 0 with the resource-table layout.
    pub vring_size: u32,
}

/// Region offset of the resource table.
pub const RSC_TABLE_OFFSET: usize = 0;
/// Bytes reserved for the resource table (the most the core reads).
pub const RSC_TABLE_RESERVED: usize = RscConfig::MAX_TABLE_LEN;
/// Most buffers per direction (the `N` of [`HostLink`](crate::HostLink)).
pub const MAX_BUFFERS: u16 = 256;

/// Where the resource-table layout puts things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RscOffsets {
    /// Bytes of the table written at offset 0.
    pub table_len: usize,
    /// Region offsets of vring 0 and vring 1.
    pub vrings: [usize; 2],
    /// Region offset of the buffer pool.
    pub pool: usize,
    /// Bytes of the whole region.
    pub region_len: usize,
}

impl Default for Geometry {
    fn default() -> Self {
        Self::LITE_DEFAULT
    }
}

impl Geometry {
    /// RPMsg-Lite's defaults: 2 buffers per direction of 512 bytes, vrings aligned to 16.
    pub const LITE_DEFAULT: Self = Self {
        layout: LayoutKind::Lite,
        buffers: 2,
        buffer_size: 512,
        align: 0x10,
        vring_size: 0,
    };

    /// Checks the numbers.
    ///
    /// # Errors
    ///
    /// [`HostError::Geometry`] naming the value that cannot work.
    pub fn validate(&self) -> Result<(), HostError> {
        if self.buffers == 0 || !self.buffers.is_power_of_two() || self.buffers > MAX_BUFFERS {
            return Err(HostError::Geometry(format!(
                "buffer count {} must be a power of two from 1 to {MAX_BUFFERS}",
                self.buffers
            )));
        }
        if self.buffer_size < 32 || self.buffer_size % 4 != 0 || self.buffer_size > 65536 {
            return Err(HostError::Geometry(format!(
                "buffer size {} must be a multiple of 4 from 32 to 65536 (16 bytes of it are the header)",
                self.buffer_size
            )));
        }
        if self.align < 16 || !self.align.is_power_of_two() || self.align > 1 << 20 {
            return Err(HostError::Geometry(format!(
                "vring alignment {:#x} must be a power of two from 0x10 to 0x100000",
                self.align
            )));
        }
        if self.vring_size != 0 && self.layout != LayoutKind::Lite {
            return Err(HostError::Geometry(
                "--vring-size applies to the lite layout only (a resource table places the vrings)"
                    .into(),
            ));
        }
        match self.layout {
            LayoutKind::Lite => {
                let l = self.lite();
                l.validate(l.region_len())
                    .map_err(|e| HostError::Geometry(e.to_string()))?;
            }
            LayoutKind::RscTable => {
                self.rsc_offsets()?;
            }
        }
        Ok(())
    }

    /// Payload bytes per message (buffer size minus the header).
    pub fn payload(&self) -> usize {
        self.buffer_size as usize - 16
    }

    /// The RPMsg-Lite configuration of this geometry.
    pub fn lite(&self) -> LiteConfig {
        let l = LiteConfig::new(self.buffers, self.buffer_size - 16, self.align as usize);
        match self.vring_size {
            0 => l,
            size => l.with_vring_size(size as usize),
        }
    }

    fn vring_layout(&self) -> Result<VringLayout, HostError> {
        VringLayout::new(self.buffers, self.align as usize)
            .map_err(|e| HostError::Geometry(e.to_string()))
    }

    /// The resource-table layout's offsets.
    ///
    /// # Errors
    ///
    /// [`HostError::Geometry`] when the numbers are invalid or overflow.
    pub fn rsc_offsets(&self) -> Result<RscOffsets, HostError> {
        let ring = self.vring_layout()?;
        let align = self.align as usize;
        let overflow = || HostError::Geometry("layout does not fit in memory".into());
        let v0 = align_up(RSC_TABLE_RESERVED, align).ok_or_else(overflow)?;
        let v1 = align_up(v0 + ring.size, align).ok_or_else(overflow)?;
        let pool = align_up(v1 + ring.size, 64).ok_or_else(overflow)?;
        // buffers <= 256 and buffer_size <= 65536: the pool is at most 32 MiB.
        let region_len = pool + 2 * usize::from(self.buffers) * self.buffer_size as usize;
        Ok(RscOffsets {
            table_len: self.rsc_table().buffer_len(),
            vrings: [v0, v1],
            pool,
            region_len,
        })
    }

    /// The resource table the driver side writes at offset 0.
    pub fn rsc_table(&self) -> RscTableRepr<'static> {
        let vring = |notifyid| VringInfo {
            da: FW_RSC_ADDR_ANY,
            align: self.align,
            num: u32::from(self.buffers),
            notifyid,
        };
        RscTableRepr {
            vdev: Some(VdevRepr {
                id: VIRTIO_ID_RPMSG,
                notifyid: 2,
                dfeatures: 1 << rpmsg::wire::vring::VIRTIO_RPMSG_F_NS,
                config_len: 0,
                vrings: [vring(0), vring(1)],
            }),
            carveouts: &[],
            trace: None,
        }
    }

    /// Bytes of the shared region (the file holds this, rounded up to a page, plus the host
    /// block).
    ///
    /// # Errors
    ///
    /// [`HostError::Geometry`] as [`Geometry::validate`].
    pub fn region_len(&self) -> Result<usize, HostError> {
        self.validate()?;
        match self.layout {
            LayoutKind::Lite => Ok(self.lite().region_len()),
            LayoutKind::RscTable => Ok(self.rsc_offsets()?.region_len),
        }
    }

    /// Region offset of the buffer pool (the baseline ring uses the same bytes).
    ///
    /// # Errors
    ///
    /// [`HostError::Geometry`] as [`Geometry::validate`].
    pub fn pool_offset(&self) -> Result<usize, HostError> {
        match self.layout {
            LayoutKind::Lite => Ok(self.lite().offsets().2),
            LayoutKind::RscTable => Ok(self.rsc_offsets()?.pool),
        }
    }

    /// The core's layout for this geometry.
    ///
    /// # Errors
    ///
    /// [`HostError::Geometry`] as [`Geometry::validate`].
    pub fn layout_config(&self) -> Result<LayoutConfig, HostError> {
        self.validate()?;
        Ok(match self.layout {
            LayoutKind::Lite => LayoutConfig::Lite(self.lite()),
            LayoutKind::RscTable => {
                let o = self.rsc_offsets()?;
                // The whole reserved area: the table the driver side finds there may be any
                // valid shape (an OpenAMP host's is 116 bytes), not only the 88 we write.
                let mut r = RscConfig::new(RSC_TABLE_OFFSET, RSC_TABLE_RESERVED);
                r.vring_offsets = [Some(o.vrings[0]), Some(o.vrings[1])];
                r.pool_offset = o.pool;
                r.buffer_size = self.buffer_size;
                r.max_buffers = self.buffers;
                LayoutConfig::RscTable(r)
            }
        })
    }

    /// The core configuration for `role`: name service on, everything else the core's default.
    ///
    /// # Errors
    ///
    /// [`HostError::Geometry`] as [`Geometry::validate`].
    pub fn config(&self, role: Role) -> Result<Config, HostError> {
        Ok(Config::new(role, self.layout_config()?))
    }

    /// The address map both sides use: peer address = region offset.
    pub fn address_map(region_len: usize) -> LinearMap {
        LinearMap {
            base: 0,
            len: region_len,
        }
    }

    /// Writes what the driver side must place before the file is opened: the resource table for
    /// [`LayoutKind::RscTable`], nothing for RPMsg-Lite (its driver lays out the rings at start).
    ///
    /// # Errors
    ///
    /// [`HostError::Geometry`] when the region is too small.
    pub fn write_initial(&self, region: &SharedRegion<'_>) -> Result<(), HostError> {
        if self.layout != LayoutKind::RscTable {
            return Ok(());
        }
        let table = self.rsc_table();
        let mut buf = [0u8; RSC_TABLE_RESERVED];
        let n = table
            .emit(&mut buf)
            .map_err(|e| HostError::Geometry(format!("resource table: {e}")))?;
        region
            .copy_in(RSC_TABLE_OFFSET, &buf[..n])
            .map_err(|e| HostError::Geometry(format!("resource table: {e}")))
    }
}

impl fmt::Display for Geometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--layout {} --buffers {} --buffer-size {} --align {:#x}",
            self.layout, self.buffers, self.buffer_size, self.align
        )?;
        if self.vring_size != 0 {
            write!(f, " --vring-size {:#x}", self.vring_size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lite_default_matches_rpmsg_lite() {
        let g = Geometry::LITE_DEFAULT;
        assert_eq!(g.region_len().unwrap(), 2208);
        assert_eq!(g.pool_offset().unwrap(), 160);
        assert_eq!(g.payload(), 496);
    }

    #[test]
    fn rsc_table_layout_offsets() {
        let g = Geometry {
            layout: LayoutKind::RscTable,
            buffers: 16,
            buffer_size: 512,
            align: 0x1000,
            vring_size: 0,
        };
        let o = g.rsc_offsets().unwrap();
        assert_eq!(o.table_len, 88);
        assert_eq!(o.vrings[0], 0x1000);
        // 16 entries aligned to 4 KiB: used ring at 0x1000, ring size 0x1000 + 6 + 128 = 0x1086.
        assert_eq!(o.vrings[1], 0x3000);
        assert_eq!(o.pool, 0x40c0);
        assert_eq!(o.region_len, 0x40c0 + 32 * 512);
    }

    /// Item 4 of issue 13: the table area is the whole reserved KiB, so a device reads a
    /// 116-byte OpenAMP table (before: only the 88 bytes we write, "resource table entry is
    /// malformed").
    #[test]
    fn item4_rsc_geometry_reads_openamp_116_byte_table() {
        use rpmsg::testing::TestMemory;
        use rpmsg::testing::peers::{ZYNQMP_R5_VDEV_OFFSET, openamp_zynqmp_r5_table};
        let g = Geometry {
            layout: LayoutKind::RscTable,
            buffers: 256,
            buffer_size: 512,
            align: 0x1000,
            vring_size: 0,
        };
        let LayoutConfig::RscTable(rsc) = g.layout_config().unwrap() else {
            panic!("rsc layout");
        };
        let mut mem = TestMemory::new(g.region_len().unwrap());
        let region = mem.region();
        region.copy_in(0, &openamp_zynqmp_r5_table()).unwrap();
        let vdev = rsc.read_vdev(&region).unwrap();
        assert_eq!(vdev.offset, ZYNQMP_R5_VDEV_OFFSET);
        assert_eq!(vdev.vrings[1].notifyid, 2);
    }

    /// Item 5 of issue 13: the i.MX ports' fixed slot.
    #[test]
    fn item5_imx_vring_size() {
        let g = Geometry {
            buffers: 256,
            align: 0x1000,
            vring_size: 0x8000,
            ..Geometry::LITE_DEFAULT
        };
        assert_eq!(g.pool_offset().unwrap(), 0x10000);
        assert!(g.to_string().ends_with("--vring-size 0x8000"));
        let small = Geometry {
            vring_size: 0x1000,
            ..g
        };
        assert!(small.validate().is_err(), "256 entries do not fit 0x1000");
        let rsc = Geometry {
            layout: LayoutKind::RscTable,
            ..g
        };
        assert!(rsc.validate().is_err());
    }

    #[test]
    fn refuses_bad_numbers() {
        let bad = [
            Geometry {
                buffers: 3,
                ..Geometry::LITE_DEFAULT
            },
            Geometry {
                buffers: 512,
                ..Geometry::LITE_DEFAULT
            },
            Geometry {
                buffer_size: 30,
                ..Geometry::LITE_DEFAULT
            },
            Geometry {
                align: 8,
                ..Geometry::LITE_DEFAULT
            },
        ];
        for g in bad {
            assert!(g.validate().is_err(), "{g}");
        }
    }
}

#[cfg(test)]
mod spec_tests {
    use super::*;
    use crate::GeometrySpec;
    use std::path::Path;

    /// Item 5 of issue 13: a device told `--vring-size 0x8000` refuses a file whose vrings use
    /// the computed slot, naming the setting.
    #[test]
    fn item5_vring_size_takes_part_in_the_file_check() {
        let file = Geometry {
            buffers: 256,
            align: 0x1000,
            ..Geometry::LITE_DEFAULT
        };
        let spec = GeometrySpec {
            vring_size: Some(0x8000),
            ..GeometrySpec::default()
        };
        let e = spec.check(&file, Path::new("/dev/shm/x")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("--vring-size"), "{text}");
        assert!(text.contains("0x8000"), "{text}");
        let same = Geometry {
            vring_size: 0x8000,
            ..file
        };
        spec.check(&same, Path::new("/dev/shm/x")).unwrap();
        assert_eq!(spec.resolve(file).vring_size, 0x8000);
    }
}
