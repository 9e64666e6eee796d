// An `Endpoint` borrows its `Link`: it cannot be kept past the end of the link's scope.
use rpmsg::testing::{Loopback, TestEnv, TestLink, TestMemory};
use rpmsg::{Config, EndpointConfig, Link, LiteConfig, Role};

fn main() {
    let lite = LiteConfig::DEFAULT;
    let mut mem = TestMemory::new(lite.region_len());
    let region = mem.region();
    let ep;
    {
        let link: TestLink<'_, 2> = Link::new(
            region,
            Loopback::new(region),
            TestEnv::new(),
            Config::lite(Role::Driver, lite),
        )
        .unwrap();
        ep = link.create_endpoint(EndpointConfig::new()).unwrap();
    }
    let _ = ep.addr();
}
