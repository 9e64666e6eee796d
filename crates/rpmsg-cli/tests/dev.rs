//! `rpmsg dev` as a script runs it, without a kernel rpmsg stack: the exit status (0, 1 for a
//! failure, 2 for bad usage), one `rpmsg: error:` line on standard error, `list` on a fake
//! sysfs tree shaped like Linux 6.1's, and send, recv and ping through a FIFO, which, opened
//! read-write, hands each message back like an echo service.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

const RPMSG: &str = env!("CARGO_BIN_EXE_rpmsg");

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("rpmsg-dev-{}-{n}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    fn fifo(&self) -> PathBuf {
        let p = self.0.join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &p, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(RPMSG)
        .arg("dev")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Exit status `code`, and (for failures) exactly one error line.
fn expect(o: &Output, code: i32) -> String {
    let err = text(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {err}",
        text(&o.stdout)
    );
    if code == 1 || (code == 2 && err.starts_with("rpmsg: error:")) {
        assert_eq!(err.lines().count(), 1, "one error line: {err}");
        assert!(err.starts_with("rpmsg: error: "), "{err}");
    }
    err
}

fn put(p: &Path, s: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, s).unwrap();
}

fn link(target: &Path, at: &Path) {
    fs::create_dir_all(at.parent().unwrap()).unwrap();
    symlink(target, at).unwrap();
}

/// Linux 6.1's sysfs after a device announced `rpmsg-raw` at 0xd00, with one endpoint made
/// through rpmsg_ctrl0 ("my-ept", src any, dst 30). Returns (sys, dev).
fn fake_61(root: &Path) -> (PathBuf, PathBuf) {
    let sys = root.join("sys");
    let dev = root.join("dev");
    fs::create_dir_all(&dev).unwrap();
    let virtio = sys.join("devices/platform/virtio-uml.0/virtio0");
    let class = sys.join("class/rpmsg");
    let chan = |id: &str, name: &str, src: &str, dst: &str, drv: &str| {
        let d = virtio.join(id);
        put(&d.join("name"), &format!("{name}\n"));
        put(&d.join("src"), &format!("{src}\n"));
        put(&d.join("dst"), &format!("{dst}\n"));
        put(&d.join("announce"), "false\n");
        let drv_dir = sys.join("bus/rpmsg/drivers").join(drv);
        fs::create_dir_all(&drv_dir).unwrap();
        link(&drv_dir, &d.join("driver"));
        link(&d, &sys.join("bus/rpmsg/devices").join(id));
        d
    };
    let raw = chan(
        "virtio0.rpmsg-raw.-1.3328",
        "rpmsg-raw",
        "0x400",
        "0xd00",
        "rpmsg_chrdev",
    );
    let ctrl_ch = chan(
        "virtio0.rpmsg_ctrl.0.0",
        "rpmsg_ctrl",
        "0x0",
        "0x0",
        "rpmsg_ctrl",
    );
    chan(
        "virtio0.rpmsg_ns.53.53",
        "rpmsg_ns",
        "0x35",
        "0x35",
        "rpmsg_ns",
    );
    let ctrl = ctrl_ch.join("rpmsg/rpmsg_ctrl0");
    put(&ctrl.join("dev"), "510:0\n");
    put(
        &ctrl.join("uevent"),
        "MAJOR=510\nMINOR=0\nDEVNAME=rpmsg_ctrl0\n",
    );
    link(&ctrl_ch, &ctrl.join("device"));
    link(&ctrl, &class.join("rpmsg_ctrl0"));
    let ep = |parent: &Path, n: u32, name: &str, src: &str, dst: &str| {
        let d = parent.join(format!("rpmsg{n}"));
        put(&d.join("name"), &format!("{name}\n"));
        put(&d.join("src"), &format!("{src}\n"));
        put(&d.join("dst"), &format!("{dst}\n"));
        put(&d.join("dev"), &format!("511:{n}\n"));
        link(parent, &d.join("device"));
        link(&d, &class.join(format!("rpmsg{n}")));
    };
    ep(&raw.join("rpmsg"), 0, "rpmsg-raw", "1024", "3328");
    // The class glue directory is not the parent: the device link points at the channel.
    fs::remove_file(raw.join("rpmsg/rpmsg0/device")).unwrap();
    link(&raw, &raw.join("rpmsg/rpmsg0/device"));
    ep(&ctrl, 1, "my-ept", "-1", "30");
    (sys, dev)
}

#[test]
fn a_missing_device_fails_with_status_1_and_says_where_it_looked() {
    let err = expect(&run(&["send", "/nonexistent", "x"]), 1);
    assert!(err.contains("no such device /nonexistent"), "{err}");
    assert!(err.contains("looked at /nonexistent"), "{err}");
    for args in [
        &["recv", "/nonexistent/rpmsg0", "--timeout", "10"][..],
        &["ping", "/nonexistent/rpmsg0"],
        &["destroy", "/nonexistent/rpmsg0"],
        &[
            "create",
            "--name",
            "x",
            "--ctrl",
            "/nonexistent/rpmsg_ctrl0",
        ],
    ] {
        let err = expect(&run(args), 1);
        assert!(err.contains("/nonexistent/rpmsg"), "{args:?}: {err}");
    }
}

#[test]
fn bad_usage_fails_with_status_2() {
    let long = "n".repeat(32);
    let err = expect(
        &run(&["create", "--name", &long, "--ctrl", "/nonexistent"]),
        2,
    );
    assert!(err.contains("at most 31 bytes"), "{err}");
    let err = expect(
        &run(&[
            "destroy",
            "--channel",
            "--name",
            &long,
            "--ctrl",
            "/nonexistent",
        ]),
        2,
    );
    assert!(err.contains("at most 31 bytes"), "{err}");
    let err = expect(&run(&["create", "--name", "x", "--src", "0xzz"]), 2);
    assert!(err.contains("\"0xzz\" is not an rpmsg address"), "{err}");
    expect(&run(&["create", "--src", "1"]), 2);
    expect(&run(&["destroy"]), 2);
    expect(&run(&["send", "/dev/null", "4", "--hex"]), 2);
    expect(&run(&["ping", "/dev/null", "--size", "0"]), 2);
    // clap's own usage errors have the same status.
    expect(&run(&["send"]), 2);
    expect(&run(&["frobnicate"]), 2);
    expect(&run(&["recv", "/dev/null", "--count", "many"]), 2);
}

#[test]
fn list_reads_a_linux_6_1_tree() {
    let s = Scratch::new("list");
    let (sys, dev) = fake_61(&s.0);
    let sys = sys.to_str().unwrap();
    let dev = dev.to_str().unwrap();
    let o = run(&["list", "--json", "--sysfs", sys, "--dev-dir", dev]);
    expect(&o, 0);
    let out = text(&o.stdout);
    assert_eq!(out.lines().count(), 1, "one line of JSON: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ch = &v["channels"][0];
    assert_eq!(ch["id"], "virtio0.rpmsg-raw.-1.3328");
    assert_eq!(ch["src"], 1024);
    assert_eq!(ch["dst"], 3328);
    assert_eq!(ch["driver"], "rpmsg_chrdev");
    assert_eq!(ch["transport"], "virtio0");
    assert_eq!(v["channels"].as_array().unwrap().len(), 3);
    assert_eq!(v["ctrls"][0]["device"], format!("{dev}/rpmsg_ctrl0"));
    assert_eq!(v["ctrls"][0]["channel"], "virtio0.rpmsg_ctrl.0.0");
    assert_eq!(v["ctrls"][0]["devnum"], "510:0");
    let e0 = &v["endpoints"][0];
    assert_eq!(e0["device"], format!("{dev}/rpmsg0"));
    assert_eq!(e0["origin"], "channel");
    assert_eq!(e0["parent"], "virtio0.rpmsg-raw.-1.3328");
    let e1 = &v["endpoints"][1];
    assert_eq!(e1["name"], "my-ept");
    assert_eq!(e1["src"], serde_json::Value::Null, "any");
    assert_eq!(e1["dst"], 30);
    assert_eq!(e1["origin"], "ctrl");
    assert_eq!(e1["parent"], "rpmsg_ctrl0");

    let o = run(&["list", "--sysfs", sys, "--dev-dir", dev]);
    expect(&o, 0);
    let out = text(&o.stdout);
    let row = |start: &str| {
        out.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row {start}: {out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("virtio0.rpmsg-raw"),
        [
            "virtio0.rpmsg-raw.-1.3328",
            "rpmsg-raw",
            "0x400",
            "0xd00",
            "rpmsg_chrdev"
        ]
    );
    assert_eq!(
        row(&format!("{dev}/rpmsg1")),
        [
            &format!("{dev}/rpmsg1"),
            "my-ept",
            "any",
            "0x1e",
            "rpmsg_ctrl0"
        ]
    );

    // No rpmsg bus: a failure, explained.
    let err = expect(&run(&["list", "--sysfs", &format!("{sys}/nope")]), 1);
    assert!(err.contains("no rpmsg bus"), "{err}");
}

#[test]
fn ctrl_operations_on_a_fake_tree() {
    let s = Scratch::new("ctrl");
    let (sys, dev) = fake_61(&s.0);
    // A regular file stands in for the control device: every ioctl on it fails with ENOTTY.
    fs::write(dev.join("rpmsg_ctrl0"), "").unwrap();
    let sys = sys.to_str().unwrap();
    let dev = dev.to_str().unwrap();
    let base = ["--sysfs", sys, "--dev-dir", dev, "--ctrl"];
    let ctrl = format!("{dev}/rpmsg_ctrl0");
    let with = |args: &[&str]| {
        let mut v: Vec<&str> = args.to_vec();
        v.extend_from_slice(&base);
        v.push(&ctrl);
        run(&v)
    };
    let err = expect(&with(&["destroy", "--channel", "--name", "rpmsg_ns"]), 2);
    assert!(
        err.contains("refusing to release channel \"rpmsg_ns\""),
        "{err}"
    );
    let err = expect(&with(&["destroy", "--channel", "--name", "nope"]), 1);
    assert!(
        err.contains("no channel matches") && err.contains("virtio0.rpmsg-raw.-1.3328"),
        "{err}"
    );
    let err = expect(
        &with(&["create", "--name", "e", "--src", "1030", "--dst", "-1"]),
        1,
    );
    assert!(err.contains("is not an rpmsg control device"), "{err}");
    let err = expect(&with(&["create", "--channel", "--name", "rpmsg-raw"]), 1);
    assert!(err.contains("is not an rpmsg control device"), "{err}");
}

#[test]
fn send_and_recv_through_a_fifo() {
    let s = Scratch::new("fifo");
    let fifo = s.fifo();
    let f = fifo.to_str().unwrap();
    // Hold the FIFO open so that what one process writes waits for the next.
    let _hold = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    expect(&run(&["send", f, "hello", "--repeat", "3"]), 0);
    let o = run(&["recv", f, "--count", "1", "--timeout", "1000"]);
    expect(&o, 0);
    // A FIFO has no message boundaries: the three sends come back as one read.
    assert_eq!(text(&o.stdout), "hellohellohello\n");
    expect(&run(&["send", f, "48:65:0a:00", "--hex"]), 0);
    let o = run(&["recv", f, "--hex", "--timeout", "1000"]);
    expect(&o, 0);
    assert_eq!(text(&o.stdout), "48650a00\n");
    expect(&run(&["send", f, "a\nb"]), 0);
    let o = run(&["recv", f, "--timeout", "1000"]);
    assert_eq!(text(&o.stdout), "a\\nb\n", "one line per message");

    // Send and take the replies on the same open device (here the FIFO hands them back).
    let o = run(&["send", f, "ping", "--recv", "1", "--timeout", "1000"]);
    expect(&o, 0);
    assert_eq!(text(&o.stdout), "ping\n");
    let o = run(&[
        "send",
        f,
        "hi",
        "--recv",
        "1",
        "--recv-hex",
        "--timeout",
        "1000",
    ]);
    assert_eq!(text(&o.stdout), "6869\n");

    let err = expect(&run(&["recv", f, "--timeout", "100"]), 1);
    assert!(
        err.contains("no message arrived on") && err.contains("within 100 ms"),
        "{err}"
    );
    assert!(err.contains("received 0 of 1"), "{err}");
    let err = expect(&run(&["destroy", f]), 1);
    assert!(err.contains("is not an rpmsg endpoint device"), "{err}");
}

#[test]
fn ping_through_a_fifo_checks_and_reports() {
    let s = Scratch::new("ping");
    let fifo = s.fifo();
    let f = fifo.to_str().unwrap();
    let o = run(&["ping", f, "--count", "2000", "--size", "496", "--json"]);
    expect(&o, 0);
    assert!(o.stderr.is_empty(), "no progress bar without a terminal");
    let v: serde_json::Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    assert_eq!(v["count"], 2000);
    assert_eq!(v["size"], 496);
    assert!(v["round_trips_per_second"].as_f64().unwrap() > 0.0);
    let (p50, p99) = (v["p50_ns"].as_u64().unwrap(), v["p99_ns"].as_u64().unwrap());
    assert!(v["min_ns"].as_u64().unwrap() <= p50 && p50 <= p99);
    assert!(p99 <= v["max_ns"].as_u64().unwrap());

    let o = run(&["ping", f, "--count", "1500", "--size", "8"]);
    expect(&o, 0);
    assert!(o.stderr.is_empty(), "no progress bar without a terminal");
    let out = text(&o.stdout);
    assert!(out.contains("1500 round trips of 8 bytes"), "{out}");
    assert!(
        out.contains("round trips/s") && out.contains("p99"),
        "{out}"
    );
}
