//! `rpmsg dev`: the Linux kernel's rpmsg character devices from the shell: list what the kernel
//! has, create and destroy endpoint devices and channels through `/dev/rpmsg_ctrlN`, send,
//! receive, and measure round trips against an echo service on `/dev/rpmsgN`.
//!
//! Made for scripts (a busybox guest's `/init` among them): exit status 0 on success, 1 when
//! something failed at run time (a timeout included), 2 for bad usage; one `rpmsg: error:` line
//! on standard error; data only on standard output (a created device's path, received messages,
//! one JSON object with `--json`); a progress bar only when standard output is a terminal.

use crate::common::{Failure, ns};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rpmsg::Timeout;
use rpmsg_host::chardev::{
    self, Channel, Ctrl, DevError, Endpoint, EndpointInfo, Listing, Origin, RPMSG_ADDR_ANY, Sysfs,
};
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `rpmsg dev`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DevArgs {
    #[command(subcommand)]
    pub(crate) command: DevCommand,
    /// Where sysfs is mounted.
    #[arg(long, global = true, default_value = "/sys", value_name = "DIR")]
    pub(crate) sysfs: PathBuf,
    /// Where the device nodes are.
    #[arg(long, global = true, default_value = "/dev", value_name = "DIR")]
    pub(crate) dev_dir: PathBuf,
}

/// The `rpmsg dev` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum DevCommand {
    /// List the channels on the rpmsg bus, the control devices and the endpoint devices.
    List(ListArgs),
    /// Create an endpoint device through a control device (prints its path), or a channel.
    Create(CreateArgs),
    /// Destroy an endpoint device made with `create`, or release a channel (`--channel`).
    Destroy(DestroyArgs),
    /// Send a message (one write) on an endpoint device.
    Send(SendArgs),
    /// Receive messages from an endpoint device and print one per line.
    Recv(RecvArgs),
    /// Round trips against an echo service, every reply byte checked.
    Ping(PingArgs),
}

/// `rpmsg dev list`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ListArgs {
    /// One JSON object on one line (addresses as numbers, null for any).
    #[arg(long)]
    pub(crate) json: bool,
}

/// The name and addresses of an endpoint or channel.
#[derive(Debug, Clone, Args)]
pub(crate) struct InfoArgs {
    /// Service name, at most 31 bytes.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Local address: a number (0x for hex), or `any` to let the kernel pick.
    #[arg(
        long,
        default_value = "any",
        value_name = "ADDR",
        allow_hyphen_values = true
    )]
    pub(crate) src: String,
    /// Remote address: a number (0x for hex), or `any`.
    #[arg(
        long,
        default_value = "any",
        value_name = "ADDR",
        allow_hyphen_values = true
    )]
    pub(crate) dst: String,
    /// The control device.
    #[arg(long, default_value = "/dev/rpmsg_ctrl0", value_name = "PATH")]
    pub(crate) ctrl: PathBuf,
}

impl InfoArgs {
    fn info(&self) -> Result<EndpointInfo, Failure> {
        let name = self
            .name
            .as_deref()
            .ok_or_else(|| Failure::usage("--name is required"))?;
        let src = chardev::parse_addr(&self.src).map_err(dev_failure)?;
        let dst = chardev::parse_addr(&self.dst).map_err(dev_failure)?;
        EndpointInfo::new(name, src, dst).map_err(dev_failure)
    }
}

/// `rpmsg dev create`.
#[derive(Debug, Clone, Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    pub(crate) info: InfoArgs,
    /// Create a channel on the rpmsg bus (RPMSG_CREATE_DEV_IOCTL) instead of an endpoint
    /// device; prints its id, then its device if a driver made one (name rpmsg-raw). The kernel
    /// announces it to the remote only with a fixed --src.
    #[arg(long)]
    pub(crate) channel: bool,
    /// Milliseconds to wait for the new device node to appear.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub(crate) wait: u64,
}

/// `rpmsg dev destroy`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DestroyArgs {
    /// The endpoint device (not with --channel).
    #[arg(value_name = "DEV", conflicts_with = "channel")]
    pub(crate) dev: Option<PathBuf>,
    /// Release the channel matching --name, --src and --dst (any matches all) instead.
    #[arg(long)]
    pub(crate) channel: bool,
    #[command(flatten)]
    pub(crate) info: InfoArgs,
}

/// `rpmsg dev send`.
#[derive(Debug, Clone, Args)]
pub(crate) struct SendArgs {
    /// The endpoint device.
    #[arg(value_name = "DEV")]
    pub(crate) dev: PathBuf,
    /// The message: text as given, or hex digits with --hex.
    #[arg(value_name = "MSG", allow_hyphen_values = true)]
    pub(crate) msg: String,
    /// MSG is hex ("48656c6c6f"; spaces and colons are ignored).
    #[arg(long)]
    pub(crate) hex: bool,
    /// Send it this many times.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) repeat: u64,
    /// Milliseconds to wait for a free transmit buffer, per message (and, with --recv, for
    /// each reply).
    #[arg(long, default_value_t = 15000, value_name = "MS")]
    pub(crate) timeout: u64,
    /// Then receive this many messages on the same open device and print them as `recv` does.
    /// Use this for replies: a device is open in one process at a time, and the kernel drops
    /// what arrived for it when it is closed.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) recv: u64,
    /// With --recv: print the replies as hex.
    #[arg(long, requires = "recv")]
    pub(crate) recv_hex: bool,
}

/// `rpmsg dev recv`.
#[derive(Debug, Clone, Args)]
pub(crate) struct RecvArgs {
    /// The endpoint device.
    #[arg(value_name = "DEV")]
    pub(crate) dev: PathBuf,
    /// Messages to receive; 0: until the timeout or the device goes.
    #[arg(long, short = 'c', default_value_t = 1, value_name = "N")]
    pub(crate) count: u64,
    /// Milliseconds to wait for each message [default: forever].
    #[arg(long, value_name = "MS")]
    pub(crate) timeout: Option<u64>,
    /// Print messages as hex instead of text.
    #[arg(long)]
    pub(crate) hex: bool,
}

/// `rpmsg dev ping`.
#[derive(Debug, Clone, Args)]
pub(crate) struct PingArgs {
    /// The endpoint device, whose peer echoes every message.
    #[arg(value_name = "DEV")]
    pub(crate) dev: PathBuf,
    /// Round trips to make.
    #[arg(long, short = 'c', default_value_t = 10, value_name = "N")]
    pub(crate) count: u64,
    /// Payload bytes per message (at most 496 on virtio).
    #[arg(long, short = 's', default_value_t = 64, value_name = "BYTES")]
    pub(crate) size: usize,
    /// Milliseconds to wait for each reply (and for a transmit buffer).
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub(crate) timeout: u64,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Receive buffer: larger than any transport's message (the kernel cuts longer ones to fit).
const RECV_BUF: usize = 64 * 1024;

fn dev_failure(e: DevError) -> Failure {
    if e.is_usage() {
        Failure::usage(e.to_string())
    } else {
        Failure::msg(e.to_string())
    }
}

/// Runs `rpmsg dev ...`.
pub(crate) fn dev(args: &DevArgs) -> Result<(), Failure> {
    let sysfs = Sysfs::new(&args.sysfs).with_dev_dir(&args.dev_dir);
    match &args.command {
        DevCommand::List(a) => list(&sysfs, a),
        DevCommand::Create(a) => create(&sysfs, a),
        DevCommand::Destroy(a) => destroy(&sysfs, a),
        DevCommand::Send(a) => send(a),
        DevCommand::Recv(a) => recv(a),
        DevCommand::Ping(a) => ping(a),
    }
}

// ---- list ------------------------------------------------------------------------------------

fn addr_json(a: u32) -> Value {
    if a == RPMSG_ADDR_ANY {
        Value::Null
    } else {
        json!(a)
    }
}

fn devnum_json(d: Option<(u32, u32)>) -> Value {
    d.map_or(Value::Null, |(maj, min)| json!(format!("{maj}:{min}")))
}

/// The listing as JSON.
pub(crate) fn listing_json(l: &Listing) -> Value {
    let channels: Vec<Value> = l
        .channels
        .iter()
        .map(|c| {
            json!({
                "id": c.id, "name": c.name, "src": addr_json(c.src), "dst": addr_json(c.dst),
                "announce": c.announce, "driver": c.driver, "transport": c.transport(),
            })
        })
        .collect();
    let ctrls: Vec<Value> = l
        .ctrls
        .iter()
        .map(|c| {
            json!({
                "device": c.node, "dev_name": c.dev_name, "devnum": devnum_json(c.devnum),
                "channel": c.channel,
            })
        })
        .collect();
    let endpoints: Vec<Value> = l
        .endpoints
        .iter()
        .map(|e| {
            let (origin, parent) = match &e.origin {
                Origin::Channel(c) => ("channel", Some(c.as_str())),
                Origin::Ctrl(c) => ("ctrl", Some(c.as_str())),
                Origin::Unknown => ("unknown", None),
            };
            json!({
                "device": e.node, "dev_name": e.dev_name, "name": e.name,
                "src": addr_json(e.src), "dst": addr_json(e.dst), "origin": origin,
                "parent": parent, "devnum": devnum_json(e.devnum),
            })
        })
        .collect();
    json!({ "channels": channels, "ctrls": ctrls, "endpoints": endpoints })
}

/// Rows as columns, each as wide as its widest cell.
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(head.iter().map(|h| (*h).to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

/// The listing as three tables.
pub(crate) fn listing_text(l: &Listing) -> String {
    let dash = || "-".to_string();
    let channels: Vec<Vec<String>> = l
        .channels
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.name.clone(),
                chardev::format_addr(c.src),
                chardev::format_addr(c.dst),
                c.driver.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let ctrls: Vec<Vec<String>> = l
        .ctrls
        .iter()
        .map(|c| {
            vec![
                c.node.display().to_string(),
                c.channel.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let endpoints: Vec<Vec<String>> = l
        .endpoints
        .iter()
        .map(|e| {
            vec![
                e.node.display().to_string(),
                e.name.clone(),
                chardev::format_addr(e.src),
                chardev::format_addr(e.dst),
                match &e.origin {
                    Origin::Channel(c) => format!("channel {c}"),
                    Origin::Ctrl(c) => c.clone(),
                    Origin::Unknown => dash(),
                },
            ]
        })
        .collect();
    let mut out = table(&["CHANNEL", "NAME", "SRC", "DST", "DRIVER"], &channels);
    out.push('\n');
    out.push_str(&table(&["CONTROL DEVICE", "CHANNEL"], &ctrls));
    out.push('\n');
    out.push_str(&table(
        &["ENDPOINT DEVICE", "NAME", "SRC", "DST", "MADE BY"],
        &endpoints,
    ));
    out
}

fn list(sysfs: &Sysfs, a: &ListArgs) -> Result<(), Failure> {
    let l = sysfs.list().map_err(dev_failure)?;
    if a.json {
        println!("{}", listing_json(&l));
    } else {
        print!("{}", listing_text(&l));
    }
    Ok(())
}

// ---- create / destroy --------------------------------------------------------------------------

fn open_ctrl(sysfs: &Sysfs, path: &Path, wait: Duration) -> Result<Ctrl, Failure> {
    let mut ctrl = Ctrl::open_in(path, sysfs).map_err(dev_failure)?;
    ctrl.set_node_wait(wait);
    Ok(ctrl)
}

fn create(sysfs: &Sysfs, a: &CreateArgs) -> Result<(), Failure> {
    let info = a.info.info()?;
    let ctrl = open_ctrl(sysfs, &a.info.ctrl, Duration::from_millis(a.wait))?;
    if a.channel {
        let ch: Channel = ctrl.create_channel(&info).map_err(dev_failure)?;
        println!("{}", ch.id);
        for e in sysfs.endpoint_devices().map_err(dev_failure)? {
            if e.origin == Origin::Channel(ch.id.clone()) {
                println!("{}", e.node.display());
            }
        }
    } else {
        let ep = ctrl.create_endpoint(&info).map_err(dev_failure)?;
        println!("{}", ep.node.display());
    }
    Ok(())
}

fn destroy(sysfs: &Sysfs, a: &DestroyArgs) -> Result<(), Failure> {
    if a.channel {
        let info = a.info.info()?;
        let ctrl = open_ctrl(sysfs, &a.info.ctrl, Duration::ZERO)?;
        return ctrl.release_channel(&info).map_err(dev_failure);
    }
    let Some(dev) = &a.dev else {
        return Err(Failure::usage(
            "give the endpoint device to destroy (DEV), or --channel --name NAME to release a channel",
        ));
    };
    Endpoint::open(dev)
        .and_then(Endpoint::destroy)
        .map_err(dev_failure)
}

// ---- send / recv -------------------------------------------------------------------------------

/// Hex digits to bytes; spaces, colons and a leading 0x are ignored.
pub(crate) fn parse_hex(s: &str) -> Result<Vec<u8>, Failure> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !matches!(b, b' ' | b':' | b'\t'))
        .collect();
    let bad = || {
        Failure::usage(format!(
            "{s:?} is not hex: give pairs of hex digits, such as 48656c6c6f"
        ))
    };
    if digits.len() % 2 != 0 {
        return Err(bad());
    }
    digits
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|t| u8::from_str_radix(t, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

/// A message as one line: UTF-8 text with control characters and backslashes escaped, other
/// bytes as `\xNN`.
pub(crate) fn printable(msg: &[u8]) -> String {
    match std::str::from_utf8(msg) {
        Ok(s) => {
            let mut out = String::with_capacity(s.len());
            for c in s.chars() {
                if c == '\\' || c.is_control() {
                    out.extend(c.escape_default());
                } else {
                    out.push(c);
                }
            }
            out
        }
        Err(_) => msg.escape_ascii().to_string(),
    }
}

fn hex(msg: &[u8]) -> String {
    msg.iter().map(|b| format!("{b:02x}")).collect()
}

fn send(a: &SendArgs) -> Result<(), Failure> {
    let msg = if a.hex {
        parse_hex(&a.msg)?
    } else {
        a.msg.clone().into_bytes()
    };
    let ep = Endpoint::open(&a.dev).map_err(dev_failure)?;
    let timeout = Timeout::After(Duration::from_millis(a.timeout));
    for _ in 0..a.repeat {
        ep.send_timeout(&msg, timeout).map_err(dev_failure)?;
    }
    if a.recv > 0 {
        print_messages(&ep, a.recv, timeout, a.recv_hex)?;
    }
    Ok(())
}

fn recv(a: &RecvArgs) -> Result<(), Failure> {
    let ep = Endpoint::open(&a.dev).map_err(dev_failure)?;
    let timeout = a.timeout.map_or(Timeout::Forever, |ms| {
        Timeout::After(Duration::from_millis(ms))
    });
    print_messages(&ep, a.count, timeout, a.hex)
}

/// Receives `count` messages (0: until a timeout or the device goes) and prints one per line.
fn print_messages(
    ep: &Endpoint,
    count: u64,
    timeout: Timeout,
    as_hex: bool,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; RECV_BUF];
    let mut got = 0u64;
    let stdout = std::io::stdout();
    while count == 0 || got < count {
        let n = match ep.recv(&mut buf, timeout) {
            Ok(n) => n,
            Err(e @ DevError::Timeout { .. }) if count != 0 => {
                return Err(Failure::msg(format!(
                    "{e} (received {got} of {count} messages)"
                )));
            }
            Err(e @ DevError::Timeout { .. }) => {
                return Err(Failure::msg(format!("{e} (received {got} messages)")));
            }
            Err(e) => return Err(dev_failure(e)),
        };
        let msg = &buf[..n];
        let line = if as_hex { hex(msg) } else { printable(msg) };
        let mut out = stdout.lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        got += 1;
    }
    Ok(())
}

// ---- ping --------------------------------------------------------------------------------------

/// Round trip `seq`'s payload: the sequence number (little-endian, as far as it fits), then a
/// pattern that differs per round trip.
pub(crate) fn fill(out: &mut [u8], seq: u64) {
    let s = seq.to_le_bytes();
    for (k, b) in out.iter_mut().enumerate() {
        *b = match s.get(k) {
            Some(&x) if k < 4 => x,
            _ => (seq as usize).wrapping_mul(31).wrapping_add(k) as u8,
        };
    }
}

/// Checks a reply against what was sent.
pub(crate) fn check_reply(seq: u64, sent: &[u8], got: &[u8]) -> Result<(), Failure> {
    if got.len() != sent.len() {
        return Err(Failure::msg(format!(
            "reply {seq} is {} bytes for {} sent; is the peer an echo service?",
            got.len(),
            sent.len()
        )));
    }
    if let Some(k) = sent.iter().zip(got).position(|(a, b)| a != b) {
        return Err(Failure::msg(format!(
            "reply {seq} differs from what was sent at byte {k} (sent {:#04x}, got {:#04x}); is the peer an echo service?",
            sent[k], got[k]
        )));
    }
    Ok(())
}

/// The round-trip summary.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PingSummary {
    pub(crate) count: u64,
    pub(crate) size: usize,
    pub(crate) seconds: f64,
    pub(crate) min_ns: u64,
    pub(crate) avg_ns: u64,
    pub(crate) p50_ns: u64,
    pub(crate) p99_ns: u64,
    pub(crate) max_ns: u64,
}

impl PingSummary {
    /// From the round trips' nanoseconds (any order) and the wall time.
    pub(crate) fn new(mut rtts: Vec<u64>, size: usize, total: Duration) -> Self {
        rtts.sort_unstable();
        let n = rtts.len();
        let pct = |p: f64| {
            if n == 0 {
                0
            } else {
                rtts[((n - 1) as f64 * p).round() as usize]
            }
        };
        Self {
            count: n as u64,
            size,
            seconds: total.as_secs_f64(),
            min_ns: pct(0.0),
            avg_ns: if n == 0 {
                0
            } else {
                rtts.iter().sum::<u64>() / n as u64
            },
            p50_ns: pct(0.5),
            p99_ns: pct(0.99),
            max_ns: pct(1.0),
        }
    }

    /// Round trips per second.
    pub(crate) fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.count as f64 / self.seconds
        } else {
            0.0
        }
    }
}

fn ping(a: &PingArgs) -> Result<(), Failure> {
    if a.size == 0 {
        return Err(Failure::usage(
            "--size 0: a ping needs at least one byte to check",
        ));
    }
    if a.size > RECV_BUF {
        return Err(Failure::usage(format!(
            "--size {} exceeds {RECV_BUF} bytes",
            a.size
        )));
    }
    let ep = Endpoint::open(&a.dev).map_err(dev_failure)?;
    let timeout = Timeout::After(Duration::from_millis(a.timeout));
    let bar = if std::io::stdout().is_terminal() && !a.json && a.count >= 1000 {
        let bar = ProgressBar::with_draw_target(Some(a.count), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} round trips {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let mut out = vec![0u8; a.size];
    let mut back = vec![0u8; RECV_BUF];
    let mut rtts = Vec::with_capacity(usize::try_from(a.count.min(1 << 24)).unwrap_or(0));
    let start = Instant::now();
    for seq in 0..a.count {
        fill(&mut out, seq);
        let t0 = Instant::now();
        ep.send_timeout(&out, timeout).map_err(dev_failure)?;
        let n = match ep.recv(&mut back, timeout) {
            Ok(n) => n,
            Err(e @ DevError::Timeout { .. }) => {
                return Err(Failure::msg(format!(
                    "{e}: no reply to round trip {seq} of {} (is an echo service on the other side?)",
                    a.count
                )));
            }
            Err(e) => return Err(dev_failure(e)),
        };
        let rtt = t0.elapsed();
        check_reply(seq, &out, &back[..n])?;
        if rtts.len() < rtts.capacity() {
            rtts.push(u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX));
        }
        if let Some(b) = &bar {
            if seq % 100 == 99 {
                b.set_position(seq + 1);
            }
        }
    }
    let total = start.elapsed();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let s = PingSummary::new(rtts, a.size, total);
    if a.json {
        println!(
            "{}",
            json!({
                "device": a.dev, "count": s.count, "size": s.size, "seconds": s.seconds,
                "round_trips_per_second": s.rate(), "min_ns": s.min_ns, "avg_ns": s.avg_ns,
                "p50_ns": s.p50_ns, "p99_ns": s.p99_ns, "max_ns": s.max_ns,
            })
        );
    } else if s.count == 0 {
        println!("{}: no round trips made", a.dev.display());
    } else {
        println!(
            "{}: {} round trips of {} bytes in {:.3} s: {:.0} round trips/s; latency min {}, avg {}, p50 {}, p99 {}, max {}",
            a.dev.display(),
            s.count,
            s.size,
            s.seconds,
            s.rate(),
            ns(s.min_ns as f64),
            ns(s.avg_ns as f64),
            ns(s.p50_ns as f64),
            ns(s.p99_ns as f64),
            ns(s.max_ns as f64),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_parses_and_refuses() {
        assert_eq!(parse_hex("48656c6c6f").unwrap(), b"Hello");
        assert_eq!(parse_hex("0x48:65 6C").unwrap(), b"Hel");
        assert_eq!(parse_hex("").unwrap(), b"");
        for bad in ["4", "zz", "48 6"] {
            let e = parse_hex(bad).unwrap_err();
            assert_eq!(e.code(), 2, "{bad}");
        }
    }

    #[test]
    fn messages_print_on_one_line() {
        assert_eq!(printable(b"hello"), "hello");
        assert_eq!(printable("grüß".as_bytes()), "grüß");
        assert_eq!(printable(b"a\nb\\c\0"), "a\\nb\\\\c\\u{0}");
        assert_eq!(printable(&[0x66, 0xff]), "f\\xff");
        assert_eq!(hex(b"Hi"), "4869");
    }

    #[test]
    fn every_reply_byte_is_checked() {
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        fill(&mut a, 7);
        fill(&mut b, 8);
        assert_ne!(a, b, "round trips differ");
        assert_eq!(a[..4], 7u32.to_le_bytes());
        check_reply(7, &a, &a).unwrap();
        let e = check_reply(7, &a, &b).unwrap_err();
        assert!(e.to_string().contains("at byte 0"), "{e}");
        let mut c = a;
        c[15] ^= 1;
        let e = check_reply(7, &a, &c).unwrap_err();
        assert!(e.to_string().contains("at byte 15"), "{e}");
        let e = check_reply(7, &a, &a[..15]).unwrap_err();
        assert!(e.to_string().contains("15 bytes for 16"), "{e}");
        assert_eq!(e.code(), 1);
        let mut one = [0u8; 1];
        fill(&mut one, 300);
        assert_eq!(one[0], 300u64.to_le_bytes()[0]);
    }

    #[test]
    fn the_summary_has_the_percentiles() {
        let rtts: Vec<u64> = (1..=100).rev().collect();
        let s = PingSummary::new(rtts, 64, Duration::from_millis(500));
        assert_eq!((s.min_ns, s.p50_ns, s.p99_ns, s.max_ns), (1, 51, 99, 100));
        assert_eq!(s.avg_ns, 50);
        assert!((s.rate() - 200.0).abs() < 1e-9);
        let empty = PingSummary::new(Vec::new(), 64, Duration::ZERO);
        assert_eq!((empty.count, empty.rate()), (0, 0.0));
    }

    #[test]
    fn tables_line_up() {
        let t = table(
            &["A", "BB"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "".into()]],
        );
        assert_eq!(t, "A    BB\nxxx  y\nz\n");
    }
}
