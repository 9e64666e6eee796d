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

/// The minimal remote's build (device role, RPMsg-Lite layout) against an RPMsg-Lite master
/// played on the raw rings: link-up, a message each way, the buffers given back.
#[cfg(all(feature = "role-device", feature = "layout-lite"))]
#[test]
fn device_lite_build_talks_to_a_driver_played_by_hand() -> Result<(), Error> {
    use rpmsg::virtqueue::{DriverQueue, Vring};
    use rpmsg::wire::rpmsg::RpmsgRepr;
    use rpmsg::wire::vring::VRING_DESC_F_WRITE;
    use rpmsg::{EndpointConfig, Timeout};

    const HOST: u32 = 1024;
    const REMOTE: u32 = 30;
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();

    // The master (peer address = region offset): lays out both rings, posts its vring 0
    // buffers for the device to send in, keeps the vring 1 buffers to send from.
    let layout = lite.validate(region.len())?;
    let (o0, o1, _) = lite.offsets();
    let ring = |off| Vring::new(&region, off, layout).expect("ring in region");
    let mut to_device_free = DriverQueue::<2>::new(ring(o0)).expect("fits");
    let mut to_device_msgs = DriverQueue::<2>::new(ring(o1)).expect("fits");
    let count = usize::from(lite.buffer_count);
    for q in [&to_device_free, &to_device_msgs] {
        q.ring().zero(&region)?;
    }
    for id in 0..lite.buffer_count {
        let at = lite.buffer(usize::from(id));
        let len = lite.buffer_size;
        to_device_free
            .ring()
            .write_desc(&region, id, at as u64, len, VRING_DESC_F_WRITE)?;
        to_device_free.publish(&region, id)?;
    }

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

    // Master to device: a header and payload in a vring 1 buffer, made available.
    let id = 0;
    let at = lite.buffer(count + usize::from(id));
    let hdr = RpmsgRepr {
        src: HOST,
        dst: REMOTE,
        len: 5,
        flags: 0,
    };
    region.copy_in(at, &hdr.to_bytes())?;
    region.copy_in(at + 16, b"hello")?;
    to_device_msgs
        .ring()
        .write_desc(&region, id, at as u64, 16 + 5, 0)?;
    to_device_msgs.publish(&region, id)?;
    device.poll()?;
    let mut buf = [0u8; 496];
    let (n, src) = ep.recv(&mut buf, Timeout::NoWait)?;
    assert_eq!((&buf[..n], src), (&b"hello"[..], HOST));
    assert_eq!(to_device_msgs.pop_used(&region)?.map(|(id, _)| id), Some(0));

    // Device to master: in one of the posted vring 0 buffers, returned on the used ring.
    ep.send_to(HOST, b"world")?;
    let (id, len) = to_device_free.pop_used(&region)?.expect("the device sent");
    let at = lite.buffer(usize::from(id));
    let mut hb = [0u8; 16];
    region.copy_out(at, &mut hb)?;
    let hdr = RpmsgRepr::from_bytes(&hb);
    let mut payload = [0u8; 5];
    region.copy_out(at + 16, &mut payload)?;
    assert_eq!((hdr.src, hdr.dst, hdr.len), (REMOTE, HOST, 5));
    assert_eq!(&payload, b"world");
    assert!(len >= 16 + 5, "used.len {len} covers header and payload");
    Ok(())
}
