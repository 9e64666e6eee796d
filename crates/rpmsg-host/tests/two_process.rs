//! Two real processes over one shared-memory file, through the library: this test binary is
//! the driver, and re-executes itself as the device (the `#[ignore]`d `device_process` entry,
//! which the other tests start with `--ignored --exact`).
//!
//! Also checked here, with a counting global allocator: a busy-poll round trip allocates
//! nothing. No test asserts a duration; timeouts only keep a broken run from hanging.

use rpmsg::{EndpointConfig, Timeout};
use rpmsg_host::doorbell::encode;
use rpmsg_host::{
    DoorbellMode, GeometrySpec, HostError, HostLink, LayoutKind, PeerStatus, Service, Session,
    SessionOptions, Side,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Counts allocations per thread (other tests run in parallel threads of this process).
struct Counting;

std::thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn allocations() -> u64 {
    ALLOCATIONS.with(std::cell::Cell::get)
}

fn count_one() {
    // `try_with`: a thread being torn down has no thread-locals left.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call to `System` unchanged; the counter is only a side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ENV_SHM: &str = "RPMSG_HOST_TEST_SHM";
const ENV_SOCK_DIR: &str = "RPMSG_HOST_TEST_SOCK_DIR";
const SERVICE: &str = "test-echo";
/// Waits that must succeed: a hang guard of minutes, never the thing measured (item 14).
const T: Duration = Duration::from_secs(120);

struct Scratch {
    shm: PathBuf,
    sock_dir: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "rpmsg-h{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let sock_dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&sock_dir).unwrap();
        Self {
            shm: SessionOptions::shm_path(&name),
            sock_dir,
        }
    }

    fn driver(&self, layout: LayoutKind, doorbell: DoorbellMode) -> SessionOptions {
        let mut o = SessionOptions::new(&self.shm, Side::Driver);
        o.socket_dir.clone_from(&self.sock_dir);
        o.geometry = GeometrySpec {
            layout: Some(layout),
            buffers: Some(8),
            ..GeometrySpec::default()
        };
        o.doorbell = Some(doorbell);
        o
    }

    /// Starts this test binary as the device process.
    fn spawn_device(&self) -> Child {
        Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "device_process", "--nocapture"])
            .env(ENV_SHM, &self.shm)
            .env(ENV_SOCK_DIR, &self.sock_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.sock_dir);
        let _ = std::fs::remove_file(&self.shm);
    }
}

fn wait_child(mut c: Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = c.kill();
            panic!("the device process hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The device process: attaches, announces an echo service, echoes until the driver leaves.
#[test]
#[ignore = "the device process of the other tests; they start it themselves"]
fn device_process() {
    let (Ok(shm), Ok(dir)) = (std::env::var(ENV_SHM), std::env::var(ENV_SOCK_DIR)) else {
        panic!("run by the other tests of this file, with {ENV_SHM} and {ENV_SOCK_DIR} set");
    };
    let mut opts = SessionOptions::new(shm, Side::Device);
    opts.socket_dir = dir.into();
    opts.wait_for_driver = T;
    let session = Session::attach(&opts).unwrap();
    let link: HostLink<'_, 256, 8> = session.link(session.config().unwrap()).unwrap();
    let r = std::thread::scope(|s| -> Result<(), HostError> {
        let _service = Service::spawn(s, &link);
        let ep = link.create_endpoint(EndpointConfig::new().name(SERVICE)?.announce(true))?;
        link.start()?;
        link.wait_link_up(Timeout::After(T))?;
        let mut buf = [0u8; 496];
        loop {
            match ep.recv(&mut buf, Timeout::Forever) {
                Ok((n, src)) => ep.send_to(src, &buf[..n])?,
                // The driver left (reset the link, or closed and our service shut it down).
                Err(rpmsg::Error::LinkDown) => return Ok(()),
                Err(e) => return Err(session.explain(e, T)),
            }
        }
    });
    session.close();
    r.unwrap();
}

/// Round trips from the driver side against the device process; returns the session's end.
fn exchange(layout: LayoutKind, doorbell: DoorbellMode, spam: bool) {
    let s = Scratch::new();
    let session = Session::create(&s.driver(layout, doorbell)).unwrap();
    let device = s.spawn_device();
    let link: HostLink<'_, 256, 8> = session.link(session.config().unwrap()).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let service = Service::spawn(sc, &link);
        // Spurious and malformed doorbells at both sockets, all along: they must not matter.
        if spam {
            sc.spawn(|| {
                let raw = UnixDatagram::unbound().unwrap();
                let paths = [
                    session.socket().own_path().to_path_buf(),
                    session.socket().peer_path().to_path_buf(),
                ];
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    for p in &paths {
                        let _ = raw.send_to(&encode(i % 7), p);
                        let _ = raw.send_to(&[1, 2, 3], p);
                    }
                    i = i.wrapping_add(1);
                    std::thread::sleep(Duration::from_micros(200));
                }
            });
        }
        let ep = link
            .create_endpoint(EndpointConfig::new().name(SERVICE).unwrap())
            .unwrap();
        link.start().unwrap();
        session.wait_for_peer(T).unwrap();
        let start = Instant::now();
        while ep.dst().unwrap().is_none() {
            assert!(start.elapsed() < T, "the device never announced {SERVICE}");
            link.poll().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut back = [0u8; 496];
        for i in 0..300u32 {
            let len = 1 + (i as usize * 37) % 496;
            let msg: Vec<u8> = (0..len).map(|k| (k as u32 ^ i) as u8).collect();
            ep.send(&msg).unwrap();
            let (n, _) = ep.recv(&mut back, Timeout::After(T)).unwrap();
            assert_eq!(&back[..n], &msg[..], "round trip {i}");
        }
        stop.store(true, Ordering::Relaxed);
        link.shutdown().unwrap();
        service.stop();
    });
    if spam {
        assert!(session.doorbell_stats().malformed > 0);
    }
    session.close();
    assert!(wait_child(device).success(), "the device process failed");
}

#[test]
fn every_layout_and_doorbell_across_two_processes() {
    for layout in [LayoutKind::Lite, LayoutKind::RscTable] {
        for doorbell in [
            DoorbellMode::Socket,
            DoorbellMode::Futex,
            DoorbellMode::BusyPoll,
        ] {
            exchange(layout, doorbell, false);
        }
    }
}

#[test]
fn spurious_and_malformed_doorbells_are_harmless() {
    exchange(LayoutKind::Lite, DoorbellMode::Socket, true);
    exchange(LayoutKind::RscTable, DoorbellMode::Futex, true);
}

#[test]
fn a_killed_peer_fails_blocked_calls_with_peer_died() {
    for doorbell in [DoorbellMode::Socket, DoorbellMode::BusyPoll] {
        let s = Scratch::new();
        let session = Session::create(&s.driver(LayoutKind::Lite, doorbell)).unwrap();
        let mut device = s.spawn_device();
        let link: HostLink<'_, 256, 8> = session.link(session.config().unwrap()).unwrap();
        std::thread::scope(|sc| {
            let service = Service::spawn(sc, &link);
            let ep = link
                .create_endpoint(EndpointConfig::new().name(SERVICE).unwrap())
                .unwrap();
            link.start().unwrap();
            session.wait_for_peer(T).unwrap();
            while ep.dst().unwrap().is_none() {
                link.poll().unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            device.kill().unwrap();
            device.wait().unwrap();
            // Nothing will come: the service sees the peer die and ends the wait.
            let err = ep
                .recv(&mut [0u8; 16], Timeout::Forever)
                .map_err(|e| session.explain(e, T))
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    HostError::PeerDied {
                        side: Side::Device,
                        pid: Some(_)
                    }
                ),
                "{err}"
            );
            assert!(err.is_peer_failure());
            assert!(matches!(session.peer(), PeerStatus::Died { .. }));
            service.stop();
        });
        session.close();
    }
}

#[test]
fn busy_poll_round_trips_do_not_allocate() {
    let s = Scratch::new();
    let session = Session::create(&s.driver(LayoutKind::Lite, DoorbellMode::BusyPoll)).unwrap();
    let device = s.spawn_device();
    let link: HostLink<'_, 256, 8> = session.link(session.config().unwrap()).unwrap();
    std::thread::scope(|sc| {
        let service = Service::spawn(sc, &link);
        let ep = link
            .create_endpoint(EndpointConfig::new().name(SERVICE).unwrap())
            .unwrap();
        link.start().unwrap();
        session.wait_for_peer(T).unwrap();
        while ep.dst().unwrap().is_none() {
            link.poll().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        let dst = ep.dst().unwrap().unwrap();
        let msg = [0x42u8; 16];
        let mut back = [0u8; 496];
        let t = Timeout::After(T);
        // Warm up, then count this thread's allocations: the message path.
        for _ in 0..100 {
            ep.send_to_timeout(dst, &msg, t).unwrap();
            ep.recv(&mut back, t).unwrap();
        }
        let before = allocations();
        for _ in 0..5000 {
            ep.send_to_timeout(dst, &msg, t).unwrap();
            let mut tx = ep.alloc_tx(t).unwrap();
            tx.write(0, &msg).unwrap();
            tx.send_to(dst, msg.len()).unwrap();
            ep.recv(&mut back, t).unwrap();
            let rx = ep.recv_zero_copy(t).unwrap();
            assert_eq!(rx.len(), msg.len());
        }
        let after = allocations();
        assert_eq!(
            after - before,
            0,
            "allocations on the busy-poll message path"
        );
        // The counter does see allocations of this thread.
        drop(std::hint::black_box(Vec::<u8>::with_capacity(64)));
        assert_eq!(allocations(), after + 1);
        link.shutdown().unwrap();
        service.stop();
    });
    session.close();
    assert!(wait_child(device).success());
}
