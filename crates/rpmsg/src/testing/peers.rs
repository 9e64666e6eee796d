//! Hand-played peers: the other side of a link written as raw ring and table writes, in the
//! order the real peers make them, so a test can stop a peer between any two of its writes and
//! let our side run in between.
//!
//! * [`RawRing`]: one vring as a peer pokes it (descriptors, avail and used rings).
//! * [`LiteMaster`]: RPMsg-Lite's master. [`LiteMaster::step`] replays `rpmsg_lite_master_init`
//!   one group of writes at a time (ring set-up, each vring 0 buffer, each vring 1 pre-fill,
//!   the final kick); [`LiteMaster::send`] and [`LiteMaster::recv`] then do what
//!   `rpmsg_lite_send` and the master's receive callback do, including `RL_ERR_NO_MEM` when
//!   vring 1's used ring holds no buffer for it.
//! * [`RscDriver`]: Linux remoteproc / `virtio_rpmsg_bus` or an OpenAMP host bringing up the
//!   vdev of a resource table: status bytes, features and vring addresses in their order.
//! * [`RawTable`]: resource tables of any shape (offset array of any length, carveout, devmem,
//!   trace and vendor entries around the vdev), and [`openamp_zynqmp_r5_table`], the 116-byte
//!   table of OpenAMP's zynqmp_r5 example firmware.
//!
//! Every helper panics when the region cannot hold what it writes: they are for tests.

use crate::layout::LiteConfig;
use crate::shm::SharedRegion;
use crate::wire::rpmsg::RpmsgRepr;
use crate::wire::rsc::{
    FW_RSC_ADDR_ANY, RSC_CARVEOUT, RSC_DEVMEM, RSC_TRACE, RSC_VDEV, VIRTIO_ID_RPMSG, vdev_field,
};
use crate::wire::vring::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_WRITE, VRING_USED_F_NO_NOTIFY, VringLayout, avail,
    used,
};
extern crate std;

use std::vec::Vec;

/// Raw access to one vring, as a peer writes it.
#[derive(Debug, Clone, Copy)]
pub struct RawRing<'r> {
    /// The region the ring lies in.
    pub r: SharedRegion<'r>,
    /// Region offset of the ring.
    pub base: usize,
    /// Its layout.
    pub l: VringLayout,
}

impl RawRing<'_> {
    /// Writes descriptor `i`: address, length, flags (`next` untouched).
    pub fn desc(&self, i: u16, addr: u64, len: u32, flags: u16) {
        let d = self.base + self.l.desc(i);
        self.r.write_u64(d, addr).unwrap();
        self.r.write_u32(d + 8, len).unwrap();
        self.r.write_u16(d + 12, flags).unwrap();
    }
    /// Descriptor `i`'s address and length.
    pub fn read_desc(&self, i: u16) -> (u64, u32) {
        let d = self.base + self.l.desc(i);
        (self.r.read_u64(d).unwrap(), self.r.read_u32(d + 8).unwrap())
    }
    /// Sets `avail.flags`.
    pub fn avail_flags(&self, v: u16) {
        self.r
            .write_u16(self.base + self.l.avail + avail::FLAGS, v)
            .unwrap();
    }
    /// `avail.idx`.
    pub fn avail_idx(&self) -> u16 {
        self.r
            .read_u16(self.base + self.l.avail + avail::IDX)
            .unwrap()
    }
    /// Publishes `id` as a driver does: slot, then index.
    pub fn publish(&self, id: u16) {
        let idx = self.avail_idx();
        let slot = idx & (self.l.num - 1);
        self.r
            .write_u16(self.base + self.l.avail + avail::ring(slot), id)
            .unwrap();
        self.r
            .write_u16(self.base + self.l.avail + avail::IDX, idx.wrapping_add(1))
            .unwrap();
    }
    /// `used.idx`.
    pub fn used_idx(&self) -> u16 {
        self.r
            .read_u16(self.base + self.l.used + used::IDX)
            .unwrap()
    }
    /// `used.flags`.
    pub fn used_flags(&self) -> u16 {
        self.r
            .read_u16(self.base + self.l.used + used::FLAGS)
            .unwrap()
    }
    /// Used element `i` (masked): id and len.
    pub fn used_elem(&self, i: u16) -> (u32, u32) {
        let slot = i & (self.l.num - 1);
        (
            self.r
                .read_u32(self.base + self.l.used + used::id(slot))
                .unwrap(),
            self.r
                .read_u32(self.base + self.l.used + used::len(slot))
                .unwrap(),
        )
    }
    /// Returns `id` with `len` as a device does: element, then index.
    pub fn push_used(&self, id: u32, len: u32) {
        let idx = self.used_idx();
        let slot = idx & (self.l.num - 1);
        self.r
            .write_u32(self.base + self.l.used + used::id(slot), id)
            .unwrap();
        self.r
            .write_u32(self.base + self.l.used + used::len(slot), len)
            .unwrap();
        self.r
            .write_u16(self.base + self.l.used + used::IDX, idx.wrapping_add(1))
            .unwrap();
    }
}

/// The rpmsg header at region offset `off`.
pub fn header(r: &SharedRegion<'_>, off: usize) -> RpmsgRepr {
    let mut b = [0u8; 16];
    r.copy_out(off, &mut b).unwrap();
    RpmsgRepr::from_bytes(&b)
}

/// Writes a message as a peer would: header (with the peer's chosen `reserved` word), payload.
pub fn write_msg(
    r: &SharedRegion<'_>,
    off: usize,
    src: u32,
    dst: u32,
    payload: &[u8],
    reserved: u32,
) {
    let mut h = RpmsgRepr {
        src,
        dst,
        len: u16::try_from(payload.len()).unwrap(),
        flags: 0,
    }
    .to_bytes();
    h[8..12].copy_from_slice(&reserved.to_le_bytes());
    r.copy_in(off, &h).unwrap();
    r.copy_in(off + 16, payload).unwrap();
}

/// RPMsg-Lite's `RL_ERR_NO_MEM` (`RL_ERRORS_BASE - 1`): what `rpmsg_lite_send` returns when
/// vring 1's used ring holds no free buffer.
pub const RL_ERR_NO_MEM: i32 = -5001;

/// What [`LiteMaster::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterStep {
    /// Zeroed vring `0` or `1`, linked its descriptors and set `VRING_AVAIL_F_NO_INTERRUPT`
    /// (`virtqueue_create`, `vq_ring_init`, `virtqueue_disable_cb`).
    RingInit(u8),
    /// Zeroed receive buffer `j` and made it available on vring 0
    /// (`virtqueue_fill_avail_buffers`).
    PostRx(u16),
    /// Zeroed transmit buffer `j` and put it on vring 1's used ring
    /// (`virtqueue_fill_used_buffers`).
    PrefillTx(u16),
    /// The last act of `rpmsg_lite_master_init`: the vring 0 kick ("master ready"). The test
    /// passes [`LiteMaster::kick_id`] to the device's `handle_notify` (or drops it, to play a
    /// kick that came before the device's handler was installed).
    Kick,
    /// Init is over; nothing was written.
    Done,
}

/// RPMsg-Lite's master (`rpmsg_lite_master_init`, `rpmsg_lite_send`, its receive callback),
/// played write by write on a [`LiteConfig`] layout.
#[derive(Debug)]
pub struct LiteMaster<'r> {
    r: SharedRegion<'r>,
    lite: LiteConfig,
    /// Vring 0: the master's receive ring.
    pub v0: RawRing<'r>,
    /// Vring 1: the master's transmit ring.
    pub v1: RawRing<'r>,
    next: MasterStep,
    /// `vq_used_cons_idx` of vring 0 and vring 1.
    cons: [u16; 2],
    /// Doorbells the master rang on vring 0 and vring 1.
    pub kicks: [u32; 2],
}

impl<'r> LiteMaster<'r> {
    /// A master about to run `rpmsg_lite_master_init` over `r`.
    pub fn new(r: SharedRegion<'r>, lite: LiteConfig) -> Self {
        let l = lite.validate(r.len()).unwrap();
        let (o0, o1, _) = lite.offsets();
        Self {
            r,
            lite,
            v0: RawRing { r, base: o0, l },
            v1: RawRing { r, base: o1, l },
            next: MasterStep::RingInit(0),
            cons: [0; 2],
            kicks: [0; 2],
        }
    }

    /// Notify id of vring 0 (`RL_GET_VQ_ID(link_id, 0)`): the kick to give the device.
    pub fn kick_id(&self) -> u32 {
        self.lite.link_id << 1
    }

    /// Runs the next group of `rpmsg_lite_master_init`'s writes, in its order, and says which.
    pub fn step(&mut self) -> MasterStep {
        let count = self.lite.buffer_count;
        let size = self.lite.buffer_size;
        let done = self.next;
        self.next = match done {
            MasterStep::RingInit(q) => {
                let ring = if q == 0 { self.v0 } else { self.v1 };
                self.r.fill(ring.base, ring.l.size, 0).unwrap();
                for i in 0..count {
                    let next = if i + 1 < count { i + 1 } else { 0x8000 };
                    self.r
                        .write_u16(ring.base + ring.l.desc(i) + 14, next)
                        .unwrap();
                }
                ring.avail_flags(VRING_AVAIL_F_NO_INTERRUPT);
                if q == 0 {
                    MasterStep::RingInit(1)
                } else {
                    MasterStep::PostRx(0)
                }
            }
            MasterStep::PostRx(j) => {
                let off = self.lite.buffer(usize::from(j));
                self.r.fill(off, size as usize, 0).unwrap();
                self.v0.desc(j, off as u64, size, VRING_DESC_F_WRITE);
                self.v0.publish(j);
                if j + 1 < count {
                    MasterStep::PostRx(j + 1)
                } else {
                    MasterStep::PrefillTx(0)
                }
            }
            MasterStep::PrefillTx(j) => {
                let off = self.lite.buffer(usize::from(count + j));
                self.r.fill(off, size as usize, 0).unwrap();
                self.v1.desc(j, off as u64, size, VRING_DESC_F_WRITE);
                self.v1.push_used(u32::from(j), size);
                if j + 1 < count {
                    MasterStep::PrefillTx(j + 1)
                } else {
                    MasterStep::Kick
                }
            }
            MasterStep::Kick => {
                // `virtqueue_kick`: only if the device did not set VRING_USED_F_NO_NOTIFY.
                if self.v0.used_flags() & VRING_USED_F_NO_NOTIFY == 0 {
                    self.kicks[0] += 1;
                }
                MasterStep::Done
            }
            MasterStep::Done => MasterStep::Done,
        };
        done
    }

    /// Runs `step` until init is over (the kick included).
    pub fn init(&mut self) {
        while self.step() != MasterStep::Done {}
    }

    /// `rpmsg_lite_send` without blocking: takes a buffer from vring 1's used ring (or fails
    /// with [`RL_ERR_NO_MEM`]), writes header and payload, makes it available, kicks vring 1
    /// unless the device set `VRING_USED_F_NO_NOTIFY`. The descriptor keeps its length and
    /// `WRITE` flag, and the header's `reserved` word is left as the buffer held it.
    pub fn send(&mut self, src: u32, dst: u32, payload: &[u8]) -> Result<(), i32> {
        if self.v1.used_idx() == self.cons[1] {
            return Err(RL_ERR_NO_MEM);
        }
        let (id, _) = self.v1.used_elem(self.cons[1]);
        self.cons[1] = self.cons[1].wrapping_add(1);
        let id = u16::try_from(id).unwrap();
        let (addr, _) = self.v1.read_desc(id);
        let off = usize::try_from(addr).unwrap();
        let mut reserved = [0u8; 4];
        self.r.copy_out(off + 8, &mut reserved).unwrap();
        write_msg(
            &self.r,
            off,
            src,
            dst,
            payload,
            u32::from_le_bytes(reserved),
        );
        self.v1.publish(id);
        if self.v1.used_flags() & VRING_USED_F_NO_NOTIFY == 0 {
            self.kicks[1] += 1;
        }
        Ok(())
    }

    /// The master's receive callback for one message: takes the next used element of vring 0,
    /// reads header and payload, gives the buffer back on vring 0. `None` when there is none.
    pub fn recv(&mut self) -> Option<(u32, u32, Vec<u8>)> {
        if self.v0.used_idx() == self.cons[0] {
            return None;
        }
        let (id, _) = self.v0.used_elem(self.cons[0]);
        self.cons[0] = self.cons[0].wrapping_add(1);
        let id = u16::try_from(id).unwrap();
        let (addr, cap) = self.v0.read_desc(id);
        let off = usize::try_from(addr).unwrap();
        let h = header(&self.r, off);
        let len = usize::from(h.len).min(cap as usize - 16);
        let mut data = std::vec![0u8; len];
        self.r.copy_out(off + 16, &mut data).unwrap();
        self.v0.publish(id);
        Some((h.src, h.dst, data))
    }
}

/// A resource table of any shape, built entry by entry in the order given, with an offset array
/// of `slots` entries (at least the number of entries; unused slots stay 0 as in OpenAMP's
/// examples, whose `num` counts only the entries used).
#[derive(Debug, Clone)]
pub struct RawTable {
    slots: usize,
    entries: Vec<Vec<u8>>,
}

impl RawTable {
    /// A table with an offset array of `slots` entries.
    pub fn new(slots: usize) -> Self {
        Self {
            slots,
            entries: Vec::new(),
        }
    }

    /// Adds an rpmsg vdev (two vrings of `num` entries aligned to `align`, `da` of
    /// `FW_RSC_ADDR_ANY`, notify ids `ids`, the name service offered).
    pub fn vdev(mut self, notifyid: u32, num: u32, align: u32, ids: [u32; 2]) -> Self {
        let mut e = Vec::new();
        for w in [RSC_VDEV, VIRTIO_ID_RPMSG, notifyid, 1, 0, 0] {
            e.extend_from_slice(&w.to_le_bytes());
        }
        e.extend_from_slice(&[0, 2, 0, 0]);
        for id in ids {
            for w in [FW_RSC_ADDR_ANY, align, num, id, 0] {
                e.extend_from_slice(&w.to_le_bytes());
            }
        }
        self.entries.push(e);
        self
    }

    /// Adds a carveout (56 bytes).
    pub fn carveout(self, da: u32, len: u32) -> Self {
        self.mem_entry(RSC_CARVEOUT, da, len)
    }

    /// Adds a devmem entry (56 bytes, the carveout's shape).
    pub fn devmem(self, da: u32, len: u32) -> Self {
        self.mem_entry(RSC_DEVMEM, da, len)
    }

    fn mem_entry(mut self, ty: u32, da: u32, len: u32) -> Self {
        let mut e = Vec::new();
        for w in [ty, da, da, len, 0, 0] {
            e.extend_from_slice(&w.to_le_bytes());
        }
        e.extend_from_slice(&[b'm'; 8]);
        e.resize(56, 0);
        self.entries.push(e);
        self
    }

    /// Adds a trace entry (48 bytes).
    pub fn trace(mut self, da: u32, len: u32) -> Self {
        let mut e = Vec::new();
        for w in [RSC_TRACE, da, len, 0] {
            e.extend_from_slice(&w.to_le_bytes());
        }
        e.extend_from_slice(b"trace");
        e.resize(48, 0);
        self.entries.push(e);
        self
    }

    /// Adds a vendor entry of type `ty` (128..=512) with `body` bytes after its type word.
    pub fn vendor(mut self, ty: u32, body: usize) -> Self {
        let mut e = std::vec::Vec::from(ty.to_le_bytes());
        e.resize(4 + body, 0xA5);
        self.entries.push(e);
        self
    }

    /// The table's bytes and the offset of each entry.
    pub fn build(&self) -> (Vec<u8>, Vec<usize>) {
        assert!(self.slots >= self.entries.len());
        let mut t = Vec::new();
        t.extend_from_slice(&1u32.to_le_bytes());
        t.extend_from_slice(&u32::try_from(self.entries.len()).unwrap().to_le_bytes());
        t.extend_from_slice(&[0; 8]);
        let mut at = 16 + 4 * self.slots;
        let mut offsets = Vec::new();
        for e in &self.entries {
            offsets.push(at);
            at += e.len();
        }
        for k in 0..self.slots {
            let o = offsets.get(k).copied().unwrap_or(0);
            t.extend_from_slice(&u32::try_from(o).unwrap().to_le_bytes());
        }
        for e in &self.entries {
            t.extend_from_slice(e);
        }
        (t, offsets)
    }
}

/// Bytes of OpenAMP's zynqmp_r5 example table: header, an 8-slot offset array, one vdev.
pub const ZYNQMP_R5_TABLE_LEN: usize = 116;
/// Offset of its vdev entry.
pub const ZYNQMP_R5_VDEV_OFFSET: usize = 48;

/// The resource table of OpenAMP's zynqmp_r5 example firmware (`remote_resource_table`):
/// `num` 1 with 8 offset slots, the rpmsg vdev at 48 (notify id 31, name service offered) with
/// two vrings of 256 entries aligned to 0x1000 at `FW_RSC_ADDR_ANY`, notify ids 1 and 2; 116
/// bytes.
pub fn openamp_zynqmp_r5_table() -> Vec<u8> {
    let (t, offsets) = RawTable::new(8).vdev(31, 256, 0x1000, [1, 2]).build();
    assert_eq!(
        (t.len(), offsets[0]),
        (ZYNQMP_R5_TABLE_LEN, ZYNQMP_R5_VDEV_OFFSET)
    );
    t
}

/// A driver bringing up the rpmsg vdev of a resource table in shared memory: Linux remoteproc
/// with `virtio_rpmsg_bus`, or an OpenAMP host.
#[derive(Debug)]
pub struct RscDriver<'r> {
    /// Where the table lies (the shared region, or the firmware's own section).
    pub table: SharedRegion<'r>,
    /// Region offset of the vdev entry.
    pub vdev: usize,
    /// Linux (status 0x01, 0x03, then 0x07) or an OpenAMP host (status 0x04 alone, no kick).
    pub linux: bool,
}

impl RscDriver<'_> {
    /// Status writes that come before the vrings (Linux: ACKNOWLEDGE, then DRIVER; OpenAMP:
    /// none).
    pub fn begin(&self) {
        if self.linux {
            let s = self.vdev + vdev_field::STATUS;
            self.table.write_u8(s, VIRTIO_CONFIG_S_ACKNOWLEDGE).unwrap();
            self.table
                .write_u8(s, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER)
                .unwrap();
        }
    }

    /// Accepted features, then each vring's `da`.
    pub fn place(&self, gfeatures: u32, das: [u32; 2]) {
        self.table
            .write_u32(self.vdev + vdev_field::GFEATURES, gfeatures)
            .unwrap();
        for (k, da) in das.iter().enumerate() {
            self.table
                .write_u32(self.vdev + vdev_field::vring(k), *da)
                .unwrap();
        }
    }

    /// `DRIVER_OK` (Linux writes the whole cumulative byte, OpenAMP the bit alone).
    pub fn driver_ok(&self) {
        let v = if self.linux {
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK
        } else {
            VIRTIO_CONFIG_S_DRIVER_OK
        };
        self.table
            .write_u8(self.vdev + vdev_field::STATUS, v)
            .unwrap();
    }
}

/// Linux as the driver of a resource-table vdev: `remoteproc_virtio` with `virtio_rpmsg_bus`
/// on top, played write by write. [`LinuxRpmsg::probe`] replays a (re-)probe in the kernel's
/// order (wire.md 8.2 steps 3 to 5: `rproc_virtio_reset` writes status 0, the virtio core
/// writes 0x01 then 0x03 and `gfeatures`; `rp_find_vq` zeroes each vring and writes its `da`;
/// `rpmsg_probe` posts every receive buffer on vring 0, suppresses vring 1's interrupts, then
/// writes 0x07 and kicks vring 0 if the device asked for kicks). None of these writes rings a
/// doorbell except the last kick, so a device that only looks on a doorbell never sees the 0.
/// [`LinuxRpmsg::send`] and [`LinuxRpmsg::recv`] then do what `rpmsg_send` and
/// `rpmsg_recv_done` do.
#[derive(Debug)]
pub struct LinuxRpmsg<'r> {
    /// The table and vdev the driver writes.
    pub drv: RscDriver<'r>,
    /// Vring 0 (Linux receives) and vring 1 (Linux sends).
    pub rings: [RawRing<'r>; 2],
    /// Region offset of the receive buffers; the transmit buffers follow them.
    pub pool: usize,
    /// Buffers per direction (`num_bufs / 2`).
    pub count: u16,
    /// Buffer size (512).
    pub size: u32,
    /// `gfeatures` written at probe (bit 0: the name service).
    pub features: u32,
    /// Transmit buffers never used yet (`last_sbuf`).
    last_sbuf: u16,
    /// `last_used_idx` of vring 0 and vring 1.
    cons: [u16; 2],
    /// Vring 0 kicks rung so far.
    pub kicks: u32,
}

impl<'r> LinuxRpmsg<'r> {
    /// A driver over the vdev at `drv.vdev`, rings placed at `rings`, `count` buffers each way
    /// from `pool`.
    pub fn new(drv: RscDriver<'r>, rings: [RawRing<'r>; 2], pool: usize, count: u16) -> Self {
        Self {
            drv,
            rings,
            pool,
            count,
            size: 512,
            features: 1,
            last_sbuf: 0,
            cons: [0; 2],
            kicks: 0,
        }
    }

    /// A whole (re-)probe in Linux's order of writes. Returns whether it kicked vring 0.
    pub fn probe(&mut self) -> bool {
        let t = self.drv.table;
        let s = self.drv.vdev + vdev_field::STATUS;
        // rproc_virtio_reset, then virtio_add_status(ACKNOWLEDGE), (DRIVER).
        t.write_u8(s, 0).unwrap();
        self.drv.begin();
        t.write_u32(self.drv.vdev + vdev_field::GFEATURES, self.features)
            .unwrap();
        // rp_find_vq: memset(addr, 0, vring_size) and rsc->vring[i].da, for each ring.
        for (k, ring) in self.rings.iter().enumerate() {
            ring.r.fill(ring.base, ring.l.size, 0).unwrap();
            t.write_u32(self.drv.vdev + vdev_field::vring(k), ring.base as u32)
                .unwrap();
        }
        // rpmsg_probe: virtqueue_add_inbuf for every receive buffer (descriptors from the free
        // list, 0 upwards), virtqueue_disable_cb(svq), then virtqueue_kick_prepare.
        let [v0, v1] = self.rings;
        for j in 0..self.count {
            let off = self.pool + self.size as usize * usize::from(j);
            v0.desc(j, off as u64, self.size, VRING_DESC_F_WRITE);
            v0.publish(j);
        }
        v1.avail_flags(VRING_AVAIL_F_NO_INTERRUPT);
        let notify = v0.used_flags() & VRING_USED_F_NO_NOTIFY == 0;
        self.last_sbuf = 0;
        self.cons = [0; 2];
        // virtio_device_ready: DRIVER_OK; then virtqueue_notify.
        self.drv.driver_ok();
        if notify {
            self.kicks += 1;
        }
        notify
    }

    /// `rpmsg_send` without blocking: a never-used transmit buffer first, then one the device
    /// returned; header and payload; the descriptor (length 16 + payload, flags 0); published.
    /// `false` when no buffer is free.
    pub fn send(&mut self, src: u32, dst: u32, payload: &[u8]) -> bool {
        let v1 = self.rings[1];
        let id = if self.last_sbuf < self.count {
            self.last_sbuf += 1;
            self.last_sbuf - 1
        } else if v1.used_idx() != self.cons[1] {
            let (id, _) = v1.used_elem(self.cons[1]);
            self.cons[1] = self.cons[1].wrapping_add(1);
            u16::try_from(id).unwrap()
        } else {
            return false;
        };
        let off = self.pool + self.size as usize * usize::from(self.count + id);
        write_msg(&v1.r, off, src, dst, payload, 0);
        v1.desc(id, off as u64, 16 + payload.len() as u32, 0);
        v1.publish(id);
        true
    }

    /// `rpmsg_recv_done` for one message: the next used element of vring 0, its header and
    /// payload, the buffer posted again. `None` when there is none.
    pub fn recv(&mut self) -> Option<(u32, u32, Vec<u8>)> {
        let v0 = self.rings[0];
        if v0.used_idx() == self.cons[0] {
            return None;
        }
        let (id, len) = v0.used_elem(self.cons[0]);
        self.cons[0] = self.cons[0].wrapping_add(1);
        let id = u16::try_from(id).unwrap();
        let (addr, _) = v0.read_desc(id);
        let off = usize::try_from(addr).unwrap();
        let h = header(&v0.r, off);
        let n = usize::from(h.len).min(len as usize - 16);
        let mut data = std::vec![0u8; n];
        v0.r.copy_out(off + 16, &mut data).unwrap();
        v0.publish(id);
        Some((h.src, h.dst, data))
    }
}
