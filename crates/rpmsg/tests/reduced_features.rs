//! Roles and layouts chosen at build time (the `role-driver`, `role-device`, `layout-lite` and
//! `layout-rsc-table` features).
//!
//! Valid under any combination of them: a configuration whose role and layout are compiled in
//! builds, any other gets `Error::Config` naming the feature to enable. `cargo test` runs it with
//! everything; CI (.ci/run) also runs it as the minimal remote is built,
//!
//! ```text
//! cargo test -p rpmsg --no-default-features --features test-utils,role-device,layout-lite \
//!     --test reduced_features
//! ```
//!
//! where the device link also talks to a driver played by hand on the raw rings (the driver role
//! of this crate is then not there to play it).

use rpmsg::testing::{Loopback, TestEnv, TestLink, TestMemory};
use rpmsg::{Config, Error, Link, LiteConfig, Role, RscConfig};

/// Whether the crate under test was built with `feature`.
fn enabled(feature: &str) -> bool {
    match feature {
        "role-driver" => cfg!(feature = "role-driver"),
        "role-device" => cfg!(feature = "role-device"),
        "layout-lite" => cfg!(feature = "layout-lite"),
        "layout-rsc-table" => cfg!(feature = "layout-rsc-table"),
        other => panic!("not a role or layout feature: {other}"),
    }
}

#[test]
fn a_role_or_layout_compiled_out_is_a_typed_config_error() {
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    // A resource table that fits the region: `Link::new` checks only its bounds.
    let rsc = RscConfig::new(0, 256);
    for (role, role_feature) in [(Role::Driver, "role-driver"), (Role::Device, "role-device")] {
        for (cfg, layout_feature) in [
            (Config::lite(role, lite), "layout-lite"),
            (Config::rsc_table(role, rsc), "layout-rsc-table"),
        ] {
            let link: Result<TestLink<'_, 2>, Error> =
                Link::new(region, Loopback::new(region), TestEnv::new(), cfg);
            // The role is checked first, so a build without either names the role.
            let missing = [role_feature, layout_feature]
                .into_iter()
                .find(|f| !enabled(f));
            match (missing, link) {
                (None, Ok(_)) => {}
                (Some(feature), Err(Error::Config(why))) => assert!(
                    why.contains(&format!("`{feature}`")),
                    "{role:?} {layout_feature}: {why:?} should name the `{feature}` feature"
                ),
                (missing, other) => panic!(
                    "{role:?} {layout_feature}: missing feature {missing:?}, got {:?}",
                    other.map(|_| "a link")
                ),
            }
        }
    }
}

/// An RPMsg-Lite master played on the raw rings (peer address = region offset): lays out both
/// rings, posts its vring 0 buffers for the device to send in, keeps the vring 1 buffers to send
/// from.
#[cfg(all(feature = "role-device", feature = "layout-lite"))]
struct HandDriver<'r> {
    region: rpmsg::SharedRegion<'r>,
    lite: LiteConfig,
    to_device_free: rpmsg::virtqueue::DriverQueue<2>,
    to_device_msgs: rpmsg::virtqueue::DriverQueue<2>,
}

#[cfg(all(feature = "role-device", feature = "layout-lite"))]
impl<'r> HandDriver<'r> {
    fn start(region: rpmsg::SharedRegion<'r>, lite: LiteConfig) -> Result<Self, Error> {
        use rpmsg::virtqueue::{DriverQueue, Vring};
        use rpmsg::wire::vring::VRING_DESC_F_WRITE;
        let layout = lite.validate(region.len())?;
        let (o0, o1, _) = lite.offsets();
        let ring = |off| Vring::new(&region, off, layout).expect("ring in region");
        let mut to_device_free = DriverQueue::<2>::new(ring(o0)).expect("fits");
        let to_device_msgs = DriverQueue::<2>::new(ring(o1)).expect("fits");
        for q in [&to_device_free, &to_device_msgs] {
            q.ring().zero(&region)?;
        }
        for id in 0..lite.buffer_count {
            let at = lite.buffer(usize::from(id));
            to_device_free.ring().write_desc(
                &region,
                id,
                at as u64,
                lite.buffer_size,
                VRING_DESC_F_WRITE,
            )?;
            to_device_free.publish(&region, id)?;
        }
        Ok(Self {
            region,
            lite,
            to_device_free,
            to_device_msgs,
        })
    }

    /// Master to device: a header and payload in vring 1 buffer `id`, made available.
    fn send(&mut self, id: u16, src: u32, dst: u32, payload: &[u8]) -> Result<(), Error> {
        use rpmsg::wire::rpmsg::RpmsgRepr;
        let at = self
            .lite
            .buffer(usize::from(self.lite.buffer_count) + usize::from(id));
        let hdr = RpmsgRepr {
            src,
            dst,
            len: payload.len() as u16,
            flags: 0,
        };
        self.region.copy_in(at, &hdr.to_bytes())?;
        self.region.copy_in(at + 16, payload)?;
        let len = (16 + payload.len()) as u32;
        self.to_device_msgs
            .ring()
            .write_desc(&self.region, id, at as u64, len, 0)?;
        self.to_device_msgs.publish(&self.region, id)?;
        Ok(())
    }

    /// The vring 1 buffer the device gave back, if any.
    fn returned(&mut self) -> Result<Option<u16>, Error> {
        Ok(self
            .to_device_msgs
            .pop_used(&self.region)?
            .map(|(id, _)| id))
    }

    /// Device to master: the next message in a posted vring 0 buffer, as (src, dst, payload).
    fn recv(&mut self) -> Result<Option<(u32, u32, Vec<u8>)>, Error> {
        use rpmsg::wire::rpmsg::RpmsgRepr;
        let Some((id, len)) = self.to_device_free.pop_used(&self.region)? else {
            return Ok(None);
        };
        let at = self.lite.buffer(usize::from(id));
        let mut hb = [0u8; 16];
        self.region.copy_out(at, &mut hb)?;
        let hdr = RpmsgRepr::from_bytes(&hb);
        let mut payload = vec![0u8; usize::from(hdr.len)];
        self.region.copy_out(at + 16, &mut payload)?;
        assert!(
            len as usize >= 16 + payload.len(),
            "used.len {len} covers header and payload"
        );
        Ok(Some((hdr.src, hdr.dst, payload)))
    }
}

/// The minimal remote's build (device role, RPMsg-Lite layout) against an RPMsg-Lite master
/// played on the raw rings: link-up, a message each way, the buffers given back.
#[cfg(all(feature = "role-device", feature = "layout-lite"))]
#[test]
fn device_lite_build_talks_to_a_driver_played_by_hand() -> Result<(), Error> {
    use rpmsg::{EndpointConfig, Timeout};

    const HOST: u32 = 1024;
    const REMOTE: u32 = 30;
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let mut master = HandDriver::start(region, lite)?;

    let device: TestLink<'_, 2> = Link::new(
        region,
        Loopback::new(region),
        TestEnv::new(),
        Config::lite(Role::Device, lite),
    )?;
    device.start()?;
    // The posted vring 0 buffers are RPMsg-Lite's link-up signal.
    device.wait_link_up(Timeout::NoWait)?;
    let ep = device.create_endpoint(EndpointConfig::new().addr(REMOTE).queue(2))?;

    master.send(0, HOST, REMOTE, b"hello")?;
    device.poll()?;
    let mut buf = [0u8; 496];
    let (n, src) = ep.recv(&mut buf, Timeout::NoWait)?;
    assert_eq!((&buf[..n], src), (&b"hello"[..], HOST));
    assert_eq!(master.returned()?, Some(0));

    ep.send_to(HOST, b"world")?;
    assert_eq!(master.recv()?, Some((REMOTE, HOST, b"world".to_vec())));
    Ok(())
}

/// The compact remote, which exists only in builds with the device role and the RPMsg-Lite
/// layout, against the same hand-played master: link-up, an echo from the callback, a send,
/// the buffers given back, nothing counted as dropped.
#[cfg(all(feature = "role-device", feature = "layout-lite"))]
#[test]
fn compact_remote_talks_to_a_driver_played_by_hand() -> Result<(), Error> {
    use rpmsg::compact::{Message, Remote, State};

    const HOST: u32 = 1024;
    const REMOTE: u32 = 30;
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let mut state = State::new();
    let mut remote: Remote<'_, _> = Remote::new(region, Loopback::new(region), lite, &mut state)?;
    assert_eq!(remote.poll()?, 0);
    assert!(!remote.is_up(), "up before the master laid out the rings");
    let mut master = HandDriver::start(region, lite)?;
    remote.poll()?;
    assert!(remote.is_up());

    let echo = |mut msg: Message<'_>| {
        let mut buf = [0u8; 496];
        let n = msg.copy_to(&mut buf).expect("fits");
        msg.reply(&buf[..n]).expect("a free buffer");
    };
    assert_eq!(remote.create_endpoint(REMOTE, &echo)?, REMOTE);
    master.send(0, HOST, REMOTE, b"hello")?;
    assert_eq!(remote.poll()?, 1);
    assert_eq!(master.returned()?, Some(0));
    assert_eq!(master.recv()?, Some((REMOTE, HOST, b"hello".to_vec())));

    remote.try_send(REMOTE, HOST, b"world")?;
    assert_eq!(master.recv()?, Some((REMOTE, HOST, b"world".to_vec())));
    let s = remote.stats();
    assert_eq!((s.rx_messages, s.tx_messages), (1, 2));
    assert_eq!(
        (s.rx_unknown_dst, s.rx_malformed, s.peer_violations),
        (0, 0, 0)
    );
    Ok(())
}
