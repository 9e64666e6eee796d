//! Everything in `chardev` that can be checked without a kernel rpmsg stack: the uapi numbers
//! and layout, names and addresses, sysfs parsing on a fake tree shaped like Linux 6.1's,
//! the error messages, and the message path over `SOCK_SEQPACKET` sockets and FIFOs (one
//! message per read and write, as on `/dev/rpmsgN`).

use super::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::sync::atomic::{AtomicU32, Ordering};

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("rpmsg-chardev-{}-{n}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write(p: &Path, s: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, s).unwrap();
}

/// Symlink `link` -> `target` (absolute: sysfs's are relative, which reads the same).
fn link(target: &Path, link: &Path) {
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    symlink(target, link).unwrap();
}

/// A sysfs tree as User-Mode Linux 6.1 shows it with `virtio_rpmsg_bus`, after the device
/// announced `rpmsg-raw` at 0xd00 and `rpmsg-tty` at 0xd01, and one endpoint was made through
/// the control device (name "my-ept", src any, dst 30). Returns (sysfs, dev dir).
fn fake_61(root: &Path) -> Sysfs {
    let sys = root.join("sys");
    let dev = root.join("dev");
    fs::create_dir_all(&dev).unwrap();
    let virtio = sys.join("devices/platform/virtio-uml.0/virtio0");
    let drivers = sys.join("bus/rpmsg/drivers");
    for d in ["rpmsg_chrdev", "rpmsg_ctrl", "rpmsg_ns", "rpmsg_tty"] {
        fs::create_dir_all(drivers.join(d)).unwrap();
    }
    let channel = |id: &str, name: &str, src: &str, dst: &str, driver: Option<&str>| {
        let d = virtio.join(id);
        write(&d.join("name"), &format!("{name}\n"));
        write(&d.join("src"), &format!("{src}\n"));
        write(&d.join("dst"), &format!("{dst}\n"));
        write(&d.join("announce"), "false\n");
        write(&d.join("driver_override"), "(null)\n");
        write(&d.join("modalias"), &format!("rpmsg:{name}\n"));
        if let Some(drv) = driver {
            link(&drivers.join(drv), &d.join("driver"));
        }
        link(&d, &sys.join("bus/rpmsg/devices").join(id));
        d
    };
    let raw = channel(
        "virtio0.rpmsg-raw.-1.3328",
        "rpmsg-raw",
        "0x400",
        "0xd00",
        Some("rpmsg_chrdev"),
    );
    let ctrl_ch = channel(
        "virtio0.rpmsg_ctrl.0.0",
        "rpmsg_ctrl",
        "0x0",
        "0x0",
        Some("rpmsg_ctrl"),
    );
    channel(
        "virtio0.rpmsg_ns.53.53",
        "rpmsg_ns",
        "0x35",
        "0x35",
        Some("rpmsg_ns"),
    );
    channel(
        "virtio0.rpmsg-tty.-1.3329",
        "rpmsg-tty",
        "0x401",
        "0xd01",
        Some("rpmsg_tty"),
    );
    let class = sys.join("class/rpmsg");
    // The control device: under its channel, in the class's glue directory.
    let ctrl = ctrl_ch.join("rpmsg/rpmsg_ctrl0");
    write(&ctrl.join("dev"), "510:0\n");
    write(
        &ctrl.join("uevent"),
        "MAJOR=510\nMINOR=0\nDEVNAME=rpmsg_ctrl0\n",
    );
    link(&ctrl_ch, &ctrl.join("device"));
    link(&ctrl, &class.join("rpmsg_ctrl0"));
    // The announced rpmsg-raw channel's default endpoint.
    let ep0 = raw.join("rpmsg/rpmsg0");
    endpoint_dir(&ep0, "rpmsg-raw", "1024", "3328", "511:0");
    link(&raw, &ep0.join("device"));
    link(&ep0, &class.join("rpmsg0"));
    // An endpoint made through the control device: a child of rpmsg_ctrl0 itself.
    add_ctrl_endpoint(&sys, "rpmsg1", "my-ept", "-1", "30", "511:1");
    Sysfs::new(sys).with_dev_dir(dev)
}

fn endpoint_dir(d: &Path, name: &str, src: &str, dst: &str, devnum: &str) {
    write(&d.join("name"), &format!("{name}\n"));
    write(&d.join("src"), &format!("{src}\n"));
    write(&d.join("dst"), &format!("{dst}\n"));
    write(&d.join("dev"), &format!("{devnum}\n"));
    let (maj, min) = devnum.split_once(':').unwrap();
    let dev_name = d.file_name().unwrap().to_str().unwrap();
    write(
        &d.join("uevent"),
        &format!("MAJOR={maj}\nMINOR={min}\nDEVNAME={dev_name}\n"),
    );
}

fn add_ctrl_endpoint(sys: &Path, dev_name: &str, name: &str, src: &str, dst: &str, devnum: &str) {
    let ctrl =
        sys.join("devices/platform/virtio-uml.0/virtio0/virtio0.rpmsg_ctrl.0.0/rpmsg/rpmsg_ctrl0");
    let d = ctrl.join(dev_name);
    endpoint_dir(&d, name, src, dst, devnum);
    link(&ctrl, &d.join("device"));
    link(&d, &sys.join("class/rpmsg").join(dev_name));
}

// ---- uapi ------------------------------------------------------------------------------------

#[test]
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "riscv32",
    target_arch = "loongarch64",
    target_arch = "s390x"
))]
fn ioctl_numbers_are_the_uapi_headers() {
    // _IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr, _IOC_WRITE = 1.
    assert_eq!(RPMSG_CREATE_EPT_IOCTL, 0x4028_b501);
    assert_eq!(RPMSG_DESTROY_EPT_IOCTL, 0x0000_b502);
    assert_eq!(RPMSG_CREATE_DEV_IOCTL, 0x4028_b503);
    assert_eq!(RPMSG_RELEASE_DEV_IOCTL, 0x4028_b504);
}

#[test]
fn endpoint_info_has_the_kernels_40_byte_layout() {
    /// `struct rpmsg_endpoint_info` as the uapi header declares it.
    #[repr(C)]
    struct Uapi {
        name: [u8; 32],
        src: u32,
        dst: u32,
    }
    assert_eq!(std::mem::size_of::<Uapi>(), ENDPOINT_INFO_LEN);
    assert_eq!(std::mem::offset_of!(Uapi, name), 0);
    assert_eq!(std::mem::offset_of!(Uapi, src), 32);
    assert_eq!(std::mem::offset_of!(Uapi, dst), 36);
    assert_eq!(std::mem::size_of::<RawEndpointInfo>(), 40);

    let info = EndpointInfo::new("rpmsg-raw", 0x400, RPMSG_ADDR_ANY).unwrap();
    let raw = info.to_bytes();
    assert_eq!(&raw[..9], b"rpmsg-raw");
    assert!(raw[9..32].iter().all(|&b| b == 0), "NUL-padded");
    assert_eq!(raw[32..36], 0x400u32.to_ne_bytes());
    assert_eq!(raw[36..40], [0xff; 4]);
    assert_eq!(EndpointInfo::from_bytes(&raw).unwrap(), info);

    let longest = "a".repeat(NAME_MAX_LEN);
    let raw = EndpointInfo::new(&longest, 1, 2).unwrap().to_bytes();
    assert_eq!(raw[31], 0, "the 32nd byte stays the terminating NUL");
    let mut latin1 = raw;
    latin1[0] = 0xe9;
    assert!(matches!(
        EndpointInfo::from_bytes(&latin1),
        Err(DevError::NameNotUtf8 { .. })
    ));
    let mut unterminated = raw;
    unterminated[31] = b'a';
    assert!(matches!(
        EndpointInfo::from_bytes(&unterminated),
        Err(DevError::NameTooLong { .. })
    ));
}

#[test]
fn names_are_checked() {
    assert!(EndpointInfo::new(&"x".repeat(31), 0, 0).is_ok());
    assert!(EndpointInfo::new("", 0, 0).is_ok());
    let e = EndpointInfo::new(&"x".repeat(32), 0, 0).unwrap_err();
    assert!(matches!(e, DevError::NameTooLong { .. }));
    assert!(e.is_usage());
    let m = e.to_string();
    assert!(m.contains("32 bytes") && m.contains("at most 31"), "{m}");
    // Bytes, not characters: 16 two-byte characters are 32 bytes.
    assert!(EndpointInfo::new(&"é".repeat(16), 0, 0).is_err());
    assert!(EndpointInfo::new(&"é".repeat(15), 0, 0).is_ok());
    let e = EndpointInfo::new("a\0b", 0, 0).unwrap_err();
    assert!(matches!(e, DevError::NameHasNul { .. }));
    assert!(e.to_string().contains("NUL"));
}

#[test]
fn addresses_parse_as_people_and_sysfs_write_them() {
    assert_eq!(parse_addr("any").unwrap(), RPMSG_ADDR_ANY);
    assert_eq!(parse_addr("ANY").unwrap(), RPMSG_ADDR_ANY);
    assert_eq!(parse_addr("-1").unwrap(), RPMSG_ADDR_ANY);
    assert_eq!(parse_addr("1024").unwrap(), 1024);
    assert_eq!(parse_addr("0xd00").unwrap(), 0xd00);
    assert_eq!(parse_addr("4294967295").unwrap(), RPMSG_ADDR_ANY);
    for bad in [
        "",
        "x",
        "0x",
        "1.5",
        "4294967296",
        "-2147483649",
        "0x1_0000_0000",
    ] {
        let e = parse_addr(bad).unwrap_err();
        assert!(matches!(e, DevError::BadAddress { .. }), "{bad}");
        assert!(e.is_usage());
    }
    // rpmsg_char prints its u32 addresses with %d.
    assert_eq!(parse_sysfs_addr("-2147483648"), Some(0x8000_0000));
    assert_eq!(parse_sysfs_addr("0x35\n"), Some(53));
    assert_eq!(format_addr(RPMSG_ADDR_ANY), "any");
    assert_eq!(format_addr(0x400), "0x400");
}

// ---- sysfs -----------------------------------------------------------------------------------

#[test]
fn lists_a_linux_6_1_tree() {
    let s = Scratch::new("list");
    let sysfs = fake_61(&s.0);
    let l = sysfs.list().unwrap();

    let ids: Vec<&str> = l.channels.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "virtio0.rpmsg-raw.-1.3328",
            "virtio0.rpmsg-tty.-1.3329",
            "virtio0.rpmsg_ctrl.0.0",
            "virtio0.rpmsg_ns.53.53"
        ]
    );
    let raw = &l.channels[0];
    assert_eq!(raw.name, "rpmsg-raw");
    assert_eq!((raw.src, raw.dst), (0x400, 0xd00));
    assert_eq!(raw.driver.as_deref(), Some("rpmsg_chrdev"));
    assert_eq!(raw.announce, Some(false));
    assert_eq!(raw.transport(), "virtio0");
    let ns = &l.channels[3];
    assert_eq!((ns.name.as_str(), ns.src, ns.dst), ("rpmsg_ns", 53, 53));
    assert_eq!(ns.driver.as_deref(), Some("rpmsg_ns"));

    assert_eq!(l.ctrls.len(), 1);
    let c = &l.ctrls[0];
    assert_eq!(c.dev_name, "rpmsg_ctrl0");
    assert_eq!(c.devnum, Some((510, 0)));
    assert_eq!(c.node, sysfs.dev_dir().join("rpmsg_ctrl0"));
    assert_eq!(c.channel.as_deref(), Some("virtio0.rpmsg_ctrl.0.0"));

    assert_eq!(l.endpoints.len(), 2);
    let e0 = &l.endpoints[0];
    assert_eq!(e0.dev_name, "rpmsg0");
    assert_eq!(
        (e0.name.as_str(), e0.src, e0.dst),
        ("rpmsg-raw", 1024, 3328)
    );
    assert_eq!(
        e0.origin,
        Origin::Channel("virtio0.rpmsg-raw.-1.3328".into())
    );
    assert_eq!(e0.node, sysfs.dev_dir().join("rpmsg0"));
    let e1 = &l.endpoints[1];
    assert_eq!(
        (e1.name.as_str(), e1.src, e1.dst),
        ("my-ept", RPMSG_ADDR_ANY, 30)
    );
    assert_eq!(e1.origin, Origin::Ctrl("rpmsg_ctrl0".into()));
    assert_eq!(e1.devnum, Some((511, 1)));
    assert_eq!(
        sysfs
            .endpoint_by_devnum((511, 1))
            .unwrap()
            .unwrap()
            .dev_name,
        "rpmsg1"
    );
    assert_eq!(sysfs.ctrl_children("rpmsg_ctrl0").unwrap(), ["rpmsg1"]);
}

#[test]
fn endpoint_devices_sort_by_number_and_ignore_strangers() {
    let s = Scratch::new("sort");
    let sysfs = fake_61(&s.0);
    add_ctrl_endpoint(sysfs.sys_root(), "rpmsg10", "ten", "10", "-1", "511:10");
    add_ctrl_endpoint(sysfs.sys_root(), "rpmsg2", "two", "2", "-1", "511:2");
    fs::create_dir_all(sysfs.class_dir().join("rpmsgX")).unwrap();
    let names: Vec<String> = sysfs
        .endpoint_devices()
        .unwrap()
        .into_iter()
        .map(|e| e.dev_name)
        .collect();
    assert_eq!(names, ["rpmsg0", "rpmsg1", "rpmsg2", "rpmsg10"]);
}

#[test]
fn finds_the_endpoint_device_a_create_made() {
    let s = Scratch::new("find");
    let sysfs = fake_61(&s.0);
    let before = sysfs.ctrl_children("rpmsg_ctrl0").unwrap();
    let info = EndpointInfo::new("my-ept", RPMSG_ADDR_ANY, 30).unwrap();
    // Nothing new yet: the old rpmsg1 has the same name and addresses but does not count.
    let e = sysfs
        .find_new_endpoint("rpmsg_ctrl0", &before, &info)
        .unwrap_err();
    assert!(matches!(e, DevError::NotInSysfs { .. }), "{e}");
    assert!(e.to_string().contains("class/rpmsg/rpmsg_ctrl0"), "{e}");
    // What the kernel does for RPMSG_CREATE_EPT_IOCTL, plus another process's endpoint.
    add_ctrl_endpoint(sysfs.sys_root(), "rpmsg3", "other", "5", "6", "511:3");
    add_ctrl_endpoint(sysfs.sys_root(), "rpmsg2", "my-ept", "-1", "30", "511:2");
    let dev = sysfs
        .find_new_endpoint("rpmsg_ctrl0", &before, &info)
        .unwrap();
    assert_eq!(dev.dev_name, "rpmsg2");
    assert_eq!(dev.node, sysfs.dev_dir().join("rpmsg2"));
    assert_eq!(dev.origin, Origin::Ctrl("rpmsg_ctrl0".into()));
}

#[test]
fn waits_for_the_node_then_says_how_to_make_it() {
    let s = Scratch::new("node");
    let sysfs = fake_61(&s.0);
    let node = sysfs.dev_dir().join("rpmsg1");
    let e = wait_for_node("rpmsg1", &node, Some((511, 1)), Duration::from_millis(30)).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("mknod") && m.contains("c 511 1") && m.contains("devtmpfs"),
        "{m}"
    );
    let n2 = node.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        fs::write(n2, "").unwrap();
    });
    wait_for_node("rpmsg1", &node, None, Duration::from_secs(120)).unwrap();
    t.join().unwrap();
}

#[test]
fn a_missing_bus_is_explained() {
    let s = Scratch::new("nobus");
    let sysfs = Sysfs::new(s.0.join("sys"));
    let e = sysfs.list().unwrap_err();
    assert!(matches!(e, DevError::NoRpmsgBus { .. }));
    let m = e.to_string();
    assert!(
        m.contains("bus/rpmsg/devices") && m.contains("CONFIG_RPMSG"),
        "{m}"
    );
    // A bus without any class device yet is not an error: nothing was made.
    fs::create_dir_all(sysfs.bus_dir()).unwrap();
    let l = sysfs.list().unwrap();
    assert!(l.channels.is_empty() && l.ctrls.is_empty() && l.endpoints.is_empty());
}

#[test]
fn channel_matching_follows_the_kernels_wildcards() {
    let s = Scratch::new("match");
    let sysfs = fake_61(&s.0);
    let raw = sysfs.channel("virtio0.rpmsg-raw.-1.3328").unwrap();
    let any = RPMSG_ADDR_ANY;
    assert!(raw.matches(&EndpointInfo::new("rpmsg-raw", any, any).unwrap()));
    assert!(raw.matches(&EndpointInfo::new("rpmsg-raw", 0x400, 0xd00).unwrap()));
    assert!(!raw.matches(&EndpointInfo::new("rpmsg-raw", 0x401, any).unwrap()));
    assert!(!raw.matches(&EndpointInfo::new("rpmsg-tty", any, any).unwrap()));
}

// ---- opening and errors ----------------------------------------------------------------------

#[test]
fn a_missing_device_names_the_paths() {
    let e = Endpoint::open("/nonexistent/rpmsg9").unwrap_err();
    assert!(matches!(e, DevError::NoSuchDevice { .. }));
    assert!(!e.is_usage());
    let m = e.to_string();
    assert!(m.contains("no such device /nonexistent/rpmsg9"), "{m}");
    assert!(m.contains("looked at /nonexistent/rpmsg9"), "{m}");

    let s = Scratch::new("ctrl");
    let sysfs = fake_61(&s.0);
    fs::write(sysfs.dev_dir().join("rpmsg0"), "").unwrap();
    let e = Ctrl::open_index(7, &sysfs).unwrap_err();
    let m = e.to_string();
    assert!(m.contains("rpmsg_ctrl7"), "{m}");
    assert!(m.contains("present: ") && m.contains("rpmsg0"), "{m}");
}

#[test]
fn the_other_messages_say_the_limit_and_what_to_do() {
    let p = PathBuf::from("/dev/rpmsg0");
    let m = DevError::MessageTooLong {
        path: p.clone(),
        len: 497,
    }
    .to_string();
    assert!(m.contains("497 bytes") && m.contains("496"), "{m}");
    let m = DevError::Gone { path: p.clone() }.to_string();
    assert!(m.contains("/dev/rpmsg0 is gone"), "{m}");
    let m = DevError::DefaultEndpoint { path: p.clone() }.to_string();
    assert!(m.contains("release the channel"), "{m}");
    let m = DevError::Timeout {
        path: p,
        dir: Direction::Recv,
        after: Duration::from_millis(250),
    }
    .to_string();
    assert!(m.contains("within 250 ms"), "{m}");
    let m = DevError::ProtectedChannel {
        name: "rpmsg_ns".into(),
    }
    .to_string();
    assert!(m.contains("rpmsg_ns"), "{m}");
}

#[test]
fn protected_channels_are_refused_before_any_ioctl() {
    let s = Scratch::new("prot");
    let sysfs = fake_61(&s.0);
    // A regular file plays the control device: the refusal comes before the ioctl.
    let node = sysfs.dev_dir().join("rpmsg_ctrl0");
    fs::write(&node, "").unwrap();
    let ctrl = Ctrl::open_in(&node, &sysfs).unwrap();
    assert_eq!(ctrl.dev_name(), Some("rpmsg_ctrl0"));
    for name in PROTECTED_CHANNELS {
        let info = EndpointInfo::new(name, RPMSG_ADDR_ANY, RPMSG_ADDR_ANY).unwrap();
        let e = ctrl.release_channel(&info).unwrap_err();
        assert!(matches!(e, DevError::ProtectedChannel { .. }), "{e}");
    }
    let info = EndpointInfo::new("no-such", RPMSG_ADDR_ANY, RPMSG_ADDR_ANY).unwrap();
    let e = ctrl.release_channel(&info).unwrap_err();
    assert!(matches!(e, DevError::NoSuchChannel { .. }), "{e}");
    assert!(e.to_string().contains("virtio0.rpmsg-raw.-1.3328"), "{e}");
    // A plain file is no control device: the ioctl fails with ENOTTY.
    let info = EndpointInfo::new("rpmsg-raw", RPMSG_ADDR_ANY, RPMSG_ADDR_ANY).unwrap();
    let e = ctrl.release_channel(&info).unwrap_err();
    assert!(matches!(e, DevError::NotRpmsg { .. }), "{e}");
    let e = ctrl.create_endpoint(&info).unwrap_err();
    assert!(matches!(e, DevError::NotRpmsg { .. }), "{e}");
}

// ---- the message path, on sockets and FIFOs --------------------------------------------------

fn seqpacket_pair() -> (Endpoint, Endpoint) {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
    let (a, b) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    (
        Endpoint::from_fd(a, "pair-a").unwrap(),
        Endpoint::from_fd(b, "pair-b").unwrap(),
    )
}

#[test]
fn one_message_per_send_and_per_recv() {
    let (a, b) = seqpacket_pair();
    a.send(b"hello").unwrap();
    a.send(b"").unwrap();
    a.send(&[7u8; 496]).unwrap();
    let mut buf = [0u8; 512];
    assert_eq!(b.recv(&mut buf, Timeout::NoWait).unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(
        b.try_recv(&mut buf).unwrap(),
        Some(0),
        "a zero-length message"
    );
    assert_eq!(b.recv(&mut buf, Timeout::Forever).unwrap(), 496);
    assert!(buf[..496].iter().all(|&x| x == 7));
    assert_eq!(b.try_recv(&mut buf).unwrap(), None);
}

#[test]
fn recv_times_out_and_wakes_for_a_late_message() {
    let (a, b) = seqpacket_pair();
    let mut buf = [0u8; 64];
    let e = b
        .recv(&mut buf, Timeout::After(Duration::from_millis(20)))
        .unwrap_err();
    assert!(
        matches!(
            e,
            DevError::Timeout {
                dir: Direction::Recv,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("pair-b"));
    let e = b.recv(&mut buf, Timeout::NoWait).unwrap_err();
    assert!(matches!(e, DevError::WouldBlock { .. }), "{e}");
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            a.send(b"late").unwrap();
        });
        let n = b.recv(&mut buf, Timeout::Forever).unwrap();
        assert_eq!(&buf[..n], b"late");
    });
}

#[test]
fn nonblocking_mode_never_waits() {
    let (a, mut b) = seqpacket_pair();
    b.set_nonblocking(true);
    assert!(b.is_nonblocking());
    let mut buf = [0u8; 8];
    let e = b.recv(&mut buf, Timeout::Forever).unwrap_err();
    assert!(
        matches!(
            e,
            DevError::WouldBlock {
                dir: Direction::Recv,
                ..
            }
        ),
        "{e}"
    );
    // Fill the sender's queue: then sends would block.
    let mut sent = 0u32;
    while a.try_send(&[0u8; 256]).unwrap() {
        sent += 1;
        assert!(sent < 1_000_000, "a socket buffer is finite");
    }
    let e = a
        .send_timeout(&[0u8; 256], Timeout::After(Duration::from_millis(20)))
        .unwrap_err();
    assert!(
        matches!(
            e,
            DevError::Timeout {
                dir: Direction::Send,
                ..
            }
        ),
        "{e}"
    );
    // Draining one message frees room, and a waiting send goes through.
    b.set_nonblocking(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            let mut buf = [0u8; 256];
            for _ in 0..4 {
                b.recv(&mut buf, Timeout::Forever).unwrap();
            }
        });
        a.send_timeout(&[1u8; 256], Timeout::After(Duration::from_secs(120)))
            .unwrap();
    });
}

#[test]
fn a_message_the_device_refuses_as_too_long_is_typed() {
    let (a, _b) = seqpacket_pair();
    // A unix datagram larger than the socket's send buffer fails with EMSGSIZE, as an rpmsg
    // message larger than a buffer does.
    let big = vec![0u8; 4 << 20];
    let e = a.send(&big).unwrap_err();
    assert!(
        matches!(e, DevError::MessageTooLong { len, .. } if len == 4 << 20),
        "{e}"
    );
    assert!(e.is_usage());
}

#[test]
fn a_vanished_peer_is_gone_not_a_timeout() {
    let (a, b) = seqpacket_pair();
    a.send(b"last words").unwrap();
    drop(a);
    let mut buf = [0u8; 64];
    // What was sent before still arrives; then the endpoint is gone.
    assert_eq!(b.recv(&mut buf, Timeout::Forever).unwrap(), 10);
    let e = b.recv(&mut buf, Timeout::Forever).unwrap_err();
    assert!(e.is_gone(), "{e}");
    let e = b.send(b"anyone?").unwrap_err();
    assert!(e.is_gone(), "{e}");
    // Not an rpmsg endpoint: destroy asks the kernel, which says ENOTTY... unless it is gone.
    let (c, _d) = seqpacket_pair();
    let e = c.destroy().unwrap_err();
    assert!(matches!(e, DevError::NotRpmsg { .. }), "{e}");
}

#[test]
fn a_fifo_opened_read_write_echoes_each_message() {
    let s = Scratch::new("fifo");
    let p = s.0.join("fifo");
    rustix::fs::mkfifoat(rustix::fs::CWD, &p, Mode::from_raw_mode(0o600)).unwrap();
    let ep = Endpoint::open(&p).unwrap();
    assert_eq!(ep.devnum(), None, "not a character device");
    let mut buf = [0u8; 64];
    for i in 0..100u8 {
        ep.send(&[i; 17]).unwrap();
        assert_eq!(ep.recv(&mut buf, Timeout::Forever).unwrap(), 17);
        assert_eq!(buf[..17], [i; 17]);
    }
}

#[cfg(feature = "tokio")]
#[test]
fn async_send_and_recv_and_gone() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let (a, b) = seqpacket_pair();
        let a = AsyncEndpoint::new(a).unwrap();
        let b = AsyncEndpoint::new(b).unwrap();
        let mut buf = [0u8; 64];
        for i in 0..50u8 {
            let msg = [i; 9];
            let (r, n) = tokio::join!(a.send(&msg), b.recv(&mut buf));
            r.unwrap();
            assert_eq!(n.unwrap(), 9);
            assert_eq!(buf[..9], [i; 9]);
        }
        // The receive waits until the peer goes, then says so.
        let wait = b.recv(&mut buf);
        let close = async {
            tokio::task::yield_now().await;
            drop(a.into_inner());
        };
        let (r, ()) = tokio::join!(wait, close);
        assert!(r.unwrap_err().is_gone());
        let b = b.into_inner();
        assert!(b.path() == Path::new("pair-b"));
    });
}
