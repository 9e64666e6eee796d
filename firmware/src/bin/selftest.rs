//! Both roles of rpmsg in one Cortex-M4 image, checked end to end in QEMU.
//!
//! A driver link and a device link share a region of this image's RAM, once in RPMsg-Lite's
//! layout and once in the resource-table layout whose table this firmware declares with
//! [`rpmsg::resource_table!`]. Doorbells are flags the main loop polls. Prints one line per
//! step, then `N passed, M failed`, and exits through semihosting: status 0 when all passed.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use rpmsg::compact::{Message, Remote, State};
use rpmsg::port::SpinEnvironment;
use rpmsg::wire::rsc::{
    CarveoutRepr, FW_RSC_ADDR_ANY, ResourceTable, TraceRepr, VIRTIO_ID_RPMSG, VdevRepr, VringInfo,
    name_field, vdev_field,
};
use rpmsg::wire::vring::VIRTIO_RPMSG_F_NS;
use rpmsg::{
    Announcement, Config, Endpoint, EndpointConfig, Error, Link, LiteConfig, NsHandler, NsKind,
    Role, RscConfig, RxBuffer, RxHandler, SharedRegion, Timeout,
};
use rpmsg_firmware_example::platform::{Doorbell, HookStats, PEER_BASE, QemuPlatform};
use rpmsg_firmware_example::{clock, shmem};
use static_cell::ConstStaticCell;

type Env = SpinEnvironment<fn() -> u64>;
type TestLink = Link<'static, QemuPlatform<'static>, Env, 4, 4>;

/// Doorbells rung by the device for the driver, and by the driver for the device.
static DRIVER_BELL: Doorbell = Doorbell::new();
static DEVICE_BELL: Doorbell = Doorbell::new();

/// Doorbells handled on an up link without any invalidate (must stay 0).
static MISSED_INVALIDATES: AtomicU32 = AtomicU32::new(0);

// ---------------------------------------------------------------------------------------------
// The resource table, and where things lie in the resource-table region.

const VRING0: u32 = 0x400;
const VRING1: u32 = 0x800;
const POOL: u32 = 0x1000;
const RSC_NUM: u32 = 4;
const PEER: u32 = PEER_BASE as u32;
/// A trace buffer in the board window (unused memory the linker does not allocate).
const TRACE_DA: u32 = 0x2100_8000;

const fn named(name: &str) -> [u8; 32] {
    match name_field(name) {
        Ok(n) => n,
        Err(_) => panic!("names hold at most 31 bytes"),
    }
}

rpmsg::resource_table! {
    /// What this firmware would tell remoteproc: one rpmsg vdev with the name service, whose
    /// vrings sit at fixed peer addresses inside the shared region, the buffer pool as a
    /// carveout, and a trace buffer.
    static RSC_TABLE = {
        vdev: VdevRepr {
            id: VIRTIO_ID_RPMSG,
            notifyid: 0,
            dfeatures: 1 << VIRTIO_RPMSG_F_NS,
            config_len: 0,
            vrings: [
                VringInfo { da: PEER + VRING0, align: 16, num: RSC_NUM, notifyid: 1 },
                VringInfo { da: PEER + VRING1, align: 16, num: RSC_NUM, notifyid: 2 },
            ],
        },
        carveouts: [CarveoutRepr {
            da: PEER + POOL,
            pa: FW_RSC_ADDR_ANY,
            len: 2 * RSC_NUM * 512,
            flags: 0,
            name: named("vdev0buffer"),
        }],
        trace: Some(TraceRepr { da: TRACE_DA, len: 0x400, name: named("trace0") }),
    };
}

// ---------------------------------------------------------------------------------------------
// Handlers.

/// Counts the announcements a device receives that bind no endpoint.
struct NsLog {
    creates: AtomicU32,
    destroys: AtomicU32,
    host_named: AtomicU32,
}

impl NsHandler for NsLog {
    fn on_announcement(&self, a: &Announcement) {
        match a.kind {
            NsKind::Create => self.creates.fetch_add(1, Ordering::Relaxed),
            NsKind::Destroy => self.destroys.fetch_add(1, Ordering::Relaxed),
        };
        if a.name.as_str() == Some("rpmsg-host") {
            self.host_named.fetch_add(1, Ordering::Relaxed);
        }
    }
}

static DEVICE_NS: NsLog = NsLog {
    creates: AtomicU32::new(0),
    destroys: AtomicU32::new(0),
    host_named: AtomicU32::new(0),
};
static DRIVER_NS: NsLog = NsLog {
    creates: AtomicU32::new(0),
    destroys: AtomicU32::new(0),
    host_named: AtomicU32::new(0),
};

/// A callback endpoint's handler: counts messages and bytes, checks the pattern.
struct Counter {
    messages: AtomicU32,
    bytes: AtomicU32,
    bad: AtomicU32,
}

impl RxHandler for Counter {
    fn on_message(&self, msg: RxBuffer<'_>) {
        let mut buf = [0u8; 496];
        let n = msg.copy_to(&mut buf);
        if n != msg.len()
            || !buf[..n]
                .iter()
                .enumerate()
                .all(|(i, &b)| b == pattern(n, i))
        {
            self.bad.fetch_add(1, Ordering::Relaxed);
        }
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(n as u32, Ordering::Relaxed);
    }
}

static CALLBACK: Counter = Counter {
    messages: AtomicU32::new(0),
    bytes: AtomicU32::new(0),
    bad: AtomicU32::new(0),
};

// ---------------------------------------------------------------------------------------------
// The two "cores" in one loop.

/// Byte `i` of a test message of `len` bytes.
fn pattern(len: usize, i: usize) -> u8 {
    (i.wrapping_mul(7) ^ len) as u8
}

/// Handles every doorbell rung, on both sides, until none is left; the device echoes what its
/// echo endpoint receives.
fn pump(drv: &TestLink, dev: &TestLink, echo: Option<&Endpoint<'_>>) -> Result<(), Error> {
    for _ in 0..64 {
        let (to_dev, to_drv) = (DEVICE_BELL.take(), DRIVER_BELL.take());
        if to_dev == 0 && to_drv == 0 {
            return Ok(());
        }
        ring(dev, to_dev)?;
        if let Some(ep) = echo {
            serve(ep)?;
        }
        ring(drv, to_drv)?;
    }
    Err(Error::Timeout)
}

/// Runs `handle_notify` for each id in `mask`, as a doorbell interrupt would.
fn ring(link: &TestLink, mask: u32) -> Result<(), Error> {
    for id in (0..32).filter(|id| mask & (1 << id) != 0) {
        let before = link.platform().stats().invalidates;
        match link.handle_notify(id) {
            // A doorbell for a link we shut down: nothing to do.
            Ok(_) | Err(Error::LinkDown) => {}
            Err(e) => return Err(e),
        }
        if link.is_up() && link.platform().stats().invalidates == before {
            MISSED_INVALIDATES.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// The device's echo service, zero-copy both ways: each queued message is read in place and
/// answered from a transmit buffer filled in place.
fn serve(ep: &Endpoint<'_>) -> Result<(), Error> {
    loop {
        let rx = match ep.recv_zero_copy(Timeout::NoWait) {
            Ok(rx) => rx,
            Err(Error::NoBuffer) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut tx = ep.alloc_tx(Timeout::NoWait)?;
        let mut buf = [0u8; 496];
        let data = buf.get_mut(..rx.len()).ok_or(Error::NoBuffer)?;
        rx.read(0, data)?;
        tx.write(0, data)?;
        tx.send_to(rx.src(), data.len())?;
        drop(rx);
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting.

struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn step(&mut self, name: &str, f: impl FnOnce() -> Result<(), ()>) {
        match f() {
            Ok(()) => {
                self.passed += 1;
                hprintln!("ok   {}", name);
            }
            Err(()) => {
                self.failed += 1;
                hprintln!("FAIL {}", name);
            }
        }
    }
}

/// Fails the step with the line and a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            hprintln!("     line {}: {}", line!(), format_args!($($msg)+));
            return Err(());
        }
    };
}

/// Unwraps a `Result`, failing the step with the line and the error.
macro_rules! ok {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                hprintln!("     line {}: {} failed: {}", line!(), stringify!($e), e);
                return Err(());
            }
        }
    };
}

/// Echo of one message of `len` bytes from the driver endpoint `ep` through the device,
/// through the copy API or the zero-copy one.
fn echo_once(
    drv: &TestLink,
    dev: &TestLink,
    ep: &Endpoint<'_>,
    echo: &Endpoint<'_>,
    len: usize,
    zero_copy: bool,
) -> Result<(), ()> {
    let mut msg = [0u8; 496];
    for (i, b) in msg.iter_mut().enumerate().take(len) {
        *b = pattern(len, i);
    }
    if zero_copy {
        let mut tx = ok!(ep.alloc_tx(Timeout::NoWait));
        ensure!(tx.capacity() == 496, "capacity {}", tx.capacity());
        ok!(tx.write(0, &msg[..len]));
        ok!(tx.send(len));
    } else {
        ok!(ep.try_send(&msg[..len]));
    }
    ok!(pump(drv, dev, Some(echo)));
    let mut got = [0u8; 496];
    let (n, src) = if zero_copy {
        let rx = ok!(ep.recv_zero_copy(Timeout::NoWait));
        ok!(rx.read(0, &mut got[..rx.len()]));
        (rx.len(), rx.src())
    } else {
        ok!(ep.recv(&mut got, Timeout::NoWait))
    };
    ensure!(n == len, "echo of {} bytes came back with {}", len, n);
    ensure!(src == echo.addr(), "echo came from {}", src);
    ensure!(got[..n] == msg[..len], "echo of {} bytes differs", len);
    Ok(())
}

/// The peer address the driver wrote into descriptor `id` of the ring at region offset `ring`.
fn desc_addr(region: &SharedRegion<'_>, ring: usize, id: usize) -> u64 {
    region.read_u64(ring + 16 * id).unwrap_or(0)
}

fn hooks_step(name: &str, links: [&TestLink; 2]) -> Result<(), ()> {
    for link in links {
        check_hooks(name, link.role(), link.platform().stats())?;
    }
    Ok(())
}

/// The cache and doorbell hooks of one side were used as they must be.
fn check_hooks(name: &str, role: Role, s: HookStats) -> Result<(), ()> {
    hprintln!("     {} {:?}: {:?}", name, role, s);
    ensure!(
        s.cleans > 0 && s.invalidates > 0,
        "cache hooks never called"
    );
    ensure!(s.notifies > 0, "no doorbell rung");
    ensure!(
        s.notifies_without_clean == 0,
        "doorbell without a clean before it"
    );
    ensure!(s.outside_region == 0, "cache hook outside the region");
    ensure!(s.barriers > 0, "the platform's barrier was never used");
    let missed = MISSED_INVALIDATES.load(Ordering::Relaxed);
    ensure!(
        missed == 0,
        "{} doorbells handled without an invalidate",
        missed
    );
    Ok(())
}

fn new_link(region: SharedRegion<'static>, peer: &'static Doorbell, cfg: Config) -> TestLink {
    new_link_with_table(region, region, peer, cfg)
}

/// A link whose resource table is `table` (this firmware's `.resource_table` section).
fn new_link_with_table(
    region: SharedRegion<'static>,
    table: SharedRegion<'static>,
    peer: &'static Doorbell,
    cfg: Config,
) -> TestLink {
    let env = Env::new(clock::now_us as fn() -> u64);
    let platform = QemuPlatform::new(&region, peer).with_table(&table);
    match Link::new_with_table(region, table, platform, env, cfg) {
        Ok(l) => l,
        Err(e) => fail_hard("Link::new", e),
    }
}

fn fail_hard(what: &str, e: Error) -> ! {
    hprintln!("{} failed: {}", what, e);
    hprintln!("0 passed, 1 failed");
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}

// ---------------------------------------------------------------------------------------------
// The RPMsg-Lite layout.

fn lite_pair(t: &mut Tally, region: SharedRegion<'static>) {
    let lite = LiteConfig::DEFAULT;
    let drv = new_link(region, &DEVICE_BELL, Config::lite(Role::Driver, lite));
    let dev = new_link(region, &DRIVER_BELL, Config::lite(Role::Device, lite));
    let _ = dev.set_ns_handler(&DEVICE_NS);
    let _ = drv.set_ns_handler(&DRIVER_NS);
    let echo_cfg = EndpointConfig::new().addr(30).announce(true).queue(2);
    let echo_cfg = echo_cfg.name("rpmsg-echo").unwrap_or(echo_cfg);
    let Ok(echo) = dev.create_endpoint(echo_cfg) else {
        return t.step("lite: create endpoints", || Err(()));
    };
    let Ok(counted) = dev.create_endpoint(EndpointConfig::new().addr(31).callback(&CALLBACK))
    else {
        return t.step("lite: create endpoints", || Err(()));
    };
    // Bound by name when the device announces "rpmsg-echo" (no destination until then).
    let ep_cfg = EndpointConfig::new().queue(2);
    let Ok(ep) = drv.create_endpoint(ep_cfg.name("rpmsg-echo").unwrap_or(ep_cfg)) else {
        return t.step("lite: create endpoints", || Err(()));
    };
    let host_cfg = EndpointConfig::new().announce(true);
    let Ok(host) = drv.create_endpoint(host_cfg.name("rpmsg-host").unwrap_or(host_cfg)) else {
        return t.step("lite: create endpoints", || Err(()));
    };

    t.step(
        "lite: link up (driver starts, device sees its first kick)",
        || {
            ensure!(ep.dst() == Ok(None), "bound before any announcement");
            ok!(dev.start());
            ensure!(!dev.is_up(), "device up before the driver started");
            ok!(drv.start());
            ok!(pump(&drv, &dev, None));
            ensure!(
                drv.is_up() && dev.is_up(),
                "not up: {} {}",
                drv.is_up(),
                dev.is_up()
            );
            ensure!(
                dev.stats().sessions == 1,
                "sessions {}",
                dev.stats().sessions
            );
            ensure!(
                drv.notify_ids() == [0, 1],
                "notify ids {:?}",
                drv.notify_ids()
            );
            Ok(())
        },
    );

    t.step(
        "lite: descriptors carry peer addresses (offset map)",
        || {
            let (ring0, _, _) = lite.offsets();
            for id in 0..2 {
                let want = PEER_BASE + lite.buffer(id) as u64;
                let got = desc_addr(&region, ring0, id);
                ensure!(got == want, "desc {} addr {:#x}, want {:#x}", id, got, want);
                let local = (region.base_addr() + lite.buffer(id)) as u64;
                ensure!(
                    got != local,
                    "descriptor holds the local address {:#x}",
                    local
                );
            }
            Ok(())
        },
    );

    t.step(
        "lite: name service binds \"rpmsg-echo\" and announces \"rpmsg-host\"",
        || {
            ensure!(
                ep.dst() == Ok(Some(30)),
                "driver endpoint bound to {:?}",
                ep.dst()
            );
            ensure!(drv.name_service() && dev.name_service(), "name service off");
            let host_seen = DEVICE_NS.host_named.load(Ordering::Relaxed);
            ensure!(
                host_seen == 1,
                "device saw \"rpmsg-host\" {} times",
                host_seen
            );
            let created = DEVICE_NS.creates.load(Ordering::Relaxed);
            ensure!(created == 1, "device saw {} creates", created);
            let unbound = DRIVER_NS.creates.load(Ordering::Relaxed);
            ensure!(
                unbound == 0,
                "the bound announcement also went to the handler"
            );
            ensure!(host.addr() >= 1024, "dynamic address {}", host.addr());
            Ok(())
        },
    );

    t.step("lite: echo of every size 0..=496, copy API", || {
        for len in 0..=496 {
            echo_once(&drv, &dev, &ep, &echo, len, false)?;
        }
        Ok(())
    });

    t.step(
        "lite: echo of every size 0..=496, zero-copy both ways",
        || {
            for len in 0..=496 {
                echo_once(&drv, &dev, &ep, &echo, len, true)?;
            }
            let s = drv.stats();
            ensure!(
                s.tx_messages == 2 * 497 + 1,
                "driver sent {}",
                s.tx_messages
            );
            ensure!(
                s.rx_messages == 2 * 497 + 1,
                "driver received {}",
                s.rx_messages
            );
            ensure!(s.peer_violations == 0 && s.rx_malformed == 0, "{:?}", s);
            ensure!(dev.stats().peer_violations == 0, "{:?}", dev.stats());
            Ok(())
        },
    );

    t.step("lite: callback endpoint receives", || {
        let mut msg = [0u8; 496];
        for len in [0usize, 1, 17, 496] {
            for (i, b) in msg.iter_mut().enumerate().take(len) {
                *b = pattern(len, i);
            }
            ok!(ep.try_send_to(counted.addr(), &msg[..len]));
            ok!(pump(&drv, &dev, Some(&echo)));
        }
        let m = CALLBACK.messages.load(Ordering::Relaxed);
        let b = CALLBACK.bytes.load(Ordering::Relaxed);
        ensure!(
            (m, b) == (4, 514),
            "callback saw {} messages, {} bytes",
            m,
            b
        );
        ensure!(
            CALLBACK.bad.load(Ordering::Relaxed) == 0,
            "callback saw wrong bytes"
        );
        Ok(())
    });

    t.step("lite: a payload above 496 bytes is refused", || {
        let big = [0u8; 497];
        let r = ep.try_send(&big);
        ensure!(
            r == Err(Error::PayloadTooLarge { len: 497, max: 496 }),
            "497 bytes: {:?}",
            r
        );
        ok!(pump(&drv, &dev, Some(&echo)));
        Ok(())
    });

    t.step(
        "lite: driver shuts down; device gets the NS destroy",
        || {
            ok!(drv.shutdown());
            ok!(pump(&drv, &dev, Some(&echo)));
            ensure!(!drv.is_up(), "driver still up");
            let destroys = DEVICE_NS.destroys.load(Ordering::Relaxed);
            ensure!(destroys == 1, "device saw {} destroys", destroys);
            ensure!(
                ep.try_send(b"x") == Err(Error::LinkDown),
                "driver still sends"
            );
            // RPMsg-Lite's layout has no status byte: the device learns of the end only by the
            // announcements; it shuts down in turn.
            ok!(dev.shutdown());
            ensure!(
                echo.try_send(b"x") == Err(Error::LinkDown),
                "device still sends"
            );
            Ok(())
        },
    );

    t.step(
        "lite: cache hooks around every doorbell, local addresses only",
        || hooks_step("lite", [&drv, &dev]),
    );
}

// ---------------------------------------------------------------------------------------------
// The resource-table layout, with the table this firmware declares.

fn rsc_pair(t: &mut Tally, region: SharedRegion<'static>) {
    let table_len = RSC_TABLE.len();
    let vdev_at = 16 + 4 * 3;

    t.step(
        "rsc: .resource_table holds a table the parser accepts",
        || {
            let bytes = RSC_TABLE.to_bytes();
            let table = ok!(ResourceTable::new_checked(&bytes[..]));
            let vdev = ok!(table.find_vdev(VIRTIO_ID_RPMSG));
            let Some(vdev) = vdev else {
                ensure!(false, "no rpmsg vdev");
                return Err(());
            };
            ok!(vdev.check_rpmsg());
            ensure!(vdev.offset == vdev_at, "vdev at {}", vdev.offset);
            ensure!(
                vdev.vrings[1].da == PEER + VRING1,
                "vring1 da {:#x}",
                vdev.vrings[1].da
            );
            ensure!(
                RSC_TABLE.addr() % 8 == 0,
                "table at {:#x}",
                RSC_TABLE.addr()
            );
            Ok(())
        },
    );

    let mut drv_cfg = RscConfig::new(0, table_len);
    drv_cfg.pool_offset = POOL as usize;
    drv_cfg.buffer_size = 512;
    // Both links use the table where it is, in its own section: Linux writes it in place.
    let table = match SharedRegion::from_atomics(RSC_TABLE.as_atomic()) {
        Ok(t) => t,
        Err(_) => return t.step("rsc: the table section is 8-aligned", || Err(())),
    };
    let drv = new_link_with_table(
        region,
        table,
        &DEVICE_BELL,
        Config::rsc_table(Role::Driver, drv_cfg),
    );
    let dev_cfg = Config::rsc_table(Role::Device, RscConfig::new(0, table_len));
    let dev = new_link_with_table(region, table, &DRIVER_BELL, dev_cfg);
    let echo_cfg = EndpointConfig::new().addr(30).announce(true).queue(2);
    let Ok(echo) = dev.create_endpoint(echo_cfg.name("rpmsg-echo").unwrap_or(echo_cfg)) else {
        return t.step("rsc: create endpoints", || Err(()));
    };
    let ep_cfg = EndpointConfig::new().queue(2);
    let Ok(ep) = drv.create_endpoint(ep_cfg.name("rpmsg-echo").unwrap_or(ep_cfg)) else {
        return t.step("rsc: create endpoints", || Err(()));
    };
    let status = vdev_at + vdev_field::STATUS;

    t.step("rsc: link up through the status byte", || {
        ok!(dev.start());
        ok!(pump(&drv, &dev, None));
        ensure!(!dev.is_up(), "device up before the driver");
        ok!(drv.start());
        ensure!(
            table.read_u8(status) == Ok(0x07),
            "status {:?}",
            table.read_u8(status)
        );
        let g = table.read_u32(vdev_at + vdev_field::GFEATURES);
        ensure!(g == Ok(1), "gfeatures {:?}", g);
        ok!(pump(&drv, &dev, None));
        ensure!(
            drv.is_up() && dev.is_up(),
            "not up: {} {}",
            drv.is_up(),
            dev.is_up()
        );
        ensure!(dev.name_service(), "name service not negotiated");
        ensure!(
            drv.notify_ids() == [1, 2],
            "driver notify ids {:?}",
            drv.notify_ids()
        );
        ensure!(
            dev.notify_ids() == [1, 2],
            "device notify ids {:?}",
            dev.notify_ids()
        );
        ensure!(
            ep.dst() == Ok(Some(30)),
            "driver endpoint bound to {:?}",
            ep.dst()
        );
        Ok(())
    });

    t.step(
        "rsc: vrings and buffers at peer addresses (offset map)",
        || {
            for (k, off) in [(0, VRING0), (1, VRING1)] {
                let da = table.read_u32(vdev_at + vdev_field::vring(k) + vdev_field::VRING_DA);
                ensure!(da == Ok(PEER + off), "vring{} da {:?}", k, da);
            }
            let got = desc_addr(&region, VRING0 as usize, 0);
            ensure!(
                got == PEER_BASE + u64::from(POOL),
                "rx buffer 0 at {:#x}",
                got
            );
            Ok(())
        },
    );

    t.step("rsc: echo, copy and zero-copy", || {
        for len in [0usize, 1, 16, 100, 255, 495, 496] {
            echo_once(&drv, &dev, &ep, &echo, len, false)?;
            echo_once(&drv, &dev, &ep, &echo, len, true)?;
        }
        ensure!(drv.stats().peer_violations == 0, "{:?}", drv.stats());
        ensure!(dev.stats().peer_violations == 0, "{:?}", dev.stats());
        Ok(())
    });

    t.step(
        "rsc: driver shuts down; device sees the link go down",
        || {
            ok!(drv.shutdown());
            ensure!(
                table.read_u8(status) == Ok(0),
                "status {:?}",
                table.read_u8(status)
            );
            ok!(dev.poll());
            ensure!(!dev.is_up(), "device still up");
            let r = echo.try_send(b"x");
            ensure!(
                r == Err(Error::LinkDown),
                "device send after reset: {:?}",
                r
            );
            let mut buf = [0u8; 4];
            let r = echo.recv(&mut buf, Timeout::Forever);
            ensure!(
                r == Err(Error::LinkDown),
                "device recv after reset: {:?}",
                r
            );
            Ok(())
        },
    );

    t.step(
        "rsc: cache hooks around every doorbell, local addresses only",
        || hooks_step("rsc", [&drv, &dev]),
    );
}

// ---------------------------------------------------------------------------------------------
// The compact remote (`rpmsg::compact::Remote`) against a full driver link.

type Compact = Remote<'static, QemuPlatform<'static>, 2, 2>;

/// The compact remote's state, in `.bss`.
static COMPACT_STATE: ConstStaticCell<State<'static, 2, 2>> = ConstStaticCell::new(State::new());

/// The compact remote's echo endpoint: answers each message with its own bytes.
fn compact_echo(mut msg: Message<'_>) {
    let mut buf = [0u8; 496];
    let sent = msg.copy_to(&mut buf).and_then(|n| msg.reply(&buf[..n]));
    if sent.is_err() {
        CALLBACK.bad.fetch_add(1, Ordering::Relaxed);
    }
}

/// Handles every doorbell rung, on both sides, until none is left.
fn compact_pump(drv: &TestLink, remote: &mut Compact) -> Result<(), Error> {
    for _ in 0..64 {
        let (to_dev, to_drv) = (DEVICE_BELL.take(), DRIVER_BELL.take());
        if to_dev == 0 && to_drv == 0 {
            return Ok(());
        }
        for id in (0..32).filter(|id| to_dev & (1 << id) != 0) {
            let before = remote.platform().stats().invalidates;
            remote.handle_notify(id)?;
            if remote.is_up() && remote.platform().stats().invalidates == before {
                MISSED_INVALIDATES.fetch_add(1, Ordering::Relaxed);
            }
        }
        ring(drv, to_drv)?;
    }
    Err(Error::Timeout)
}

fn compact_pair(t: &mut Tally, region: SharedRegion<'static>) {
    let lite = LiteConfig::DEFAULT;
    let drv = new_link(region, &DEVICE_BELL, Config::lite(Role::Driver, lite));
    let _ = drv.set_ns_handler(&DRIVER_NS);
    let platform = QemuPlatform::new(&region, &DRIVER_BELL);
    let mut remote: Compact = match Remote::new(region, platform, lite, COMPACT_STATE.take()) {
        Ok(r) => r,
        Err(e) => fail_hard("compact::Remote::new", e),
    };
    let bad_before = CALLBACK.bad.load(Ordering::Relaxed);
    t.step("compact: link up when the driver starts", || {
        ok!(remote.poll());
        ensure!(!remote.is_up(), "up before the driver started");
        ok!(drv.start());
        ok!(compact_pump(&drv, &mut remote));
        ok!(remote.poll());
        ensure!(remote.is_up(), "not up after the driver started");
        Ok(())
    });
    let Ok(ep) = drv.create_endpoint(EndpointConfig::new().addr(1024).queue(2)) else {
        return t.step("compact: create endpoints", || Err(()));
    };
    t.step("compact: announce, and the driver hears it", || {
        let before = DRIVER_NS.creates.load(Ordering::Relaxed);
        ok!(remote.create_endpoint(30, &compact_echo));
        ok!(remote.announce("rpmsg-compact", 30, NsKind::Create));
        ok!(compact_pump(&drv, &mut remote));
        let after = DRIVER_NS.creates.load(Ordering::Relaxed);
        ensure!(after == before + 1, "driver saw {} creates", after - before);
        Ok(())
    });
    t.step(
        "compact: echo of every size 0..=496 through callbacks",
        || {
            let mut msg = [0u8; 496];
            let mut got = [0u8; 496];
            for len in 0..=496 {
                for (i, b) in msg.iter_mut().enumerate().take(len) {
                    *b = pattern(len, i);
                }
                ok!(ep.send_to(30, &msg[..len]));
                ok!(compact_pump(&drv, &mut remote));
                let (n, src) = ok!(ep.recv(&mut got, Timeout::NoWait));
                ensure!(
                    n == len && src == 30,
                    "echo of {} came back as {} from {}",
                    len,
                    n,
                    src
                );
                ensure!(got[..n] == msg[..len], "echo of {} bytes differs", len);
            }
            let bad = CALLBACK.bad.load(Ordering::Relaxed);
            ensure!(bad == bad_before, "{} echoes failed", bad - bad_before);
            let s = remote.stats();
            ensure!(s.rx_messages == 497, "rx_messages {}", s.rx_messages);
            ensure!(s.peer_violations == 0, "violations: {:?}", s.last_violation);
            Ok(())
        },
    );
    t.step(
        "compact: send, then NoBuffer while the driver's buffers are full",
        || {
            ok!(remote.try_send(30, 1024, b"one"));
            ok!(remote.try_send(30, 1024, b"two"));
            ensure!(
                remote.try_send(30, 1024, b"three") == Err(Error::NoBuffer),
                "a third send found a buffer"
            );
            ok!(compact_pump(&drv, &mut remote));
            let mut got = [0u8; 16];
            for want in [&b"one"[..], b"two"] {
                let (n, src) = ok!(ep.recv(&mut got, Timeout::NoWait));
                ensure!(
                    &got[..n] == want && src == 30,
                    "got {:?} from {}",
                    &got[..n],
                    src
                );
            }
            ok!(remote.try_send(30, 1024, b"three"));
            ok!(compact_pump(&drv, &mut remote));
            let (n, _) = ok!(ep.recv(&mut got, Timeout::NoWait));
            ensure!(&got[..n] == b"three", "got {:?}", &got[..n]);
            Ok(())
        },
    );
    t.step(
        "compact: cache hooks around every doorbell, local addresses only",
        || check_hooks("compact", Role::Device, remote.platform().stats()),
    );
}

#[entry]
fn main() -> ! {
    let Some(cp) = cortex_m::Peripherals::take() else {
        fail_hard("Peripherals::take", Error::Busy);
    };
    clock::start(cp.SYST);
    let Some([lite, rsc, compact]) = shmem::selftest_regions() else {
        fail_hard("shmem::selftest_regions", Error::Busy);
    };
    hprintln!(
        "rpmsg self-test on a Cortex-M4: regions at {:#x} and {:#x}, seen by the peer at {:#x}",
        lite.base_addr(),
        rsc.base_addr(),
        PEER_BASE
    );
    let mut t = Tally {
        passed: 0,
        failed: 0,
    };
    lite_pair(&mut t, lite);
    rsc_pair(&mut t, rsc);
    compact_pair(&mut t, compact);
    hprintln!("{} ms", clock::now_us() / 1000);
    hprintln!("{} passed, {} failed", t.passed, t.failed);
    debug::exit(if t.failed == 0 {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::bkpt();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hprintln!("panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}
