//! Bad input to our API gets a typed error, never a panic; several links live side by side.

use rpmsg::testing::{Loopback, TestEnv, TestLink, TestMemory, pair};
use rpmsg::{Config, EndpointConfig, Error, Link, LiteConfig, RPMSG_ADDR_ANY, Role, Timeout};

#[test]
fn endpoint_address_rules() {
    pair(|dev_ep, drv_ep| {
        let _ = (dev_ep, drv_ep);
        Ok(())
    });
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let r = mem.region();
    let link: TestLink<'_, 2> = Link::new(
        r,
        Loopback::new(r),
        TestEnv::new(),
        Config::lite(Role::Driver, lite),
    )
    .unwrap();
    let a = link
        .create_endpoint(EndpointConfig::new().addr(30))
        .unwrap();
    assert!(matches!(
        link.create_endpoint(EndpointConfig::new().addr(30)),
        Err(Error::AddressInUse(30))
    ));
    assert!(matches!(
        link.create_endpoint(EndpointConfig::new().addr(53)),
        Err(Error::AddressInUse(53))
    ));
    assert!(matches!(
        link.create_endpoint(EndpointConfig::new().addr(RPMSG_ADDR_ANY)),
        Err(Error::InvalidAddress(RPMSG_ADDR_ANY))
    ));
    // Dynamic addresses: lowest free from 1024 up.
    let d1 = link.create_endpoint(EndpointConfig::new()).unwrap();
    let d2 = link.create_endpoint(EndpointConfig::new()).unwrap();
    assert_eq!((d1.addr(), d2.addr()), (1024, 1025));
    d1.destroy().unwrap();
    assert_eq!(d1.destroy(), Err(Error::EndpointDestroyed));
    assert_eq!(d1.send_to(1, b"x"), Err(Error::EndpointDestroyed));
    assert_eq!(
        link.create_endpoint(EndpointConfig::new()).unwrap().addr(),
        1024
    );
    assert_eq!(link.endpoint(30).unwrap().addr(), a.addr());
    assert!(matches!(link.endpoint(31), Err(Error::UnknownEndpoint(31))));
    // A stale handle to a reused slot stays dead.
    let e = link
        .create_endpoint(EndpointConfig::new().addr(40))
        .unwrap();
    e.destroy().unwrap();
    let _reuse = link
        .create_endpoint(EndpointConfig::new().addr(41))
        .unwrap();
    assert_eq!(e.destroy(), Err(Error::EndpointDestroyed));
    // Names: at most 31 bytes.
    assert_eq!(
        EndpointConfig::new().name(&"n".repeat(32)).err(),
        Some(Error::InvalidName { len: 32 })
    );
    assert!(EndpointConfig::new().name(&"n".repeat(31)).is_ok());
    // The table is full.
    let mut n = 0;
    while link.create_endpoint(EndpointConfig::new()).is_ok() {
        n += 1;
        assert!(n < 100);
    }
    assert!(matches!(
        link.create_endpoint(EndpointConfig::new()),
        Err(Error::TooManyEndpoints { capacity: 8 })
    ));
}

#[test]
fn send_errors() {
    pair(|dev_ep, drv_ep| {
        assert_eq!(
            dev_ep.send_to(1024, &[0; 497]),
            Err(Error::PayloadTooLarge { len: 497, max: 496 })
        );
        assert_eq!(
            dev_ep.send_to(RPMSG_ADDR_ANY, b"x"),
            Err(Error::InvalidAddress(RPMSG_ADDR_ANY))
        );
        assert_eq!(
            dev_ep.send_offchannel(RPMSG_ADDR_ANY, 5, b"x"),
            Err(Error::InvalidAddress(RPMSG_ADDR_ANY))
        );
        // drv_ep has no destination yet.
        assert_eq!(
            drv_ep.send(b"x"),
            Err(Error::InvalidAddress(RPMSG_ADDR_ANY))
        );
        // Two buffers each way: the third try_send finds none, a timed send times out.
        dev_ep.try_send(b"1")?;
        dev_ep.try_send(b"2")?;
        assert_eq!(dev_ep.try_send(b"3"), Err(Error::NoBuffer));
        let t = Timeout::After(std::time::Duration::from_millis(20));
        assert_eq!(dev_ep.send_to_timeout(1024, b"3", t), Err(Error::Timeout));
        assert!(matches!(
            dev_ep.alloc_tx(Timeout::NoWait),
            Err(Error::NoBuffer)
        ));
        // Receiving frees them; a too-small receive buffer keeps the message queued.
        let mut small = [0u8; 0];
        assert_eq!(
            drv_ep.recv(&mut small, Timeout::NoWait),
            Err(Error::BufferTooSmall { need: 1, have: 0 })
        );
        let mut buf = [0u8; 4];
        assert_eq!(drv_ep.recv(&mut buf, Timeout::NoWait)?, (1, 30));
        assert_eq!(drv_ep.recv(&mut buf, Timeout::NoWait)?, (1, 30));
        assert_eq!(drv_ep.recv(&mut buf, Timeout::NoWait), Err(Error::NoBuffer));
        // The learned destination: drv_ep now answers dev_ep by default.
        assert_eq!(drv_ep.dst()?, Some(30));
        // A TxBuffer refuses writes past its capacity and gives itself back on a failed send.
        let mut tx = dev_ep.alloc_tx(Timeout::Forever)?;
        assert_eq!(tx.capacity(), 496);
        assert!(matches!(
            tx.write(490, &[0; 7]),
            Err(Error::PayloadTooLarge { len: 497, max: 496 })
        ));
        let err = tx.send(497).unwrap_err();
        assert_eq!(err.error, Error::PayloadTooLarge { len: 497, max: 496 });
        let tx = err.into_inner();
        tx.send_to(1024, 0).map_err(|e| e.error)?;
        let rx = drv_ep.recv_zero_copy(Timeout::Forever)?;
        assert!(rx.is_empty());
        Ok(())
    });
}

#[test]
fn held_buffers_belong_to_their_link() {
    // Two links side by side, each pair over its own region.
    let lite = LiteConfig::DEFAULT;
    let mut m1 = TestMemory::new(lite.region_len());
    let mut m2 = TestMemory::new(lite.region_len());
    let (r1, r2) = (m1.region(), m2.region());
    let mk = |r, role| -> TestLink<'_, 2> {
        Link::new(
            r,
            Loopback::new(r),
            TestEnv::new(),
            Config::lite(role, lite),
        )
        .unwrap()
    };
    let (drv1, dev1, drv2, dev2) = (
        mk(r1, Role::Driver),
        mk(r1, Role::Device),
        mk(r2, Role::Driver),
        mk(r2, Role::Device),
    );
    for l in [&dev1, &drv1, &dev2, &drv2] {
        l.start().unwrap();
    }
    dev1.wait_link_up(Timeout::Forever).unwrap();
    dev2.wait_link_up(Timeout::Forever).unwrap();
    let e1 = dev1
        .create_endpoint(EndpointConfig::new().addr(30))
        .unwrap();
    let e2 = dev2
        .create_endpoint(EndpointConfig::new().addr(30))
        .unwrap();
    let h1 = drv1
        .create_endpoint(EndpointConfig::new().addr(1024))
        .unwrap();
    let h2 = drv2
        .create_endpoint(EndpointConfig::new().addr(1024))
        .unwrap();
    h1.send_to(30, b"one").unwrap();
    h2.send_to(30, b"two").unwrap();
    let held = e1.recv_zero_copy(Timeout::Forever).unwrap().into_held();
    let mut buf = [0u8; 8];
    assert_eq!(e2.recv(&mut buf, Timeout::Forever).unwrap(), (3, 1024));
    assert_eq!(&buf[..3], b"two");
    assert_eq!(dev1.stats().held, 1);
    let err = dev2.release_held(held).unwrap_err();
    assert_eq!(err.error, Error::ForeignBuffer);
    assert_eq!(dev1.stats().held, 1, "still held by link 1");
    let rx = dev1.resume_held(err.into_inner()).unwrap().unwrap();
    rx.read(0, &mut buf[..3]).unwrap();
    assert_eq!(&buf[..3], b"one");
    drop(rx);
    assert_eq!(dev1.stats().held, 0);
}

#[test]
fn binds_by_name_to_a_service_announced_before_the_endpoint_existed() {
    let lite = LiteConfig::new(4, 496, 16);
    let mut mem = TestMemory::new(lite.region_len());
    let r = mem.region();
    let drv: TestLink<'_, 4> = Link::new(
        r,
        Loopback::new(r),
        TestEnv::new(),
        Config::lite(Role::Driver, lite),
    )
    .unwrap();
    let dev: TestLink<'_, 4> = Link::new(
        r,
        Loopback::new(r),
        TestEnv::new(),
        Config::lite(Role::Device, lite),
    )
    .unwrap();
    dev.start().unwrap();
    drv.start().unwrap();
    dev.wait_link_up(Timeout::Forever).unwrap();
    let svc = drv
        .create_endpoint(
            EndpointConfig::new()
                .addr(0x500)
                .name("svc")
                .unwrap()
                .announce(true),
        )
        .unwrap();
    // The device takes the announcement while nothing of its own is called "svc" yet.
    dev.poll().unwrap();
    assert_eq!(dev.stats().ns_received, 1);
    let late = dev
        .create_endpoint(EndpointConfig::new().name("svc").unwrap().queue(2))
        .unwrap();
    assert_eq!(
        late.dst().unwrap(),
        Some(0x500),
        "bound to the service announced earlier"
    );
    late.send(b"hi").unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(
        svc.recv(&mut buf, Timeout::Forever).unwrap(),
        (2, late.addr())
    );
    // A DESTROY unbinds it, and the service is forgotten for endpoints created afterwards.
    svc.destroy().unwrap();
    dev.poll().unwrap();
    assert_eq!(late.dst().unwrap(), None);
    let later = dev
        .create_endpoint(EndpointConfig::new().name("svc").unwrap())
        .unwrap();
    assert_eq!(later.dst().unwrap(), None);
}

#[test]
fn ns_handler_sees_bound_announcements_through_on_bound() {
    use rpmsg::{Announcement, NsHandler, NsKind};
    use std::sync::Mutex;

    /// `(name, addr, kind, Some(local) when an endpoint took it)`.
    type Seen = (String, u32, NsKind, Option<u32>);
    /// Records every call.
    #[derive(Default)]
    struct Log(Mutex<Vec<Seen>>);
    impl NsHandler for Log {
        fn on_announcement(&self, a: &Announcement) {
            let name = a.name.as_str().unwrap_or("?").to_owned();
            self.0.lock().unwrap().push((name, a.addr, a.kind, None));
        }
        fn on_bound(&self, a: &Announcement, local: u32) {
            let name = a.name.as_str().unwrap_or("?").to_owned();
            self.0
                .lock()
                .unwrap()
                .push((name, a.addr, a.kind, Some(local)));
        }
    }

    let lite = LiteConfig::new(4, 496, 16);
    let mut mem = TestMemory::new(lite.region_len());
    let r = mem.region();
    let new = |role| -> TestLink<'_, 4> {
        Link::new(
            r,
            Loopback::new(r),
            TestEnv::new(),
            Config::lite(role, lite),
        )
        .unwrap()
    };
    let (drv, dev) = (new(Role::Driver), new(Role::Device));
    let log = Log::default();
    dev.set_ns_handler(&log).unwrap();
    let waiting = dev
        .create_endpoint(EndpointConfig::new().addr(0x41).name("svc").unwrap())
        .unwrap();
    dev.start().unwrap();
    drv.start().unwrap();
    dev.wait_link_up(Timeout::Forever).unwrap();
    let announce = |addr, name| {
        drv.create_endpoint(
            EndpointConfig::new()
                .addr(addr)
                .name(name)
                .unwrap()
                .announce(true),
        )
        .unwrap()
    };
    let svc = announce(0x500, "svc");
    let other = announce(0x501, "other");
    while dev.poll().unwrap() > 0 {}
    assert_eq!(waiting.dst().unwrap(), Some(0x500));
    svc.destroy().unwrap();
    other.destroy().unwrap();
    while dev.poll().unwrap() > 0 {}
    assert_eq!(waiting.dst().unwrap(), None);
    assert_eq!(
        *log.0.lock().unwrap(),
        [
            ("svc".into(), 0x500, NsKind::Create, Some(0x41)),
            ("other".into(), 0x501, NsKind::Create, None),
            ("svc".into(), 0x500, NsKind::Destroy, Some(0x41)),
            ("other".into(), 0x501, NsKind::Destroy, None),
        ]
    );
}
