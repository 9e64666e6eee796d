// An `RxBuffer` borrows its `Link`: the link cannot be dropped while a buffer is held.
use rpmsg::testing::{Loopback, TestEnv, TestLink, TestMemory};
use rpmsg::{Config, EndpointConfig, Link, LiteConfig, Role, Timeout};

fn main() {
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let link: TestLink<'_, 2> = Link::new(
        region,
        Loopback::new(region),
        TestEnv::new(),
        Config::lite(Role::Driver, lite),
    )
    .unwrap();
    let ep = link.create_endpoint(EndpointConfig::new()).unwrap();
    let msg = ep.recv_zero_copy(Timeout::NoWait).unwrap();
    drop(link);
    let _ = msg.len();
}
