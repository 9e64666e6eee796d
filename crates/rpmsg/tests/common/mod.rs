//! Helpers shared by the integration tests: the shared-memory geometries both layouts use, memory
//! with guard bytes around the region, the deterministic payload pattern, and two cores whose
//! doorbells raise interrupt lines served by ISR threads.

#![allow(
    dead_code,
    reason = "each test crate includes this module and uses only part of it"
)]

use rpmsg::port::{LinearMap, StdEnvironment};
use rpmsg::testing::cache::{AlignedBytes, CacheModel, CacheStats, Stale};
use rpmsg::testing::{Loopback, TestEnv, TestLink, TestMemory};
use rpmsg::virtqueue::Vring;
use rpmsg::wire::rsc::{
    FW_RSC_ADDR_ANY, RscTableRepr, VIRTIO_ID_RPMSG, VdevRepr, VringInfo, vdev_field,
};
use rpmsg::wire::vring::{VringLayout, align_up};
use rpmsg::{
    Config, Endpoint, EndpointConfig, Environment, LayoutConfig, Link, LiteConfig, Platform, Role,
    RscConfig, SharedRegion, Timeout,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a wait that must succeed may take before the test calls it hung: minutes, so a
/// loaded machine never fails it (item 14); only a broken run waits this long.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// Where the resource table starts: not at 0, so table offsets are exercised.
const TABLE_OFFSET: usize = 0x40;

/// One shared-memory geometry: a layout and the address at which the peer sees the region.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    /// The layout both sides configure.
    pub(crate) kind: Kind,
    /// Peer address of region offset 0 (`Loopback::with_base`).
    pub(crate) base: u64,
}

/// Which layout.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// RPMsg-Lite's static layout.
    Lite(LiteConfig),
    /// A resource table placed by [`Geometry::rsc`].
    Rsc(RscGeometry),
}

/// Where a resource-table geometry puts everything (region offsets).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RscGeometry {
    /// Queue size of both vrings.
    pub(crate) num: u16,
    /// Vring alignment.
    pub(crate) align: u32,
    /// Whether the table names fixed vring addresses (otherwise `FW_RSC_ADDR_ANY`).
    pub(crate) fixed_da: bool,
    /// Table offset and length.
    pub(crate) table: (usize, usize),
    /// Vring offsets.
    pub(crate) vrings: [usize; 2],
    /// Buffer pool offset (vring 0's receive buffers, then vring 1's).
    pub(crate) pool: usize,
    /// Region length.
    pub(crate) len: usize,
}

/// Buffer size the resource-table driver uses (Linux's 512).
pub(crate) const RSC_BUFFER_SIZE: u32 = 512;

impl Geometry {
    /// RPMsg-Lite's layout, region seen at offset 0.
    pub(crate) fn lite(l: LiteConfig) -> Self {
        Self {
            kind: Kind::Lite(l),
            base: 0,
        }
    }

    /// A resource table at offset 0x40, vrings of `num` entries aligned to `align` after it, the
    /// pool after them; `fixed_da` writes their addresses into the table, otherwise
    /// `FW_RSC_ADDR_ANY` lets the driver place them.
    pub(crate) fn rsc(num: u16, align: u32, fixed_da: bool, base: u64) -> Self {
        let layout = VringLayout::new(num, align as usize).expect("valid ring geometry");
        let table_len = Self::table(num, align, [FW_RSC_ADDR_ANY; 2]).buffer_len();
        let step = (align as usize).max(64);
        let v0 = align_up(TABLE_OFFSET + table_len, step).expect("small");
        let v1 = align_up(v0 + layout.size, step).expect("small");
        let pool = align_up(v1 + layout.size, 64).expect("small");
        let len = pool + 2 * usize::from(num) * RSC_BUFFER_SIZE as usize;
        Self {
            kind: Kind::Rsc(RscGeometry {
                num,
                align,
                fixed_da,
                table: (TABLE_OFFSET, table_len),
                vrings: [v0, v1],
                pool,
                len,
            }),
            base,
        }
    }

    /// The same geometry made fit for a non-coherent memory system with `line`-byte cache
    /// lines: vrings aligned to at least a line (so one side's avail ring and the other's used
    /// ring never share one) and RPMsg-Lite buffers a whole number of lines. Real systems
    /// need this too; the cache model refuses two writers in one line.
    pub(crate) fn for_cache_lines(&self, line: usize) -> Self {
        let kind = match self.kind {
            Kind::Lite(l) => {
                let align = l.vring_align.max(line);
                let mut c = LiteConfig::new(l.buffer_count, 0, align);
                c.buffer_size = l.buffer_size.next_multiple_of(line as u32);
                c.link_id = l.link_id;
                Kind::Lite(c)
            }
            Kind::Rsc(r) => {
                return Self::rsc(r.num, r.align.max(line as u32), r.fixed_da, self.base);
            }
        };
        Self { kind, ..*self }
    }

    /// The same geometry with the peer seeing the region at `base`.
    pub(crate) fn with_base(mut self, base: u64) -> Self {
        self.base = base;
        self
    }

    fn table(num: u16, align: u32, da: [u32; 2]) -> RscTableRepr<'static> {
        let ring = |k: usize| VringInfo {
            da: da[k],
            align,
            num: u32::from(num),
            notifyid: k as u32,
        };
        RscTableRepr {
            vdev: Some(VdevRepr {
                id: VIRTIO_ID_RPMSG,
                notifyid: 2,
                dfeatures: 1,
                config_len: 0,
                vrings: [ring(0), ring(1)],
            }),
            carveouts: &[],
            trace: None,
        }
    }

    /// Bytes of shared memory the geometry needs.
    pub(crate) fn region_len(&self) -> usize {
        match self.kind {
            Kind::Lite(l) => l.region_len(),
            Kind::Rsc(r) => r.len,
        }
    }

    /// Queue size of both vrings.
    pub(crate) fn num(&self) -> u16 {
        match self.kind {
            Kind::Lite(l) => l.buffer_count,
            Kind::Rsc(r) => r.num,
        }
    }

    /// What the firmware does before either side starts: emit the resource table into the
    /// region (nothing for RPMsg-Lite).
    pub(crate) fn prepare(&self, region: &SharedRegion<'_>) {
        let Kind::Rsc(r) = self.kind else { return };
        let da = if r.fixed_da {
            r.vrings
                .map(|off| u32::try_from(self.base + off as u64).expect("32-bit peer address"))
        } else {
            [FW_RSC_ADDR_ANY; 2]
        };
        let repr = Self::table(r.num, r.align, da);
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf).expect("table fits");
        region.copy_in(r.table.0, &buf).expect("table in region");
        let vdev = self.config(Role::Device);
        let LayoutConfig::RscTable(c) = vdev.layout else {
            unreachable!()
        };
        let info = c.read_vdev(region).expect("the emitted table parses");
        assert_eq!(
            info.offset,
            self.vdev_offset(),
            "vdev entry right after the header"
        );
    }

    /// The configuration of `role`.
    pub(crate) fn config(&self, role: Role) -> Config {
        match self.kind {
            Kind::Lite(l) => Config::lite(role, l),
            Kind::Rsc(r) => {
                let mut c = RscConfig::new(r.table.0, r.table.1);
                if role == Role::Driver {
                    c.vring_offsets = [Some(r.vrings[0]), Some(r.vrings[1])];
                    c.pool_offset = r.pool;
                    c.buffer_size = RSC_BUFFER_SIZE;
                }
                Config::new(role, LayoutConfig::RscTable(c))
            }
        }
    }

    /// The platform for one side.
    pub(crate) fn platform(&self, region: SharedRegion<'_>) -> Loopback {
        Loopback::with_base(region, self.base)
    }

    /// A link of `role` (not started) over `region`.
    pub(crate) fn link<'r, const N: usize>(
        &self,
        region: SharedRegion<'r>,
        role: Role,
    ) -> TestLink<'r, N> {
        self.link_with(region, self.config(role))
    }

    /// A link with an adjusted configuration.
    pub(crate) fn link_with<'r, const N: usize>(
        &self,
        region: SharedRegion<'r>,
        cfg: Config,
    ) -> TestLink<'r, N> {
        Link::new(region, self.platform(region), TestEnv::new(), cfg).expect("valid link config")
    }

    /// The two vrings (for reading or corrupting them by hand).
    pub(crate) fn rings(&self) -> [Vring; 2] {
        match self.kind {
            Kind::Lite(l) => {
                let layout = VringLayout::new(l.buffer_count, l.vring_align).expect("valid");
                let (o0, o1, _) = l.offsets();
                [o0, o1].map(|o| Vring { base: o, layout })
            }
            Kind::Rsc(r) => {
                let layout = VringLayout::new(r.num, r.align as usize).expect("valid");
                r.vrings.map(|o| Vring { base: o, layout })
            }
        }
    }

    /// Region offset and size of the receive (`dir` 0: vring 0) or transmit (`dir` 1: vring 1)
    /// buffer `id` of the driver's pool.
    pub(crate) fn buffer(&self, dir: usize, id: u16) -> (usize, usize) {
        match self.kind {
            Kind::Lite(l) => {
                let j = dir * usize::from(l.buffer_count) + usize::from(id);
                (l.buffer(j), l.buffer_size as usize)
            }
            Kind::Rsc(r) => {
                let size = RSC_BUFFER_SIZE as usize;
                let j = dir * usize::from(r.num) + usize::from(id);
                (r.pool + j * size, size)
            }
        }
    }

    /// Region offset of the vdev status byte (resource table only).
    pub(crate) fn status_offset(&self) -> Option<usize> {
        match self.kind {
            Kind::Lite(_) => None,
            Kind::Rsc(r) => Some(r.table.0 + self.vdev_offset() + vdev_field::STATUS),
        }
    }

    /// Offset of the vdev entry from the start of the table: after the 16-byte header and the
    /// one 4-byte entry offset (checked against the parser in [`Geometry::prepare`]).
    pub(crate) fn vdev_offset(&self) -> usize {
        20
    }

    /// Region offset of a field of the vdev entry (resource table only).
    pub(crate) fn vdev_field(&self, field: usize) -> Option<usize> {
        self.table_range()
            .map(|(t, _)| t + self.vdev_offset() + field)
    }

    /// Region offset of the resource-table range (resource table only).
    pub(crate) fn table_range(&self) -> Option<(usize, usize)> {
        match self.kind {
            Kind::Lite(_) => None,
            Kind::Rsc(r) => Some(r.table),
        }
    }
}

/// Zeroed memory with guard bytes on both sides of the region, to prove nothing is touched
/// outside it.
#[derive(Debug)]
pub(crate) struct GuardedMemory {
    words: Vec<u64>,
    guard: usize,
    len: usize,
}

/// The byte guard areas hold.
pub(crate) const GUARD_BYTE: u8 = 0xA5;

impl GuardedMemory {
    /// `len` bytes of region between two guards of `guard` bytes (a multiple of 8).
    pub(crate) fn new(len: usize, guard: usize) -> Self {
        assert_eq!(guard % 8, 0, "guards keep the region 8-aligned");
        let mut words = vec![0u64; (2 * guard + len).div_ceil(8) + 1];
        let bytes: &mut [u8] = zerocopy::IntoBytes::as_mut_bytes(words.as_mut_slice());
        bytes[..guard].fill(GUARD_BYTE);
        bytes[guard + len..].fill(GUARD_BYTE);
        Self { words, guard, len }
    }

    /// The region between the guards.
    pub(crate) fn region(&mut self) -> SharedRegion<'_> {
        let (guard, len) = (self.guard, self.len);
        let bytes: &mut [u8] = zerocopy::IntoBytes::as_mut_bytes(self.words.as_mut_slice());
        SharedRegion::from_slice(&mut bytes[guard..guard + len]).expect("8-aligned")
    }

    /// Changes the guard byte at `rel` (relative to the region start), to test the check.
    pub(crate) fn poke_outside(&mut self, rel: isize) {
        let i = usize::try_from(self.guard as isize + rel).expect("inside the allocation");
        assert!(i < self.guard || i >= self.guard + self.len, "a guard byte");
        let bytes: &mut [u8] = zerocopy::IntoBytes::as_mut_bytes(self.words.as_mut_slice());
        bytes[i] ^= 0xFF;
    }

    /// Offsets (relative to the region start, negative before it) of guard bytes that changed.
    pub(crate) fn damaged_guards(&mut self) -> Vec<isize> {
        let (guard, len) = (self.guard, self.len);
        let bytes: &mut [u8] = zerocopy::IntoBytes::as_mut_bytes(self.words.as_mut_slice());
        bytes
            .iter()
            .enumerate()
            .filter(|&(i, &b)| (i < guard || i >= guard + len) && b != GUARD_BYTE)
            .map(|(i, _)| i as isize - guard as isize)
            .collect()
    }
}

/// Largest payload in these tests (512-byte buffers).
pub(crate) const MAX_PAYLOAD: usize = 496;

/// Payload length of message `seq` of `stream`: cycles through every size `0..=496`.
pub(crate) fn payload_len(stream: u8, seq: u64) -> usize {
    ((seq + u64::from(stream) * 131) % (MAX_PAYLOAD as u64 + 1)) as usize
}

/// Byte `i` of message `seq` of `stream`: the sequence number in the first 8 bytes (as much of it
/// as fits), a mix of stream, sequence number and position after that.
pub(crate) fn payload_byte(stream: u8, seq: u64, i: usize) -> u8 {
    if i < 8 {
        seq.to_le_bytes()[i]
    } else {
        let x = (seq as u32)
            .wrapping_mul(0x9E37_79B1)
            .wrapping_add((i as u32).wrapping_mul(0x85EB_CA77));
        (x >> 24) as u8 ^ stream
    }
}

/// Fills `buf` with message `seq` of `stream` and returns its length.
pub(crate) fn fill_payload(stream: u8, seq: u64, buf: &mut [u8; MAX_PAYLOAD]) -> usize {
    let len = payload_len(stream, seq);
    for (i, b) in buf[..len].iter_mut().enumerate() {
        *b = payload_byte(stream, seq, i);
    }
    len
}

/// Why `data` is not message `seq` of `stream`, if it is not.
pub(crate) fn check_payload(stream: u8, seq: u64, data: &[u8]) -> Result<(), String> {
    let want = payload_len(stream, seq);
    if data.len() != want {
        let got_seq =
            (data.len() >= 8).then(|| u64::from_le_bytes(data[..8].try_into().expect("8 bytes")));
        return Err(format!(
            "stream {stream}: expected message {seq} of {want} bytes, got {} bytes (sequence \
             number in it: {got_seq:?})",
            data.len()
        ));
    }
    if let Some(i) = (0..data.len()).find(|&i| data[i] != payload_byte(stream, seq, i)) {
        return Err(format!(
            "stream {stream}: message {seq} corrupted at byte {i}: {:#04x} instead of {:#04x}",
            data[i],
            payload_byte(stream, seq, i)
        ));
    }
    Ok(())
}

/// Creates the two announced endpoints of the shutdown tests on `link`: "svc", which a client on
/// the other side binds to by name, and "lone", which nobody binds to.
pub(crate) fn announce_svc_and_lone<
    'l,
    P: Platform,
    E: Environment,
    const N: usize,
    const M: usize,
>(
    link: &'l Link<'_, P, E, N, M>,
) -> (Endpoint<'l>, Endpoint<'l>) {
    let svc = link
        .create_endpoint(EndpointConfig::new().name("svc").unwrap().announce(true))
        .unwrap();
    let lone = link
        .create_endpoint(EndpointConfig::new().name("lone").unwrap().announce(true))
        .unwrap();
    (svc, lone)
}

// ---------------------------------------------------------------------------------------------
// Two cores with an interrupt line each, served by an ISR thread.

/// Memory that lives for the rest of the test process, so threads that a failing test leaves
/// blocked can never outlive it.
pub(crate) fn leaked_region(len: usize) -> SharedRegion<'static> {
    Box::leak(Box::new(TestMemory::new(len))).region()
}

pub(crate) fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

/// Joins `h` if it finishes within `limit`, and fails the test otherwise (leaving it blocked).
pub(crate) fn join_within<T>(h: JoinHandle<T>, limit: Duration, what: &str) -> T {
    let t = std::time::Instant::now();
    while !h.is_finished() {
        assert!(t.elapsed() < limit, "{what} still blocked after {limit:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    h.join().unwrap_or_else(|_| panic!("{what} panicked"))
}

/// One core's inter-processor interrupt: the doorbells the other core rang and not yet served
/// (one bit per notify id, like a mailbox status register).
#[derive(Debug, Default)]
pub(crate) struct Irq {
    pending: Mutex<u32>,
    cv: Condvar,
}

impl Irq {
    pub(crate) fn raise(&self, id: u32) {
        assert!(id < 32, "notify id {id} does not fit the mock mailbox");
        *self.pending.lock().unwrap() |= 1 << id;
        self.cv.notify_one();
    }

    /// Waits up to `limit` for doorbells and takes them.
    pub(crate) fn take(&self, limit: Duration) -> u32 {
        let g = self.pending.lock().unwrap();
        let (mut g, _) = self.cv.wait_timeout_while(g, limit, |p| *p == 0).unwrap();
        std::mem::take(&mut *g)
    }
}

/// A platform whose `notify` raises the other core's [`Irq`].
#[derive(Debug)]
pub(crate) struct Doorbell {
    map: LinearMap,
    peer: &'static Irq,
}

impl Doorbell {
    /// The platform of a core that sees `region` at `base` and rings `peer`.
    pub(crate) fn new(region: SharedRegion<'_>, base: u64, peer: &'static Irq) -> Self {
        Self {
            map: LinearMap {
                base,
                len: region.len(),
            },
            peer,
        }
    }
}

impl Platform for Doorbell {
    type Map = LinearMap;

    fn address_map(&self) -> &LinearMap {
        &self.map
    }

    fn notify(&self, id: u32) {
        self.peer.raise(id);
    }
}

/// A link with doorbells, `StdEnvironment` and 16 entries per ring.
pub(crate) type BellLink = Link<'static, Doorbell, StdEnvironment, 16, 8>;

/// The ISR: calls `handle_notify` for each doorbell until `stop`. It only moves published
/// buffers into endpoint queues and wakes waiters; the application threads do the rest.
fn isr(link: &BellLink, irq: &Irq, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        // The timeout only lets the thread see `stop`.
        let ids = irq.take(Duration::from_millis(20));
        for id in (0..32).filter(|id| ids & (1 << id) != 0) {
            let _ = link.handle_notify(id);
        }
    }
}

/// A driver and a device with doorbells, over a geometry in leaked memory (threads and async
/// tasks take `'static` links), with an ISR thread per core from the start. Nothing polls the
/// links on a timer, so a missed wake-up shows up as a test that does not finish.
pub(crate) struct Cores {
    pub(crate) drv: &'static BellLink,
    pub(crate) dev: &'static BellLink,
    irqs: &'static [Irq; 2],
    stop: &'static AtomicBool,
    isrs: Vec<JoinHandle<()>>,
}

impl Cores {
    /// Prepares `geo` in leaked memory, builds both links (not started) and starts the ISRs.
    pub(crate) fn new(geo: &Geometry) -> Self {
        let region = leaked_region(geo.region_len());
        geo.prepare(&region);
        let irqs: &'static [Irq; 2] = leak([Irq::default(), Irq::default()]);
        let link = |role: Role, peer: &'static Irq| {
            let platform = Doorbell::new(region, geo.base, peer);
            leak(Link::new(region, platform, StdEnvironment::new(), geo.config(role)).unwrap())
        };
        // The driver rings the device's line, and the other way round.
        let drv = link(Role::Driver, &irqs[1]);
        let dev = link(Role::Device, &irqs[0]);
        let stop = leak(AtomicBool::new(false));
        let isrs = [(drv, &irqs[0]), (dev, &irqs[1])]
            .into_iter()
            .map(|(link, irq)| std::thread::spawn(move || isr(link, irq, stop)))
            .collect();
        Self {
            drv,
            dev,
            irqs,
            stop,
            isrs,
        }
    }

    /// Creates an endpoint on each side: `(driver's, device's)`.
    pub(crate) fn endpoints(
        &self,
        drv: EndpointConfig<'static>,
        dev: EndpointConfig<'static>,
    ) -> (Endpoint<'static>, Endpoint<'static>) {
        let drv = self.drv.create_endpoint(drv).unwrap();
        let dev = self.dev.create_endpoint(dev).unwrap();
        (drv, dev)
    }

    /// Starts both sides; the device learns of the driver from its first doorbell.
    pub(crate) fn start(&self) {
        self.dev.start().unwrap();
        self.drv.start().unwrap();
        self.dev.wait_link_up(Timeout::After(HANG_GUARD)).unwrap();
    }

    /// Stops the ISR threads and fails the test unless each ends within the hang guard.
    pub(crate) fn stop_isrs(&mut self) {
        self.signal_stop();
        for h in self.isrs.drain(..) {
            join_within(h, HANG_GUARD, "ISR thread");
        }
    }

    fn signal_stop(&self) {
        self.stop.store(true, Ordering::Release);
        for irq in self.irqs {
            irq.raise(31);
        }
    }
}

impl Drop for Cores {
    fn drop(&mut self) {
        self.signal_stop();
        for h in self.isrs.drain(..) {
            let _ = h.join();
        }
    }
}

/// The memory two cores of a test share: one region both see alike (coherent), or a
/// non-coherent cache model ([`rpmsg::testing::cache`]) where each core has its own copy and
/// sees the other's writes only through the link's cache maintenance.
pub(crate) struct Memory {
    coherent: Option<AlignedBytes>,
    model: Option<std::sync::Arc<CacheModel>>,
}

impl Memory {
    /// Both kinds over `geo` (prepared): coherent first, then the cache model with 64-byte
    /// lines, stale lines reading as `stale` says. The cache model runs on `geo` made fit for
    /// 64-byte lines ([`Geometry::for_cache_lines`]); each comes with the geometry it uses.
    /// Under Miri only the coherent one (Miri checks `shm`; the model has no `unsafe`).
    pub(crate) fn both(geo: &Geometry, stale: Stale) -> Vec<(Geometry, Self)> {
        let mut v = vec![(*geo, Self::coherent(geo))];
        if !cfg!(miri) {
            let cached = geo.for_cache_lines(64);
            v.push((cached, Self::non_coherent(&cached, stale)));
        }
        v
    }

    /// One region, prepared for `geo`.
    pub(crate) fn coherent(geo: &Geometry) -> Self {
        let bytes = AlignedBytes::new(geo.region_len());
        geo.prepare(&bytes.region());
        Self {
            coherent: Some(bytes),
            model: None,
        }
    }

    /// The cache model over `geo`: prepared by the driver's core, settled into RAM, every ring
    /// watched for its publish order.
    pub(crate) fn non_coherent(geo: &Geometry, stale: Stale) -> Self {
        let model = CacheModel::new(geo.region_len(), 64, stale);
        geo.prepare(&model.view(0));
        model.settle_from(0);
        for r in geo.rings() {
            model.watch_ring(r.base, r.layout);
        }
        Self {
            coherent: None,
            model: Some(model),
        }
    }

    /// Whether this is the cache model.
    pub(crate) fn cached(&self) -> bool {
        self.model.is_some()
    }

    /// The region as `role`'s core sees it.
    pub(crate) fn region(&self, role: Role) -> SharedRegion<'_> {
        match (&self.model, &self.coherent) {
            (Some(m), _) => m.view(Self::side(role)),
            (None, Some(b)) => b.region(),
            (None, None) => unreachable!("one or the other"),
        }
    }

    fn side(role: Role) -> usize {
        match role {
            Role::Driver => 0,
            Role::Device => 1,
        }
    }

    /// A link of `role` (not started) on this memory.
    pub(crate) fn link<'r, const N: usize>(
        &'r self,
        geo: &Geometry,
        role: Role,
    ) -> TestLink<'r, N> {
        self.link_with(geo, role, geo.config(role))
    }

    /// The same with an adjusted configuration.
    pub(crate) fn link_with<'r, const N: usize>(
        &'r self,
        geo: &Geometry,
        role: Role,
        cfg: Config,
    ) -> TestLink<'r, N> {
        let platform = match &self.model {
            None => geo.platform(self.region(role)),
            Some(m) => Loopback::non_coherent(m.clone(), Self::side(role), geo.base),
        };
        Link::new(self.region(role), platform, TestEnv::new(), cfg).expect("valid link config")
    }

    /// What the model saw (`None` when coherent).
    pub(crate) fn cache_stats(&self) -> Option<CacheStats> {
        self.model.as_ref().map(|m| m.stats())
    }
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.cached() {
            "non-coherent cache model"
        } else {
            "coherent memory"
        })
    }
}
