//! The host block reader: `SharedFile::open` on a file whose host block is arbitrary bytes.
//!
//! Input: byte 0 picks the region's length (0 to 63 pages, and whether the file ends mid-page),
//! the rest is the host block (zero-padded to a page). The file is an anonymous file opened
//! through /proc/self/fd, so no disk is touched.
//!
//! Invariants: no panic; a file that opens has a valid geometry whose layout fits its region,
//! a region that ends where the host block starts, and a `Link` of either role can be built on
//! it without a configuration error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rpmsg::testing::TestEnv;
use rpmsg::{Link, Role};
use rpmsg_host::{SharedFile, geometry::Geometry as HostGeometry};
use std::io::Write;
use std::os::fd::AsRawFd;

const PAGE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, block)) = data.split_first() else {
        return;
    };
    let pages = usize::from(sel & 63);
    let ragged = sel & 64 != 0;
    let mut file = vec![0u8; pages * PAGE + PAGE];
    let n = block.len().min(PAGE);
    file[pages * PAGE..pages * PAGE + n].copy_from_slice(&block[..n]);
    if ragged {
        file.truncate(file.len() - 100);
    }
    let fd = rustix::fs::memfd_create("fuzz-host-block", rustix::fs::MemfdFlags::CLOEXEC)
        .expect("memfd");
    let mut f = std::fs::File::from(fd);
    f.write_all(&file).expect("write the memfd");
    let path = format!("/proc/self/fd/{}", f.as_raw_fd());
    let Ok(shared) = SharedFile::open(std::path::Path::new(&path)) else {
        return;
    };
    let geo: HostGeometry = shared.geometry();
    geo.validate().expect("an opened file's geometry is valid");
    let region = shared.region();
    assert_eq!(region.len(), shared.region_len());
    assert!(
        shared.region_len() + PAGE <= shared.len(),
        "host block past the end"
    );
    let need = geo.region_len().expect("valid geometry has a length");
    assert!(
        need <= region.len(),
        "layout of {need} bytes in a region of {}",
        region.len()
    );
    for role in [Role::Driver, Role::Device] {
        let cfg = geo.config(role).expect("config of a valid geometry");
        let map = rpmsg::testing::Loopback::new(region);
        let link: Result<Link<'_, _, _, 256, 8>, _> = Link::new(region, map, TestEnv::new(), cfg);
        if let Err(e) = link {
            panic!("a file that opens must take a {role:?} link: {e:?}");
        }
    }
});
