//! A device side that starts after our driver and links up only on a doorbell, as an
//! RPMsg-Lite remote does (`rpmsg_lite_remote_init` waits for the master's first kick of
//! vring 0): the driver's start-up kick went to nobody, so the driver must ring again when
//! the device appears. The device is played by hand in a thread: it binds its socket, writes
//! "ready", and waits for doorbells. No test asserts a duration; the wait is a hang guard.

use rpmsg_host::{
    DoorbellMode, GeometrySpec, HostLink, LayoutKind, Service, Session, SessionOptions, Side,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Longer than any loaded machine needs; only a broken run waits this long.
const GUARD: Duration = Duration::from_secs(120);

fn options(layout: LayoutKind) -> (SessionOptions, SessionOptions) {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "rpmsg-late{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = SessionOptions::shm_path(&name);
    let mut drv = SessionOptions::new(&path, Side::Driver);
    drv.socket_dir.clone_from(&dir);
    drv.geometry = GeometrySpec {
        layout: Some(layout),
        ..GeometrySpec::default()
    };
    drv.doorbell = Some(DoorbellMode::Socket);
    let mut dev = SessionOptions::new(&path, Side::Device);
    dev.socket_dir = dir;
    (drv, dev)
}

#[test]
fn item2_driver_rings_again_when_device_appears() {
    for layout in [LayoutKind::Lite, LayoutKind::RscTable] {
        let (drv_opts, dev_opts) = options(layout);
        let session = Session::create(&drv_opts).unwrap();
        let link: HostLink<'_, 256, 8> = session.link(session.config().unwrap()).unwrap();
        let vring0 = link.notify_ids()[0];
        std::thread::scope(|sc| {
            let service = Service::spawn(sc, &link);
            link.start().unwrap();
            // The start-up kick found no device.
            assert!(session.doorbell_stats().no_peer >= 1, "{layout}");
            // The device appears now and, like an RPMsg-Lite remote, waits for the kick.
            let device = Session::attach(&dev_opts).unwrap();
            let start = Instant::now();
            let kicked = loop {
                match device.socket().recv(Duration::from_millis(100)).unwrap() {
                    Some(Some(id)) if id == vring0 => break true,
                    _ if start.elapsed() > GUARD => break false,
                    _ => {}
                }
            };
            assert!(
                kicked,
                "{layout}: the driver never rang vring 0 ({vring0}) after the device appeared"
            );
            device.close();
            link.shutdown().unwrap();
            service.stop();
        });
        let dir = session.socket().own_path().parent().unwrap().to_path_buf();
        session.close();
        let _ = std::fs::remove_dir_all(dir);
    }
}
