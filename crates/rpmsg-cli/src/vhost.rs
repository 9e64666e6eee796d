//! `rpmsg vhost-user`: our device role as a vhost-user back-end, so that the Linux kernel's
//! rpmsg stack (User-Mode Linux with `virtio_uml.device=SOCKET:7`, or any vhost-user front-end)
//! talks to it. It announces echo endpoints (default `rpmsg-raw` and `rpmsg-tty`, which the
//! kernel binds to `/dev/rpmsgN` and `/dev/ttyRPMSGn`) and sends every message back to its
//! source.
//!
//! # Output
//!
//! One line per event on standard output, flushed at once; a test harness may rely on these
//! (the parts in capitals vary):
//!
//! | line | when |
//! |---|---|
//! | `listening on PATH` | the socket listens (start the front-end after this line) |
//! | `connected` | a front-end connected |
//! | `protocol features 0xP` | `SET_PROTOCOL_FEATURES` |
//! | `features 0xF` | `SET_FEATURES` (`0x140000001` from virtio_uml) |
//! | `memory region guest 0xG size 0xS user 0xU offset 0xO` | `SET_MEM_TABLE`, one line per region |
//! | `vring Q num N desc 0xD avail 0xA used 0xU guest 0xG align 0xL` | `SET_VRING_ADDR` |
//! | `vring Q enabled` / `vring Q disabled` | `SET_VRING_ENABLE` |
//! | `serving NAME at ADDR` | an echo endpoint exists (announced at each link-up) |
//! | `link up` | the driver is live (first kick of vring 0) and our device attached |
//! | `ns create NAME ADDR` / `ns destroy NAME ADDR` | an announcement from the kernel (ADDR decimal) |
//! | `rejected: MESSAGE` | a request was refused (acknowledged non-zero) |
//! | `link down: REASON` | the session ended (`vring 1 disabled`, `front-end disconnected`, ...) |
//! | `end: REASON` | serving ended (`front-end disconnected`, `stopped`, `protocol error: ...`) |
//! | `stats sessions=S rx=R tx=T echoed=E dropped=D peer_violations=V protocol_errors=P kicks=K0,K1 calls=C0,C1` | last line |
//!
//! Exit status 0 on an orderly end (the front-end disconnected, or SIGINT/SIGTERM) without
//! protocol errors or peer violations; 1 otherwise; 2 for bad arguments or a socket in use.

use crate::common::Failure;
use clap::Args;
use rpmsg::{Endpoint, EndpointConfig, Error, NsKind, Timeout};
use rpmsg_host::vhost_user::{DeviceOptions, Event, VhostError, VhostLink, VhostUserDevice};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// `rpmsg vhost-user`.
#[derive(Debug, Clone, Args)]
pub(crate) struct VhostArgs {
    /// The UNIX socket to listen on (UML: `virtio_uml.device=PATH:7`). A stale socket file is
    /// replaced.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// Announce an echo endpoint NAME at address ADDR (decimal or 0x hex; default: the next
    /// free address from 1024). Repeatable [default: rpmsg-raw and rpmsg-tty].
    #[arg(long, value_name = "NAME[:ADDR]")]
    announce: Vec<String>,
    /// Offer in-band notifications (VRING_KICK and SLAVE_VRING_CALL messages instead of kick
    /// and call descriptors).
    #[arg(long)]
    inband: bool,
}

/// Prints one line and flushes it.
fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{args}");
    let _ = out.flush();
}

fn parse_announce(s: &str) -> Result<(String, Option<u32>), Failure> {
    let (name, addr) = match s.rsplit_once(':') {
        Some((n, a)) => {
            let a = a.trim();
            let v = if let Some(h) = a.strip_prefix("0x").or_else(|| a.strip_prefix("0X")) {
                u32::from_str_radix(h, 16)
            } else {
                a.parse()
            };
            let v = v.map_err(|_| {
                Failure::usage(format!(
                    "--announce {s}: ADDR must be a number (decimal or 0x hex)"
                ))
            })?;
            (n, Some(v))
        }
        None => (s, None),
    };
    if name.is_empty() || name.len() > 31 {
        return Err(Failure::usage(format!(
            "--announce {s}: NAME must be 1 to 31 bytes"
        )));
    }
    Ok((name.to_string(), addr))
}

fn on_event(e: &Event) {
    match e {
        Event::Connected => line(format_args!("connected")),
        Event::ProtocolFeatures { features } => {
            line(format_args!("protocol features {features:#x}"));
        }
        Event::Features { features } => line(format_args!("features {features:#x}")),
        Event::MemoryTable(regions) => {
            for r in regions {
                line(format_args!("memory region {r}"));
            }
        }
        Event::Vring(v) => line(format_args!("vring {} {v}", v.index)),
        Event::VringEnabled { index, enabled } => line(format_args!(
            "vring {index} {}",
            if *enabled { "enabled" } else { "disabled" }
        )),
        Event::LinkUp => line(format_args!("link up")),
        Event::LinkDown { reason } => line(format_args!("link down: {reason}")),
        Event::Ns(a) => line(format_args!(
            "ns {} {} {}",
            match a.kind {
                NsKind::Create => "create",
                NsKind::Destroy => "destroy",
            },
            a.name.as_str().unwrap_or("?"),
            a.addr
        )),
        Event::Rejected { message } => line(format_args!("rejected: {message}")),
        _ => {}
    }
}

/// Echoes on `ep` until the link is down for good.
fn echo_loop(link: &VhostLink<'_>, ep: &Endpoint<'_>, echoed: &AtomicU64) {
    let mut buf = [0u8; 512];
    loop {
        match ep.recv(&mut buf, Timeout::Forever) {
            Ok((n, src)) => {
                if ep.send_to(src, &buf[..n]).is_ok() {
                    echoed.fetch_add(1, Ordering::Relaxed);
                }
            }
            // The session ended: wait for the next, or the end (shut down: LinkDown again).
            Err(Error::LinkDown) => {
                if link.wait_link_up(Timeout::Forever).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Serves one front-end with echo endpoints.
pub(crate) fn vhost_user(args: &VhostArgs) -> Result<(), Failure> {
    let services = if args.announce.is_empty() {
        vec![
            ("rpmsg-raw".to_string(), None),
            ("rpmsg-tty".to_string(), None),
        ]
    } else {
        args.announce
            .iter()
            .map(|s| parse_announce(s))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut opts = DeviceOptions::new(&args.socket).on_event(on_event);
    opts.inband_notifications = args.inband;
    let device = VhostUserDevice::bind(opts).map_err(|e| match e {
        VhostError::InUse { .. } | VhostError::NotASocket { .. } => Failure::usage(e.to_string()),
        e => Failure::msg(e.to_string()),
    })?;
    let stop = device.stop_handle();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let signal_handle = signals.handle();
    // The first signal stops the device cleanly; a second one exits at once.
    let armed = crate::signal::arm();
    let watcher = std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            line(format_args!("signal {sig}: stopping"));
            stop.stop();
        }
    });
    line(format_args!("listening on {}", args.socket.display()));
    let echoed = AtomicU64::new(0);
    let served = device.serve(|link| -> Result<(), Failure> {
        let mut eps = Vec::new();
        for (name, addr) in &services {
            let mut cfg = EndpointConfig::new().name(name)?.announce(true).queue(64);
            if let Some(a) = addr {
                cfg = cfg.addr(*a);
            }
            let ep = match link.create_endpoint(cfg) {
                Ok(ep) => ep,
                // The connection ended before we got here: the report says why.
                Err(Error::LinkDown) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            line(format_args!("serving {name} at {}", ep.addr()));
            eps.push(ep);
        }
        std::thread::scope(|s| {
            for ep in &eps {
                let echoed = &echoed;
                s.spawn(move || echo_loop(link, ep, echoed));
            }
        });
        Ok(())
    });
    signal_handle.close();
    let _ = watcher.join();
    drop(armed);
    let served = served.map_err(|e| Failure::msg(e.to_string()))?;
    let r = &served.report;
    line(format_args!("end: {}", r.end));
    let st = r.stats.unwrap_or_default();
    line(format_args!(
        "stats sessions={} rx={} tx={} echoed={} dropped={} peer_violations={} protocol_errors={} kicks={},{} calls={},{}",
        st.sessions,
        st.rx_messages,
        st.tx_messages,
        echoed.load(Ordering::Relaxed),
        st.rx_unknown_dst + st.rx_malformed + st.ns_malformed,
        st.peer_violations,
        r.protocol_errors.len(),
        r.kicks[0],
        r.kicks[1],
        r.calls[0],
        r.calls[1],
    ));
    crate::signal::check_now()?;
    if let Some(Err(e)) = served.app {
        return Err(e);
    }
    if !r.is_clean() {
        let why = match (&r.end, r.protocol_errors.first(), st.last_violation) {
            (e, _, _) if !e.is_orderly() => e.to_string(),
            (_, Some(p), _) => format!("protocol error: {p}"),
            (_, None, Some(v)) => format!("peer violation: {v:?}"),
            _ => "unclean end".to_string(),
        };
        return Err(Failure::msg(why));
    }
    Ok(())
}
