//! The vhost-user back-end against a fake front-end that speaks the protocol exactly as the
//! kernel's `virtio_uml` 6.1 does (docs/linux-peer.md section 3) and plays the virtio driver
//! with our own core (a driver-role link on a resource table of its own), over guest memory in
//! a memfd.
//!
//! The front-end here is written from the protocol description, independently of the
//! back-end's code: its own encoder, its own checks (reply flags exactly 0x5, acks `u64 0`).

use rpmsg::layout::RscConfig;
use rpmsg::port::StdEnvironment;
use rpmsg::wire::rsc::{FW_RSC_ADDR_ANY, RscTableRepr, VIRTIO_ID_RPMSG, VdevRepr, VringInfo};
use rpmsg::{
    Config, EndpointConfig, Error, LinearMap, Link, Platform, Role, SharedRegion, Timeout,
};
use rpmsg_host::vhost_user::{
    DeviceOptions, End, Event, GuestMemory, Served, StopHandle, VhostError, VhostLink,
    VhostUserDevice,
};
use rustix::event::{EventfdFlags, PollFd, PollFlags, eventfd, poll};
use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
    sendmsg, socketpair,
};
use std::io::{IoSlice, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// How long a wait that must succeed may take before the test calls it hung: minutes, so a
/// loaded machine never fails it (item 14); only a broken run waits this long.
const HANG_GUARD: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// The protocol, as the front-end sees it.

const GET_FEATURES: u32 = 1;
const SET_FEATURES: u32 = 2;
const SET_OWNER: u32 = 3;
const SET_MEM_TABLE: u32 = 5;
const SET_VRING_NUM: u32 = 8;
const SET_VRING_ADDR: u32 = 9;
const SET_VRING_BASE: u32 = 10;
const SET_VRING_KICK: u32 = 12;
const SET_VRING_CALL: u32 = 13;
const GET_PROTOCOL_FEATURES: u32 = 15;
const SET_PROTOCOL_FEATURES: u32 = 16;
const SET_VRING_ENABLE: u32 = 18;
const SET_SLAVE_REQ_FD: u32 = 21;
const GET_CONFIG: u32 = 24;
const VRING_KICK: u32 = 35;
const SLAVE_VRING_CALL: u32 = 4;

const REPLY_ACK: u64 = 1 << 3;
const SLAVE_REQ: u64 = 1 << 5;
const CONFIG: u64 = 1 << 9;
const INBAND: u64 = 1 << 14;
/// virtio_uml's mask of the protocol features it knows.
const UML_PROTOCOL_MASK: u64 = REPLY_ACK | SLAVE_REQ | CONFIG | INBAND;

const NEED_REPLY: u32 = 0x8;
const VERSION: u32 = 0x1;

/// Where the fake guest's memory lies: the file is 3 MiB; the front-end shares the part from
/// 2 MiB on (a non-zero `mmap_offset`, as UML's physmem file after the kernel image), and guest
/// address = user address = file offset, as under UML.
const FILE_LEN: usize = 0x30_0000;
const MEM_START: u64 = 0x20_0000;
const MEM_LEN: u64 = 0x10_0000;
const VRING0: usize = 0x20_0000;
const VRING1: usize = 0x20_4000;
const POOL: usize = 0x26_0000;
const NUM: u32 = 256;

fn vring_parts(base: usize) -> (u64, u64, u64) {
    // Linux's vring_init with align 4096: avail after 16 * num descriptors, used at the next
    // page boundary after avail's 6 + 2 * num bytes.
    let desc = base as u64;
    let avail = desc + 16 * u64::from(NUM);
    let used = (avail + 6 + 2 * u64::from(NUM)).next_multiple_of(4096);
    (desc, avail, used)
}

/// One front-end connection.
struct FrontEnd {
    sock: Mutex<UnixStream>,
    reply_ack: AtomicBool,
}

impl FrontEnd {
    fn connect(path: &PathBuf) -> Self {
        let s = UnixStream::connect(path).expect("connect to the back-end");
        s.set_read_timeout(Some(HANG_GUARD)).unwrap();
        Self {
            sock: Mutex::new(s),
            reply_ack: AtomicBool::new(false),
        }
    }

    fn send_raw(
        s: &UnixStream,
        req: u32,
        flags: u32,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> std::io::Result<()> {
        let mut hdr = Vec::new();
        hdr.extend_from_slice(&req.to_le_bytes());
        hdr.extend_from_slice(&flags.to_le_bytes());
        hdr.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() {
            assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
        }
        let all: Vec<u8> = hdr.iter().chain(payload).copied().collect();
        // One sendmsg: the descriptors ride on the header's bytes.
        let n = sendmsg(s, &[IoSlice::new(&all)], &mut control, SendFlags::NOSIGNAL)?;
        assert_eq!(n, all.len(), "short send");
        Ok(())
    }

    /// Reads one reply and checks it as virtio_uml does: same request, flags exactly 0x5.
    fn read_reply(s: &mut UnixStream, req: u32) -> Vec<u8> {
        let mut hdr = [0u8; 12];
        s.read_exact(&mut hdr).expect("reply header");
        let w = |i: usize| u32::from_le_bytes(hdr[i..i + 4].try_into().unwrap());
        assert_eq!(w(0), req, "reply to another request");
        assert_eq!(w(4), 0x5, "reply flags must be exactly 0x5");
        let mut p = vec![0u8; w(8) as usize];
        s.read_exact(&mut p).expect("reply payload");
        p
    }

    /// A request without a natural reply: with REPLY_ACK it carries NEED_REPLY and blocks on
    /// the ack. `Err(code)` when the back-end acks non-zero.
    fn request(&self, req: u32, payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), u64> {
        let mut s = self.sock.lock().unwrap();
        let ack = self.reply_ack.load(Ordering::Relaxed);
        Self::send_raw(
            &s,
            req,
            VERSION | if ack { NEED_REPLY } else { 0 },
            payload,
            fds,
        )
        .expect("send a request");
        if !ack {
            return Ok(());
        }
        let p = Self::read_reply(&mut s, req);
        assert_eq!(p.len(), 8, "an ack is a u64");
        match u64::from_le_bytes(p.try_into().unwrap()) {
            0 => Ok(()),
            e => Err(e),
        }
    }

    fn get_u64(&self, req: u32) -> u64 {
        let mut s = self.sock.lock().unwrap();
        Self::send_raw(&s, req, VERSION, &[], &[]).expect("send a request");
        let p = Self::read_reply(&mut s, req);
        u64::from_le_bytes(p.try_into().expect("a u64 reply"))
    }

    /// An in-band kick (`VRING_KICK`), acknowledged with REPLY_ACK; errors ignored (the
    /// back-end may be gone at the end of a test).
    fn kick_inband(&self, q: u32) {
        let mut s = self.sock.lock().unwrap();
        if Self::send_raw(&s, VRING_KICK, VERSION | NEED_REPLY, &state(q, 0), &[]).is_ok() {
            let mut hdr = [0u8; 20];
            let _ = s.read_exact(&mut hdr);
        }
    }

    /// Sends raw bytes (hostile tests).
    fn send_bytes(&self, bytes: &[u8]) {
        let s = self.sock.lock().unwrap();
        let _ = rustix::net::send(&*s, bytes, SendFlags::NOSIGNAL);
    }

    /// Sends a message as given, without waiting for anything.
    fn send_msg(&self, req: u32, flags: u32, payload: &[u8], fds: &[BorrowedFd<'_>]) {
        let s = self.sock.lock().unwrap();
        Self::send_raw(&s, req, flags, payload, fds).expect("send");
    }

    /// Closes the connection (both directions).
    fn disconnect(&self) {
        let _ = self.sock.lock().unwrap().shutdown(std::net::Shutdown::Both);
    }

    /// Whether the back-end has closed the connection (reads EOF within the hang guard).
    fn closed_by_peer(&self) -> bool {
        let mut s = self.sock.lock().unwrap();
        s.set_read_timeout(Some(HANG_GUARD)).unwrap();
        let mut b = [0u8; 64];
        loop {
            match s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

fn state(index: u32, num: u32) -> Vec<u8> {
    [index.to_le_bytes(), num.to_le_bytes()].concat()
}

fn mem_table(regions: &[(u64, u64, u64, u64)], payload_regions: usize) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&(regions.len() as u32).to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    for i in 0..payload_regions {
        let (g, s, u, o) = regions.get(i).copied().unwrap_or_default();
        for v in [g, s, u, o] {
            p.extend_from_slice(&v.to_le_bytes());
        }
    }
    p
}

fn vring_addr(index: u32, desc: u64, used: u64, avail: u64) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&index.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    for v in [desc, used, avail, u64::MAX] {
        p.extend_from_slice(&v.to_le_bytes());
    }
    p
}

// ---------------------------------------------------------------------------------------------
// The fake guest: descriptors, memory, and the driver side of rpmsg (our own core).

/// How a scenario sets the connection up.
#[derive(Clone, Copy)]
struct Setup {
    inband: bool,
    two_regions: bool,
}

/// Descriptors the front-end keeps: kick eventfds, its ends of the call socketpairs and of
/// the slave channel.
struct Fds {
    kick: [OwnedFd; 2],
    call_ours: [OwnedFd; 2],
    call_theirs: [OwnedFd; 2],
    slave_ours: OwnedFd,
    slave_theirs: OwnedFd,
}

impl Fds {
    fn new() -> Self {
        let pair = || {
            socketpair(
                AddressFamily::UNIX,
                SocketType::STREAM,
                SocketFlags::CLOEXEC,
                None,
            )
            .unwrap()
        };
        let (c0a, c0b) = pair();
        let (c1a, c1b) = pair();
        let (sa, sb) = pair();
        let ev = || eventfd(0, EventfdFlags::CLOEXEC).unwrap();
        Self {
            kick: [ev(), ev()],
            call_ours: [c0a, c1a],
            call_theirs: [c0b, c1b],
            slave_ours: sa,
            slave_theirs: sb,
        }
    }
}

/// The driver's doorbells: eventfd kicks, or `VRING_KICK` messages in in-band mode.
struct DriverPlatform {
    map: LinearMap,
    kicks: [OwnedFd; 2],
    fe: Arc<FrontEnd>,
    inband: bool,
}

impl Platform for DriverPlatform {
    type Map = LinearMap;

    fn address_map(&self) -> &LinearMap {
        &self.map
    }

    fn notify(&self, id: u32) {
        if self.inband {
            self.fe.kick_inband(id);
        } else {
            let _ = rustix::io::write(&self.kicks[id as usize], &1u64.to_le_bytes());
        }
    }
}

type DriverLink<'r> = Link<'r, DriverPlatform, StdEnvironment, 256, 8>;

#[repr(align(8))]
struct Cells([AtomicU8; 128]);

/// The driver's own resource table: what Linux knows of the device (NS offered), with rings
/// placed where vring_create_virtqueue would put them.
fn driver_table(cells: &Cells) -> (SharedRegion<'_>, Config) {
    let table = SharedRegion::from_atomics(&cells.0).unwrap();
    let ring = |notifyid| VringInfo {
        da: FW_RSC_ADDR_ANY,
        align: 4096,
        num: NUM,
        notifyid,
    };
    let repr = RscTableRepr {
        vdev: Some(VdevRepr {
            id: VIRTIO_ID_RPMSG,
            notifyid: 2,
            dfeatures: 1,
            config_len: 0,
            vrings: [ring(0), ring(1)],
        }),
        carveouts: &[],
        trace: None,
    };
    let mut b = [0u8; 128];
    let len = repr.emit(&mut b).unwrap();
    table.copy_in(0, &b[..len]).unwrap();
    let mut rsc = RscConfig::new(0, len);
    rsc.vring_offsets = [Some(VRING0), Some(VRING1)];
    rsc.pool_offset = POOL;
    let mut cfg = Config::rsc_table(Role::Driver, rsc);
    cfg.send_timeout = HANG_GUARD;
    (table, cfg)
}

/// virtio_uml's start-up sequence, up to (not including) the first kick.
fn handshake(fe: &FrontEnd, mem: &GuestMemory, fds: &Fds, setup: Setup) {
    fe.request(SET_OWNER, &[], &[]).unwrap();
    let features = fe.get_u64(GET_FEATURES);
    assert_eq!(
        features, 0x1_4000_0001,
        "NS | PROTOCOL_FEATURES | VERSION_1"
    );
    let offered = fe.get_u64(GET_PROTOCOL_FEATURES);
    let mut want = offered & UML_PROTOCOL_MASK;
    if !setup.inband {
        want &= !INBAND;
    }
    assert_eq!(want & REPLY_ACK, REPLY_ACK);
    // virtio_uml records the protocol features before sending them: this one already asks for
    // an ack.
    fe.reply_ack.store(true, Ordering::Relaxed);
    fe.request(SET_PROTOCOL_FEATURES, &want.to_le_bytes(), &[])
        .unwrap();
    fe.request(SET_SLAVE_REQ_FD, &[], &[fds.slave_theirs.as_fd()])
        .unwrap();
    fe.request(SET_FEATURES, &features.to_le_bytes(), &[])
        .unwrap();
    let table = if setup.two_regions {
        // Split in two (as with highmem), same file; the tx pool lies in the second region.
        let half = MEM_LEN / 2;
        mem_table(
            &[
                (MEM_START, half, MEM_START, MEM_START),
                (MEM_START + half, half, MEM_START + half, MEM_START + half),
            ],
            2,
        )
    } else {
        // virtio_uml: always room for two regions (72 bytes), one used.
        mem_table(&[(MEM_START, MEM_LEN, MEM_START, MEM_START)], 2)
    };
    assert_eq!(table.len(), 72);
    let nfd = if setup.two_regions { 2 } else { 1 };
    let memfds = [mem.fd(), mem.fd()];
    fe.request(SET_MEM_TABLE, &table, &memfds[..nfd]).unwrap();
    for (q, base) in [(0u32, VRING0), (1, VRING1)] {
        if !setup.inband {
            fe.request(
                SET_VRING_CALL,
                &u64::from(q).to_le_bytes(),
                &[fds.call_theirs[q as usize].as_fd()],
            )
            .unwrap();
        }
        fe.request(SET_VRING_NUM, &state(q, NUM), &[]).unwrap();
        fe.request(SET_VRING_BASE, &state(q, 0), &[]).unwrap();
        let (d, a, u) = vring_parts(base);
        fe.request(SET_VRING_ADDR, &vring_addr(q, d, u, a), &[])
            .unwrap();
    }
    for q in 0..2u32 {
        if !setup.inband {
            fe.request(
                SET_VRING_KICK,
                &u64::from(q).to_le_bytes(),
                &[fds.kick[q as usize].as_fd()],
            )
            .unwrap();
        }
        fe.request(SET_VRING_ENABLE, &state(q, 1), &[]).unwrap();
    }
}

/// virtio_uml's teardown: rings off in reverse, a GET_FEATURES barrier, close.
fn teardown(fe: &FrontEnd) {
    fe.request(SET_VRING_ENABLE, &state(1, 0), &[]).unwrap();
    fe.request(SET_VRING_ENABLE, &state(0, 0), &[]).unwrap();
    let _ = fe.get_u64(GET_FEATURES);
    fe.disconnect();
}

/// Delivers the back-end's calls to the driver link: socketpair ends (8-byte integers) or
/// `SLAVE_VRING_CALL` messages on the slave channel, until `stop`.
fn call_thread(link: &DriverLink<'_>, fds: &Fds, stop: &OwnedFd, calls: &AtomicU64) {
    let mut slave_buf = Vec::new();
    loop {
        let mut p = [
            PollFd::new(&fds.call_ours[0], PollFlags::IN),
            PollFd::new(&fds.call_ours[1], PollFlags::IN),
            PollFd::new(&fds.slave_ours, PollFlags::IN),
            PollFd::new(stop, PollFlags::IN),
        ];
        poll(&mut p, None).unwrap();
        let ev: Vec<PollFlags> = p.iter().map(PollFd::revents).collect();
        if !ev[3].is_empty() {
            return;
        }
        for (q, e) in ev.iter().enumerate().take(2) {
            if e.contains(PollFlags::IN) {
                let mut b = [0u8; 64];
                if rustix::io::read(&fds.call_ours[q], &mut b).unwrap_or(0) == 0 {
                    return;
                }
                calls.fetch_add(1, Ordering::Relaxed);
                let _ = link.handle_notify(q as u32);
            } else if !e.is_empty() {
                return;
            }
        }
        if ev[2].contains(PollFlags::IN) {
            let mut b = [0u8; 256];
            let n = rustix::io::read(&fds.slave_ours, &mut b).unwrap_or(0);
            if n == 0 {
                return;
            }
            slave_buf.extend_from_slice(&b[..n]);
            while slave_buf.len() >= 12 {
                let w = |i: usize| u32::from_le_bytes(slave_buf[i..i + 4].try_into().unwrap());
                let (req, flags, size) = (w(0), w(4), w(8) as usize);
                if slave_buf.len() < 12 + size {
                    break;
                }
                assert_eq!(req, SLAVE_VRING_CALL, "only calls on the slave channel");
                assert_eq!(flags & 0x3, 1, "version 1");
                assert_eq!(size, 8);
                let q = w(12);
                slave_buf.drain(..12 + size);
                calls.fetch_add(1, Ordering::Relaxed);
                let _ = link.handle_notify(q);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The back-end's application: echo endpoints, as `rpmsg vhost-user` runs them.

const SERVICES: [&str; 2] = ["rpmsg-raw", "rpmsg-tty"];

fn echo_app(link: &VhostLink<'_>, echoed: &AtomicU64) -> Result<(), Error> {
    let eps = SERVICES
        .iter()
        .map(|n| link.create_endpoint(EndpointConfig::new().name(n)?.announce(true).queue(64)))
        .collect::<Result<Vec<_>, Error>>()?;
    std::thread::scope(|s| {
        for ep in &eps {
            s.spawn(move || {
                let mut buf = [0u8; 512];
                loop {
                    match ep.recv(&mut buf, Timeout::Forever) {
                        Ok((n, src)) => {
                            // Counted before the echo is published, and taken back if the
                            // send fails: the driver reads the count right after it receives
                            // the echo (the ring's release/acquire orders the two), and a
                            // count made after `send_to` returned could come later than that.
                            echoed.fetch_add(1, Ordering::Relaxed);
                            if ep.send_to(src, &buf[..n]).is_err() {
                                echoed.fetch_sub(1, Ordering::Relaxed);
                            }
                        }
                        Err(Error::LinkDown) => {
                            if link.wait_link_up(Timeout::Forever).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
            });
        }
    });
    Ok(())
}

struct Backend {
    path: PathBuf,
    stop: StopHandle,
    events: Arc<Mutex<Vec<Event>>>,
    echoed: Arc<AtomicU64>,
    done: mpsc::Receiver<Result<Served<Result<(), Error>>, VhostError>>,
}

impl Backend {
    fn start(name: &str, inband: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("rpmsg-vhost-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vhost.sock");
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let mut opts =
            DeviceOptions::new(&path).on_event(move |e| ev.lock().unwrap().push(e.clone()));
        opts.inband_notifications = inband;
        // A loaded machine may stall either side for seconds: only a hang fails.
        opts.io_timeout = HANG_GUARD;
        opts.send_timeout = HANG_GUARD;
        let device = VhostUserDevice::bind(opts).expect("bind");
        assert!(path.exists(), "listening before bind returns");
        let stop = device.stop_handle();
        let echoed = Arc::new(AtomicU64::new(0));
        let e2 = echoed.clone();
        let (tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let r = device.serve(|link| echo_app(link, &e2));
            let _ = tx.send(r);
        });
        Self {
            path,
            stop,
            events,
            echoed,
            done,
        }
    }

    /// Waits (bounded: a hang is a failure) for `serve` to return.
    fn finish(&self) -> Served<Result<(), Error>> {
        self.done
            .recv_timeout(HANG_GUARD)
            .expect("the back-end returned (no hang)")
            .expect("serve ran")
    }

    fn wait_event(&self, what: &str, f: impl Fn(&Event) -> bool) {
        let t0 = Instant::now();
        while t0.elapsed() < HANG_GUARD {
            if self.events.lock().unwrap().iter().any(&f) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("no {what} event; saw {:?}", self.events.lock().unwrap());
    }
}

/// How a scenario ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ending {
    /// virtio_uml at shutdown: vq1 off, vq0 off, GET_FEATURES, close.
    UmlTeardown,
    /// The front-end vanishes while the link is up.
    Disconnect,
    /// `SET_VRING_ENABLE 0` on both rings, then the connection stays until the test closes it.
    DisableThenClose,
    /// The back-end's stop handle.
    Stop,
}

/// A whole scenario: handshake, the driver comes up, NS arrives, `rounds` echo round trips per
/// service, then `ending`.
fn echo_scenario(
    name: &str,
    setup: Setup,
    rounds: u32,
    ending: Ending,
) -> (Backend, Served<Result<(), Error>>) {
    let be = Backend::start(name, setup.inband);
    let mem = GuestMemory::new("guest", FILE_LEN).unwrap();
    let fds = Fds::new();
    let fe = Arc::new(FrontEnd::connect(&be.path));
    handshake(&fe, &mem, &fds, setup);
    assert!(
        !be.events.lock().unwrap().contains(&Event::LinkUp),
        "the link must not come up before the first kick"
    );
    let cells = Cells([const { AtomicU8::new(0) }; 128]);
    let (table, cfg) = driver_table(&cells);
    let region = mem.region().unwrap();
    let platform = DriverPlatform {
        map: LinearMap {
            base: 0,
            len: FILE_LEN,
        },
        kicks: [
            fds.kick[0].try_clone().unwrap(),
            fds.kick[1].try_clone().unwrap(),
        ],
        fe: fe.clone(),
        inband: setup.inband,
    };
    let driver: DriverLink<'_> =
        Link::new_with_table(region, table, platform, StdEnvironment::new(), cfg).unwrap();
    let stop = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
    let calls = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| call_thread(&driver, &fds, &stop, &calls));
        // Stops the call thread however this scope ends: a failed assertion below must fail
        // the test, not leave the scope waiting for that thread forever.
        let _stop_calls = StopOnDrop(&stop);
        let eps: Vec<_> = SERVICES
            .iter()
            .map(|n| {
                driver
                    .create_endpoint(EndpointConfig::new().name(n).unwrap().queue(8))
                    .unwrap()
            })
            .collect();
        // Posts 256 receive buffers of 512 bytes on vring 0, DRIVER_OK, kicks vring 0.
        driver.start().unwrap();
        be.wait_event("link up", |e| *e == Event::LinkUp);
        let t0 = Instant::now();
        for ep in &eps {
            while ep.dst().unwrap().is_none() {
                assert!(t0.elapsed() < HANG_GUARD, "no NS announcement");
                driver.poll().unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let dsts: Vec<u32> = eps.iter().map(|e| e.dst().unwrap().unwrap()).collect();
        assert_eq!(dsts, [1024, 1025], "announced at the first addresses");
        let t0 = Instant::now();
        let mut back = [0u8; 496];
        for i in 0..rounds {
            for (k, ep) in eps.iter().enumerate() {
                let len = 1 + (i as usize * 7 + k) % 496;
                let msg: Vec<u8> = (0..len).map(|j| (i as usize + j + k) as u8).collect();
                ep.send(&msg).unwrap();
                let (n, src) = ep.recv(&mut back, Timeout::After(HANG_GUARD)).unwrap();
                assert_eq!(src, dsts[k]);
                assert_eq!(&back[..n], &msg[..], "echo {i} on {}", SERVICES[k]);
            }
        }
        let dt = t0.elapsed();
        let total = u64::from(rounds) * eps.len() as u64;
        println!(
            "{name}: {total} round trips in {dt:?}: {:.0} round trips/s ({} calls delivered)",
            total as f64 / dt.as_secs_f64(),
            calls.load(Ordering::Relaxed)
        );
        assert_eq!(be.echoed.load(Ordering::Relaxed), total);
        match ending {
            Ending::UmlTeardown => teardown(&fe),
            Ending::Disconnect => fe.disconnect(),
            Ending::DisableThenClose => {
                fe.request(SET_VRING_ENABLE, &state(1, 0), &[]).unwrap();
                fe.request(SET_VRING_ENABLE, &state(0, 0), &[]).unwrap();
                be.wait_event("link down", |e| matches!(e, Event::LinkDown { .. }));
                // The device side is down: a message from the driver is not echoed.
                eps[0].send(b"after disable").unwrap();
                assert_eq!(
                    eps[0].recv(&mut back, Timeout::After(Duration::from_millis(200))),
                    Err(Error::Timeout)
                );
                // The connection is still served.
                assert_eq!(fe.get_u64(GET_FEATURES), 0x1_4000_0001);
                fe.disconnect();
            }
            Ending::Stop => {
                be.stop.stop();
                assert!(fe.closed_by_peer(), "stop closes the connection");
            }
        }
    });
    let served = be.finish();
    (be, served)
}

/// Signals an eventfd when dropped.
struct StopOnDrop<'a>(&'a OwnedFd);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = rustix::io::write(self.0, &1u64.to_le_bytes());
    }
}

fn link_down_reasons(be: &Backend) -> Vec<String> {
    be.events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::LinkDown { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn check_clean(served: &Served<Result<(), Error>>, end: End) {
    let r = &served.report;
    assert_eq!(r.end, end);
    assert!(r.protocol_errors.is_empty(), "{:?}", r.protocol_errors);
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(
        served.app.as_ref().map(|a| a.is_ok()),
        Some(true),
        "the app returned Ok"
    );
    let st = r.stats.expect("link stats");
    assert_eq!(st.peer_violations, 0);
    assert_eq!(st.sessions, 1);
    assert_eq!(r.features, Some(0x1_4000_0001));
    assert!(
        r.vrings
            .iter()
            .all(|v| v.is_some_and(|v| v.num == NUM && v.align == 4096))
    );
}

#[test]
fn uml_sequence_echo_wraps_the_rings_and_teardown_ends_cleanly() {
    // 1500 round trips on each of two endpoints: 3000 messages each way, the 256-entry rings
    // wrap more than ten times.
    let (be, served) = echo_scenario(
        "teardown",
        Setup {
            inband: false,
            two_regions: false,
        },
        1500,
        Ending::UmlTeardown,
    );
    check_clean(&served, End::Disconnected);
    let r = &served.report;
    assert_eq!(r.protocol_features, Some(REPLY_ACK | SLAVE_REQ | CONFIG));
    assert_eq!(r.regions.len(), 1);
    assert_eq!(r.regions[0].mmap_offset, MEM_START);
    let st = r.stats.unwrap();
    // Two announcements plus the echoes.
    assert_eq!(st.tx_messages, 2 + 3000);
    assert_eq!(st.rx_messages, 3000);
    assert!(r.kicks[0] >= 1 && r.kicks[1] >= 1);
    // Vring 1 returns are called only while the driver clears VRING_AVAIL_F_NO_INTERRUPT (a
    // resource-table device honours it by default, issue 13 item 6); the rest are counted.
    assert!(r.calls[0] > 0);
    assert!(r.calls[1] + u64::from(st.doorbells_suppressed) > 0);
    assert!(
        st.doorbells_suppressed > 0,
        "the driver's flag was honoured"
    );
    assert_eq!(link_down_reasons(&be), ["vring 1 disabled"]);
    assert!(!be.path.exists(), "the socket file is gone");
}

#[test]
fn front_end_disconnect_ends_the_session() {
    let (be, served) = echo_scenario(
        "disconnect",
        Setup {
            inband: false,
            two_regions: false,
        },
        300,
        Ending::Disconnect,
    );
    check_clean(&served, End::Disconnected);
    assert_eq!(link_down_reasons(&be), ["front-end disconnected"]);
}

#[test]
fn vring_disable_ends_the_session_and_the_connection_goes_on() {
    let (be, served) = echo_scenario(
        "disable",
        Setup {
            inband: false,
            two_regions: false,
        },
        100,
        Ending::DisableThenClose,
    );
    check_clean(&served, End::Disconnected);
    assert_eq!(link_down_reasons(&be), ["vring 1 disabled"]);
}

#[test]
fn stop_handle_closes_the_connection() {
    let (be, served) = echo_scenario(
        "stop",
        Setup {
            inband: false,
            two_regions: false,
        },
        10,
        Ending::Stop,
    );
    check_clean(&served, End::Stopped);
    assert_eq!(link_down_reasons(&be).len(), 1);
}

#[test]
fn two_regions_and_inband_notifications() {
    let (_be, served) = echo_scenario(
        "inband",
        Setup {
            inband: true,
            two_regions: true,
        },
        600,
        Ending::UmlTeardown,
    );
    check_clean(&served, End::Disconnected);
    let r = &served.report;
    assert_eq!(r.regions.len(), 2);
    assert_eq!(
        r.protocol_features,
        Some(REPLY_ACK | SLAVE_REQ | CONFIG | INBAND)
    );
    assert!(r.calls[0] > 0, "calls went through the slave channel");
}

// ---------------------------------------------------------------------------------------------
// Hostile front-ends: a clear error, no panic, no hang.

/// Connects, negotiates REPLY_ACK, maps one region; returns what the hostile steps need.
fn hostile_start(name: &str) -> (Backend, FrontEnd, GuestMemory) {
    let be = Backend::start(name, false);
    let fe = FrontEnd::connect(&be.path);
    let mem = GuestMemory::new("guest", FILE_LEN).unwrap();
    fe.request(SET_OWNER, &[], &[]).unwrap();
    fe.reply_ack.store(true, Ordering::Relaxed);
    fe.request(
        SET_PROTOCOL_FEATURES,
        &(REPLY_ACK | CONFIG).to_le_bytes(),
        &[],
    )
    .unwrap();
    (be, fe, mem)
}

fn map_memory(fe: &FrontEnd, mem: &GuestMemory) {
    fe.request(
        SET_MEM_TABLE,
        &mem_table(&[(MEM_START, MEM_LEN, MEM_START, MEM_START)], 2),
        &[mem.fd()],
    )
    .unwrap();
}

fn rejected(r: Result<(), u64>, what: &str) {
    assert!(
        matches!(r, Err(e) if e != 0),
        "{what} must be refused, got {r:?}"
    );
}

#[test]
fn hostile_requests_are_refused_and_the_connection_goes_on() {
    let (be, fe, mem) = hostile_start("hostile-acked");
    let efd = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
    // Before memory exists.
    rejected(fe.request(99, &[], &[]), "an unknown request");
    rejected(
        fe.request(SET_FEATURES, &[1, 2, 3, 4], &[]),
        "SET_FEATURES with 4 bytes",
    );
    rejected(
        fe.request(SET_FEATURES, &(1u64 << 28).to_le_bytes(), &[]),
        "a feature not offered",
    );
    rejected(
        fe.request(SET_PROTOCOL_FEATURES, &INBAND.to_le_bytes(), &[]),
        "a protocol feature not offered",
    );
    rejected(
        fe.request(
            SET_MEM_TABLE,
            &mem_table(&[(MEM_START, MEM_LEN, MEM_START, MEM_START)], 2),
            &[],
        ),
        "SET_MEM_TABLE without its descriptor",
    );
    rejected(
        fe.request(
            SET_MEM_TABLE,
            &mem_table(&[(MEM_START, MEM_LEN, MEM_START, MEM_START)], 1)[..30],
            &[mem.fd()],
        ),
        "a truncated memory table",
    );
    rejected(
        fe.request(
            SET_MEM_TABLE,
            &mem_table(&[(MEM_START, 0x100_0000, MEM_START, MEM_START)], 2),
            &[mem.fd()],
        ),
        "a region beyond the end of its file",
    );
    rejected(
        fe.request(
            SET_MEM_TABLE,
            &mem_table(&[(MEM_START, MEM_LEN, MEM_START, MEM_START + 1)], 2),
            &[mem.fd()],
        ),
        "an unaligned mmap offset",
    );
    rejected(
        fe.request(
            SET_MEM_TABLE,
            &mem_table(&[(0, 4096, 0, 0); 3], 3),
            &[mem.fd(), mem.fd(), mem.fd()],
        ),
        "three regions",
    );
    rejected(fe.request(SET_VRING_NUM, &state(0, 512), &[]), "num 512");
    rejected(fe.request(SET_VRING_NUM, &state(0, 100), &[]), "num 100");
    rejected(
        fe.request(SET_VRING_NUM, &state(2, 256), &[]),
        "vring index 2",
    );
    rejected(
        fe.request(SET_VRING_NUM, &[0; 12], &[]),
        "SET_VRING_NUM with 12 bytes",
    );
    rejected(
        fe.request(SET_VRING_KICK, &0u64.to_le_bytes(), &[]),
        "SET_VRING_KICK without its descriptor",
    );
    rejected(
        fe.request(
            SET_VRING_CALL,
            &0u64.to_le_bytes(),
            &[efd.as_fd(), efd.as_fd()],
        ),
        "SET_VRING_CALL with two descriptors",
    );
    rejected(
        fe.request(SET_VRING_CALL, &(0x100u64 | 0x200).to_le_bytes(), &[]),
        "unknown bits in SET_VRING_CALL",
    );
    rejected(
        fe.request(SET_OWNER, &[], &[efd.as_fd()]),
        "a descriptor where none belongs",
    );
    rejected(
        fe.request(SET_SLAVE_REQ_FD, &[], &[efd.as_fd()]),
        "SET_SLAVE_REQ_FD without SLAVE_REQ",
    );
    rejected(
        fe.request(VRING_KICK, &state(0, 0), &[]),
        "VRING_KICK without INBAND_NOTIFICATIONS",
    );
    rejected(
        fe.request(SET_VRING_BASE, &state(0, 7), &[]),
        "a non-zero ring base",
    );
    fe.request(SET_VRING_NUM, &state(0, NUM), &[]).unwrap();
    rejected(
        fe.request(
            SET_VRING_ADDR,
            &vring_addr(0, 0x20_0000, 0x20_2000, 0x20_1000),
            &[],
        ),
        "SET_VRING_ADDR before SET_MEM_TABLE",
    );
    map_memory(&fe, &mem);
    rejected(
        fe.request(
            SET_MEM_TABLE,
            &mem_table(&[(MEM_START, 0x8_0000, MEM_START, MEM_START)], 2),
            &[mem.fd()],
        ),
        "a changed memory table",
    );
    let (d, a, u) = vring_parts(VRING0);
    rejected(
        fe.request(
            SET_VRING_ADDR,
            &vring_addr(0, 0x10_0000, 0x10_0000 + (u - d), 0x10_0000 + (a - d)),
            &[],
        ),
        "a ring below the memory",
    );
    rejected(
        fe.request(
            SET_VRING_ADDR,
            &vring_addr(0, 0x2F_F000, 0x2F_F000 + (u - d), 0x2F_F000 + (a - d)),
            &[],
        ),
        "a ring running past the memory",
    );
    rejected(
        fe.request(SET_VRING_ADDR, &vring_addr(0, d, u, a + 16), &[]),
        "avail not right after the descriptors",
    );
    rejected(
        fe.request(SET_VRING_ADDR, &vring_addr(0, d, u + 8, a), &[]),
        "used at no power-of-two alignment",
    );
    rejected(
        fe.request(SET_VRING_ADDR, &vring_addr(0, d + 8, u + 8, a + 8), &[]),
        "descriptors not 16-byte aligned",
    );
    rejected(
        fe.request(SET_VRING_ADDR, &vring_addr(1, d, u, a), &[]),
        "SET_VRING_ADDR before SET_VRING_NUM",
    );
    let mut logged = vring_addr(0, d, u, a);
    logged[4] = 1;
    rejected(fe.request(SET_VRING_ADDR, &logged, &[]), "dirty logging");
    rejected(
        fe.request(SET_VRING_ENABLE, &state(0, 2), &[]),
        "enable value 2",
    );
    // GET_CONFIG: rpmsg has no config space; the answer says so, with flags 0x5.
    {
        let mut s = fe.sock.lock().unwrap();
        let mut p = Vec::new();
        for v in [0u32, 4, 0] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p.extend_from_slice(&[0; 4]);
        FrontEnd::send_raw(&s, GET_CONFIG, VERSION, &p, &[]).unwrap();
        let r = FrontEnd::read_reply(&mut s, GET_CONFIG);
        assert_eq!(r.len(), 12);
        assert_eq!(&r[4..8], &0u32.to_le_bytes(), "no config bytes");
    }
    // Everything still works after all that.
    fe.request(SET_VRING_ADDR, &vring_addr(0, d, u, a), &[])
        .unwrap();
    assert_eq!(fe.get_u64(GET_FEATURES), 0x1_4000_0001);
    fe.disconnect();
    let served = be.finish();
    let r = &served.report;
    assert_eq!(r.end, End::Disconnected);
    assert!(!r.is_clean(), "protocol errors make the run unclean");
    assert_eq!(r.protocol_errors.len(), 30, "{:#?}", r.protocol_errors);
    assert!(
        r.protocol_errors[0].contains("request 99 is not supported"),
        "{}",
        r.protocol_errors[0]
    );
    assert!(r.protocol_errors.iter().any(|e| e.contains("num 512")));
    assert!(r.protocol_errors.iter().any(|e| e.contains("contiguous")));
    assert!(
        r.protocol_errors
            .iter()
            .any(|e| e.contains("not inside one memory region"))
    );
    assert!(
        r.protocol_errors
            .iter()
            .any(|e| e.contains("file descriptor missing"))
    );
    let rejected_events = be
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::Rejected { .. }))
        .count();
    assert_eq!(rejected_events, r.protocol_errors.len());
}

#[test]
fn rings_above_4_gib_are_refused() {
    let (be, fe, mem) = hostile_start("above-4g");
    let g = 0x1_0000_0000u64;
    fe.request(
        SET_MEM_TABLE,
        &mem_table(&[(g, MEM_LEN, MEM_START, MEM_START)], 1),
        &[mem.fd()],
    )
    .unwrap();
    fe.request(SET_VRING_NUM, &state(0, NUM), &[]).unwrap();
    let (d, a, u) = vring_parts(VRING0);
    rejected(
        fe.request(SET_VRING_ADDR, &vring_addr(0, d, u, a), &[]),
        "a ring above 4 GiB",
    );
    fe.disconnect();
    let r = be.finish().report;
    assert!(
        r.protocol_errors[0].contains("above 4 GiB"),
        "{:?}",
        r.protocol_errors
    );
}

/// Each of these ends the connection with a protocol error: no way to answer it.
#[test]
fn unanswerable_messages_drop_the_connection() {
    type Poison = fn(&FrontEnd);
    let cases: [(&str, Poison, &str); 6] = [
        (
            "unknown-no-ack",
            |fe| fe.send_msg(99, VERSION, &[], &[]),
            "request 99",
        ),
        (
            "bad-version",
            |fe| fe.send_msg(GET_FEATURES, 0x2, &[], &[]),
            "version 2",
        ),
        (
            "reply-flag",
            |fe| fe.send_msg(GET_FEATURES, 0x5, &[], &[]),
            "flagged as a reply",
        ),
        (
            "huge",
            |fe| fe.send_msg(SET_FEATURES, VERSION | NEED_REPLY, &vec![0; 5000], &[]),
            "5000 payload bytes",
        ),
        (
            "truncated",
            |fe| {
                fe.send_bytes(&[SET_FEATURES as u8, 0, 0, 0, 9, 0, 0, 0, 8, 0, 0, 0, 1, 2]);
                fe.disconnect();
            },
            "2 of 8 payload bytes",
        ),
        (
            "bad-get",
            |fe| fe.send_msg(GET_FEATURES, VERSION, &[0; 4], &[]),
            "expected 0",
        ),
    ];
    for (name, poison, why) in cases {
        let (be, fe, _mem) = hostile_start(name);
        poison(&fe);
        assert!(
            fe.closed_by_peer() || name == "truncated",
            "{name}: connection dropped"
        );
        let served = be.finish();
        let r = &served.report;
        assert!(
            matches!(&r.end, End::ProtocolError(m) if m.contains(why)),
            "{name}: {:?}",
            r.end
        );
        assert!(
            served.app.is_none(),
            "memory never mapped: the app never ran"
        );
        assert!(!r.is_clean());
    }
}

/// Without REPLY_ACK there is no way to refuse a request but to hang up.
#[test]
fn without_reply_ack_a_bad_request_drops_the_connection() {
    let be = Backend::start("no-ack", false);
    let fe = FrontEnd::connect(&be.path);
    let mem = GuestMemory::new("guest", FILE_LEN).unwrap();
    fe.request(SET_OWNER, &[], &[]).unwrap();
    fe.request(
        SET_MEM_TABLE,
        &mem_table(&[(MEM_START, MEM_LEN, MEM_START, MEM_START)], 2),
        &[mem.fd()],
    )
    .unwrap();
    fe.request(SET_VRING_NUM, &state(1, 512), &[]).unwrap();
    assert!(fe.closed_by_peer());
    let served = be.finish();
    assert!(matches!(&served.report.end, End::ProtocolError(m) if m.contains("num 512")));
    // Memory was mapped: the application ran (its endpoints may have come too late: LinkDown).
    assert!(matches!(served.app, Some(Ok(()) | Err(Error::LinkDown))));
}

#[test]
fn socket_in_use_stale_socket_and_stop_before_connect() {
    let dir = std::env::temp_dir().join(format!("rpmsg-vhost-{}-sock", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    // A stale socket file (nobody listens) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let device = VhostUserDevice::bind(DeviceOptions::new(&path)).unwrap();
    // A live one is not.
    assert!(matches!(
        VhostUserDevice::bind(DeviceOptions::new(&path)),
        Err(VhostError::InUse { .. })
    ));
    // Something else is left alone.
    let file = dir.join("plain");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        VhostUserDevice::bind(DeviceOptions::new(&file)),
        Err(VhostError::NotASocket { .. })
    ));
    assert!(file.exists());
    let stop = device.stop_handle();
    stop.stop();
    let served = device.serve(|_| ()).unwrap();
    assert_eq!(served.report.end, End::Stopped);
    assert!(!served.report.connected);
    assert!(!path.exists());
}
