//! `rpmsg echo` (alias `remote`): an echo service; `rpmsg ping`: round trips against it.

use crate::common::{
    Announcements, CliLink, Failure, LinkArgs, RoleArg, bind_by_name, config, describe, ns,
    quiet_stdout, run_link, say, stats_json, wait_up, with_violations,
};
use clap::Args;
use rpmsg::{EndpointConfig, Timeout};
use rpmsg_host::{HostError, PeerStatus, RingCounts, Session, Sessions, Side};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// `rpmsg echo`.
#[derive(Debug, Clone, Args)]
pub(crate) struct EchoArgs {
    /// Which side of the link this process plays.
    #[arg(long, value_enum, default_value = "device")]
    pub(crate) role: RoleArg,
    /// Name of the service announced through the name service.
    #[arg(long, default_value = "rpmsg-echo")]
    pub(crate) service: String,
    /// At the end, print one JSON object on standard output (messages echoed, the error if
    /// any, the link's counters); the progress lines go to standard error.
    #[arg(long)]
    pub(crate) json: bool,
    /// Sessions of the other side to serve, 0 for no limit. With more than one, the other
    /// side dying, closing or restarting ends a session, not the command: a driver lays the
    /// rings out again for the next device, a device waits for the next driver. Each session
    /// is printed as it ends, and counted in --json.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) sessions: u64,
    #[command(flatten)]
    pub(crate) link: LinkArgs,
}

/// `rpmsg ping`.
#[derive(Debug, Clone, Args)]
pub(crate) struct PingArgs {
    /// Which side of the link this process plays.
    #[arg(long, value_enum, default_value = "driver")]
    pub(crate) role: RoleArg,
    /// Round trips to make.
    #[arg(long, short = 'c', default_value_t = 10)]
    pub(crate) count: u64,
    /// Payload bytes per message.
    #[arg(long, short = 's', default_value_t = 64)]
    pub(crate) size: usize,
    /// Name of the echo service to bind to.
    #[arg(long, default_value = "rpmsg-echo")]
    pub(crate) service: String,
    /// Print every round trip.
    #[arg(long, short = 'v')]
    pub(crate) verbose: bool,
    /// At the end, print one JSON object on standard output (round trips made, the error if
    /// any, the link's counters); the progress lines go to standard error.
    #[arg(long)]
    pub(crate) json: bool,
    /// Messages in flight at a time: send this many, then take their replies (in order).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) window: u16,
    /// When the other side dies, closes or restarts, wait for it to come back (as long as
    /// --wait says; forever without it) and go on with the round trip that was cut off, in a
    /// new session, instead of failing.
    #[arg(long)]
    pub(crate) reconnect: bool,
    #[command(flatten)]
    pub(crate) link: LinkArgs,
}

const ECHO: &str = "echo";
const PING: &str = "ping";

/// Serves one session (or `--sessions`): echoes every message back to its sender until the
/// other side leaves.
pub(crate) fn echo(args: &EchoArgs) -> Result<(), Failure> {
    if args.sessions != 1 {
        return echo_sessions(args);
    }
    if args.json {
        quiet_stdout();
    }
    let side = Side::from(args.role);
    let wait = args.link.wait(None);
    let timeout = args.link.timeout();
    let ns_queue = Announcements::new();
    let session = Session::open(&args.link.options(side, wait))?;
    let _armed = crate::signal::arm();
    say(ECHO, format_args!("{side} side on {}", describe(&session)));
    let link: CliLink<'_> = session.link(config(&session, timeout)?)?;
    link.set_ns_handler(&ns_queue)?;
    let echoed = Cell::new(0u64);
    let served = run_link(
        &link,
        |link| {
            Ok(link.create_endpoint(
                EndpointConfig::new()
                    .name(&args.service)?
                    .announce(true)
                    .queue(session.geometry().buffers),
            )?)
        },
        |link, ep| {
            wait_up(&session, link, wait)?;
            say(
                ECHO,
                format_args!(
                    "serving {:?} at address {} (payload up to {} bytes)",
                    args.service,
                    ep.addr(),
                    link.mtu()
                ),
            );
            serve(&session, &ep, timeout, &echoed)
        },
    );
    let stats = link.stats();
    let served = served.map_err(|e| with_violations(e, &stats));
    if args.json {
        report_json(ECHO, side, "messages", echoed.get(), &served, &stats);
    }
    let served = match served {
        Ok(n) => n,
        Err(e) => {
            session.close();
            return Err(e);
        }
    };
    say(
        ECHO,
        format_args!(
            "the {} side closed the session; echoed {served} messages",
            side.peer()
        ),
    );
    if served == 0 {
        say(
            ECHO,
            format_args!(
                "nothing arrived: if the other side sent, the two sides' geometry likely differs \
                 (--vring-size, --align, --buffers, --buffer-size must match RPMsg-Lite's \
                 VRING_SIZE, VRING_ALIGN, RL_BUFFER_COUNT, RL_BUFFER_PAYLOAD_SIZE + 16)"
            ),
        );
    }
    session.close();
    Ok(())
}

/// Prints the JSON object of `--json`: `count` under `what`, the error if any, the counters.
fn report_json<T>(
    command: &str,
    side: Side,
    what: &str,
    count: u64,
    r: &Result<T, Failure>,
    stats: &rpmsg::LinkStats,
) {
    let mut o = serde_json::json!({
        "command": command,
        "side": side.to_string(),
        "ok": r.is_ok(),
        "error": r.as_ref().err().map(ToString::to_string),
        "stats": stats_json(stats),
    });
    o[what] = count.into();
    println!("{o}");
}

/// Echoes until the peer leaves; returns how many messages (also counted in `echoed` as they
/// go, for a report after a failure).
fn serve(
    session: &Session,
    ep: &rpmsg::Endpoint<'_>,
    timeout: Duration,
    echoed: &Cell<u64>,
) -> Result<u64, Failure> {
    let mut n = 0u64;
    let mut buf = [0u8; 65536];
    loop {
        // Forever is safe: the service thread shuts the link down when the peer goes.
        let msg = match ep.recv_zero_copy(Timeout::Forever) {
            Ok(m) => m,
            // The peer shut the link down (a driver's reset, or our service thread after the
            // peer closed): the session is over. A dead peer is an error.
            Err(rpmsg::Error::LinkDown) => return link_went_down(session, timeout, n),
            Err(e) => return Err(session.explain(e, timeout).into()),
        };
        let len = msg.len().min(buf.len());
        let src = msg.src();
        msg.read(0, &mut buf[..len])?;
        drop(msg);
        // Zero-copy send: fill a buffer in shared memory, then hand it over.
        let mut tx = ep
            .alloc_tx(Timeout::After(timeout))
            .map_err(|e| session.explain(e, timeout))?;
        tx.write(0, &buf[..len])?;
        tx.send_to(src, len)
            .map_err(|e| Failure::from(session.explain(e.error, timeout)))?;
        n += 1;
        echoed.set(n);
    }
}

/// Echo's link went down after `n` messages: the end of the session if the peer closed its
/// session (it shuts the link down first, then closes: allowed up to `timeout`) or we were
/// interrupted; an error naming the cause otherwise. A device cannot tell a driver's reset from
/// a status byte overwritten in shared memory, but a driver that resets without closing its
/// session is not one of ours.
fn link_went_down(session: &Session, timeout: Duration, n: u64) -> Result<u64, Failure> {
    let start = Instant::now();
    loop {
        if crate::signal::received().is_some() {
            return Ok(n);
        }
        match session.peer() {
            PeerStatus::Died { pid } => {
                return Err(HostError::PeerDied {
                    side: session.side().peer(),
                    pid,
                }
                .into());
            }
            PeerStatus::Closed => return Ok(n),
            PeerStatus::Alive | PeerStatus::Waiting if start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(1));
            }
            PeerStatus::Alive | PeerStatus::Waiting => {
                return Err(Failure::msg(format!(
                    "the link went down after {n} messages while the {} side is still running and did not close its session within {} ms: it reset the link, or the link's state in shared memory was overwritten",
                    session.side().peer(),
                    timeout.as_millis()
                )));
            }
        }
    }
}

/// Binds the echo service and makes `count` round trips.
pub(crate) fn ping(args: &PingArgs) -> Result<(), Failure> {
    if args.json {
        quiet_stdout();
    }
    if args.reconnect {
        return ping_reconnect(args);
    }
    let side = Side::from(args.role);
    let wait = args.link.wait(Some(5000));
    let timeout = args.link.timeout();
    let ns_queue = Announcements::new();
    let session = Session::open(&args.link.options(side, wait))?;
    let _armed = crate::signal::arm();
    say(PING, format_args!("{side} side on {}", describe(&session)));
    let link: CliLink<'_> = session.link(config(&session, timeout)?)?;
    link.set_ns_handler(&ns_queue)?;
    let mtu = session.geometry().payload();
    if args.size > mtu {
        return Err(Failure::usage(format!(
            "--size {} exceeds the {mtu} payload bytes a buffer holds; use a smaller --size or a larger --buffer-size",
            args.size
        )));
    }
    let made = Cell::new(0u64);
    let r = run_link(
        &link,
        |link| {
            Ok(link.create_endpoint(
                EndpointConfig::new()
                    .name(&args.service)?
                    .queue(args.window.max(2)),
            )?)
        },
        |link, ep| {
            wait_up(&session, link, wait)?;
            let dst = bind_by_name(&session, link, &ep, &ns_queue, &args.service, wait)?;
            say(
                PING,
                format_args!("bound {:?} at remote address {dst}", args.service),
            );
            let mut rtts =
                Vec::with_capacity(usize::try_from(args.count.min(1 << 24)).unwrap_or(0));
            round_trips(&session, &ep, dst, args, 1, &made, &mut rtts)?;
            Ok(rtts)
        },
    );
    let stats = link.stats();
    let r = r.map_err(|e| with_violations(e, &stats));
    if args.json {
        report_json(PING, side, "round_trips", made.get(), &r, &stats);
    }
    let rtts = match r {
        Ok(r) => r,
        Err(e) => {
            session.close();
            return Err(e);
        }
    };
    session.close();
    summary(rtts, args.size, &session);
    Ok(())
}

/// Prints ping's latency summary.
fn summary(mut rtts: Vec<u64>, size: usize, session: &Session) {
    rtts.sort_unstable();
    if rtts.is_empty() {
        say(PING, format_args!("no round trips made"));
        return;
    }
    let pct = |p: f64| rtts[((rtts.len() - 1) as f64 * p).round() as usize] as f64;
    let avg = rtts.iter().sum::<u64>() as f64 / rtts.len() as f64;
    say(
        PING,
        format_args!(
            "{} round trips of {} bytes ({} doorbell): min {}, avg {}, p50 {}, p99 {}, max {}",
            rtts.len(),
            size,
            session.doorbell(),
            ns(pct(0.0)),
            ns(avg),
            ns(pct(0.5)),
            ns(pct(0.99)),
            ns(pct(1.0)),
        ),
    );
}

/// Makes ping's round trips from `made` up to `--count`, `--window` messages in flight at a
/// time, checking every reply (in order) against what was sent; `made` counts the checked
/// replies as they come, `rtts` gets each message's time from its send to its reply.
fn round_trips(
    session: &Session,
    ep: &rpmsg::Endpoint<'_>,
    dst: u32,
    args: &PingArgs,
    stamp: u32,
    made: &Cell<u64>,
    rtts: &mut Vec<u64>,
) -> Result<(), Failure> {
    let timeout = args.link.timeout();
    let window = u64::from(args.window.max(1));
    let mut out = vec![0u8; args.size];
    let mut back = vec![0u8; session.geometry().payload()];
    let mut sent_at = Vec::with_capacity(usize::from(args.window.max(1)));
    while made.get() < args.count {
        let first = made.get();
        let batch = window.min(args.count - first);
        sent_at.clear();
        for i in first..first + batch {
            fill_payload(&mut out, i, stamp);
            sent_at.push(Instant::now());
            ep.send_to_timeout(dst, &out, Timeout::After(timeout))
                .map_err(|e| session.explain(e, timeout))?;
        }
        for (i, t0) in (first..first + batch).zip(sent_at.iter()) {
            let (n, _) = ep
                .recv(&mut back, Timeout::After(timeout))
                .map_err(|e| session.explain(e, timeout))?;
            let rtt = t0.elapsed();
            fill_payload(&mut out, i, stamp);
            if back.get(..n) != Some(&out[..]) {
                return Err(Failure::msg(mismatch(i, &out, &back[..n])));
            }
            made.set(i + 1);
            if args.verbose {
                say(
                    PING,
                    format_args!("{} bytes: seq {i} time {}", n, ns(rtt.as_nanos() as f64)),
                );
            }
            if rtts.len() < rtts.capacity() {
                rtts.push(rtt.as_nanos() as u64);
            }
        }
    }
    Ok(())
}

/// Round trip `i`'s payload in session `session` of this process: the process id (4 bytes,
/// little-endian) and the session number (4 bytes) first, as far as they fit, then
/// `i + offset` bytes. A reply from another process's run, or from an earlier session of
/// ours, differs from every payload of the current one in its first 8 bytes.
fn fill_payload(out: &mut [u8], i: u64, session: u32) {
    let mut stamp = [0u8; 8];
    stamp[..4].copy_from_slice(&std::process::id().to_le_bytes());
    stamp[4..].copy_from_slice(&session.to_le_bytes());
    for (k, b) in out.iter_mut().enumerate() {
        *b = match stamp.get(k) {
            Some(s) => *s,
            None => (i as usize).wrapping_add(k) as u8,
        };
    }
}

/// The error for reply `i` that is not what was sent: where the two first differ.
fn mismatch(i: u64, sent: &[u8], got: &[u8]) -> String {
    let at = sent
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(sent.len().min(got.len()));
    let detail = match (sent.get(at), got.get(at)) {
        (Some(s), Some(g)) => format!("byte {at} is {g:#04x} instead of {s:#04x}"),
        _ => format!("{} bytes came back for {} sent", got.len(), sent.len()),
    };
    format!(
        "reply {i} differs from what was sent: {detail}; the payload was changed in shared memory, or the peer is not an echo service"
    )
}

/// How one session of a long-running command ended.
struct SessionEnd {
    /// What this session did (messages echoed, round trips made).
    count: u64,
    /// The link's counters at the end.
    stats: rpmsg::LinkStats,
    /// The rings at the end.
    rings: RingCounts,
    /// What became of the other side: `None` when it is still there (the command stopped,
    /// or failed with the peer alive).
    peer: Option<PeerStatus>,
    /// The command's own outcome of the session.
    result: Result<(), Failure>,
}

impl SessionEnd {
    /// The session as a JSON object.
    fn json(&self, number: u64, what: &str) -> serde_json::Value {
        let mut o = serde_json::json!({
            "session": number,
            "end": match self.peer {
                Some(PeerStatus::Died { .. }) => "died",
                Some(PeerStatus::Closed) => "closed",
                _ => "stopped",
            },
            "held": self.stats.held,
            "rings": {
                "at_device_from_driver": self.rings.at_device_from_driver,
                "at_device_to_driver": self.rings.at_device_to_driver,
                "idle": self.rings.is_idle(),
            },
            "stats": stats_json(&self.stats),
        });
        o[what] = self.count.into();
        o
    }

    /// "the driver side died (pid N)" / "the device side closed its session".
    fn describe(&self, side: Side) -> String {
        match self.peer {
            Some(PeerStatus::Died { pid: Some(pid) }) => {
                format!("the {} side died (pid {pid})", side.peer())
            }
            Some(PeerStatus::Died { pid: None }) => format!("the {} side died", side.peer()),
            Some(PeerStatus::Closed) => format!("the {} side closed its session", side.peer()),
            _ => "stopped".to_string(),
        }
    }
}

/// The other side's fate once our link of `session` went down: gone (died or closed) or not.
fn peer_gone(session: &Session) -> Option<PeerStatus> {
    match session.peer() {
        s @ (PeerStatus::Died { .. } | PeerStatus::Closed) => Some(s),
        PeerStatus::Alive | PeerStatus::Waiting => None,
    }
}

/// `rpmsg echo --sessions N`: serves session after session of the other side.
fn echo_sessions(args: &EchoArgs) -> Result<(), Failure> {
    if args.json {
        quiet_stdout();
    }
    let side = Side::from(args.role);
    let wait = args.link.wait(None);
    let timeout = args.link.timeout();
    let stop = || crate::signal::received().is_some();
    let _armed = crate::signal::arm();
    let interrupted = |e: HostError| match (e, crate::signal::received()) {
        (HostError::Interrupted, Some(sig)) => Failure::signal(sig),
        (e, _) => Failure::from(e),
    };
    let mut sessions =
        Sessions::open_until(args.link.options(side, wait), &stop).map_err(interrupted)?;
    let mut total = 0u64;
    let mut log = Vec::new();
    let mut last_stats = rpmsg::LinkStats::default();
    let outcome = loop {
        if let Some(sig) = crate::signal::received() {
            break Err(Failure::signal(sig));
        }
        let number = sessions.number();
        let end = echo_one_session(args, sessions.session(), number, wait, timeout);
        total += end.count;
        last_stats = end.stats;
        log.push(end.json(number, "messages"));
        say(
            ECHO,
            format_args!(
                "session {number} ended: {}; echoed {} messages; held {}, {} of the driver's messages at the device, {} receive buffers posted (idle: 0 and {})",
                end.describe(side),
                end.count,
                end.stats.held,
                end.rings.at_device_from_driver,
                end.rings.at_device_to_driver,
                end.rings.buffers,
            ),
        );
        if let Err(e) = end.result {
            // The other side is still there, or we were stopped: not a restart.
            if end.peer.is_none() {
                break Err(e);
            }
        }
        if args.sessions != 0 && number >= args.sessions {
            break Ok(());
        }
        if let Err(e) = sessions.next(&stop) {
            break Err(interrupted(e));
        }
    };
    if args.json {
        let mut o = serde_json::json!({
            "command": ECHO,
            "side": side.to_string(),
            "ok": outcome.is_ok(),
            "error": outcome.as_ref().err().map(ToString::to_string),
            "messages": total,
            "sessions": log.len(),
            "session_log": log,
            "stats": stats_json(&last_stats),
        });
        o["ring_epochs"] = sessions.session().file().ring_epochs().into();
        println!("{o}");
    }
    say(
        ECHO,
        format_args!(
            "served {} sessions; echoed {total} messages",
            sessions.number()
        ),
    );
    sessions.session().close();
    outcome
}

/// One session of `echo --sessions`.
fn echo_one_session(
    args: &EchoArgs,
    session: &Session,
    number: u64,
    wait: Option<Duration>,
    timeout: Duration,
) -> SessionEnd {
    let echoed = Cell::new(0u64);
    let ns_queue = Announcements::new();
    say(
        ECHO,
        format_args!(
            "session {number}: {} side on {}",
            session.side(),
            describe(session)
        ),
    );
    let link: Result<CliLink<'_>, Failure> =
        config(session, timeout).and_then(|c| session.link(c).map_err(Failure::from));
    let link = match link {
        Ok(l) => l,
        Err(e) => {
            return SessionEnd {
                count: 0,
                stats: rpmsg::LinkStats::default(),
                rings: session.ring_counts(),
                peer: None,
                result: Err(e),
            };
        }
    };
    let served = link
        .set_ns_handler(&ns_queue)
        .map_err(Failure::from)
        .and_then(|()| {
            run_link(
                &link,
                |link| {
                    Ok(link.create_endpoint(
                        EndpointConfig::new()
                            .name(&args.service)?
                            .announce(true)
                            .queue(session.geometry().buffers),
                    )?)
                },
                |link, ep| {
                    wait_up(session, link, wait)?;
                    say(
                        ECHO,
                        format_args!(
                            "session {number}: serving {:?} at address {} (payload up to {} bytes)",
                            args.service,
                            ep.addr(),
                            link.mtu()
                        ),
                    );
                    serve(session, &ep, timeout, &echoed)
                },
            )
        });
    let stats = link.stats();
    drop(link);
    let signalled = crate::signal::received().is_some();
    SessionEnd {
        count: echoed.get(),
        stats,
        rings: session
            .ring_counts_at_end()
            .unwrap_or_else(|| session.ring_counts()),
        peer: if signalled { None } else { peer_gone(session) },
        result: served.map(|_| ()).map_err(|e| with_violations(e, &stats)),
    }
}

/// `rpmsg ping --reconnect`: the round trips go on across sessions of the other side.
fn ping_reconnect(args: &PingArgs) -> Result<(), Failure> {
    let side = Side::from(args.role);
    let wait = args.link.wait(None);
    let stop = || crate::signal::received().is_some();
    let _armed = crate::signal::arm();
    let interrupted = |e: HostError| match (e, crate::signal::received()) {
        (HostError::Interrupted, Some(sig)) => Failure::signal(sig),
        (e, _) => Failure::from(e),
    };
    let mut opts = args.link.options(side, wait);
    // A restarted driver makes a new file: the device waits for it.
    opts.wait_for_file = opts.wait_for_file.or(Some(opts.wait_for_driver));
    let mut sessions = Sessions::open_until(opts, &stop).map_err(interrupted)?;
    let mut made = 0u64;
    let mut rtts = Vec::with_capacity(usize::try_from(args.count.min(1 << 24)).unwrap_or(0));
    let mut log = Vec::new();
    let mut last_stats = rpmsg::LinkStats::default();
    let outcome = loop {
        if let Some(sig) = crate::signal::received() {
            break Err(Failure::signal(sig));
        }
        let number = sessions.number();
        let end = ping_one_session(args, sessions.session(), number, &mut made, &mut rtts);
        last_stats = end.stats;
        log.push(end.json(number, "round_trips"));
        if made >= args.count && end.result.is_ok() {
            break Ok(());
        }
        let what = end.describe(side);
        match (end.result, end.peer) {
            (Err(e), None) => break Err(e),
            _ => say(
                PING,
                format_args!(
                    "session {number} ended after {} round trips: {what}; waiting for the {} side to come back",
                    end.count,
                    side.peer()
                ),
            ),
        }
        if let Err(e) = sessions.next(&stop) {
            break Err(interrupted(e));
        }
    };
    if args.json {
        let o = serde_json::json!({
            "command": PING,
            "side": side.to_string(),
            "ok": outcome.is_ok(),
            "error": outcome.as_ref().err().map(ToString::to_string),
            "round_trips": made,
            "sessions": log.len(),
            "session_log": log,
            "stats": stats_json(&last_stats),
        });
        println!("{o}");
    }
    let session = sessions.session();
    session.close();
    outcome?;
    summary(rtts, args.size, session);
    Ok(())
}

/// One session of `ping --reconnect`: binds the service and makes round trips from `made` on.
fn ping_one_session(
    args: &PingArgs,
    session: &Session,
    number: u64,
    made: &mut u64,
    rtts: &mut Vec<u64>,
) -> SessionEnd {
    let wait = args.link.wait(None);
    let timeout = args.link.timeout();
    let start = *made;
    let ns_queue = Announcements::new();
    say(
        PING,
        format_args!(
            "session {number}: {} side on {}",
            session.side(),
            describe(session)
        ),
    );
    let mtu = session.geometry().payload();
    let fail = |e: Failure| SessionEnd {
        count: 0,
        stats: rpmsg::LinkStats::default(),
        rings: session.ring_counts(),
        peer: None,
        result: Err(e),
    };
    if args.size > mtu {
        return fail(Failure::usage(format!(
            "--size {} exceeds the {mtu} payload bytes a buffer holds; use a smaller --size or a larger --buffer-size",
            args.size
        )));
    }
    let link: CliLink<'_> =
        match config(session, timeout).and_then(|c| session.link(c).map_err(Failure::from)) {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
    let progress = Cell::new(*made);
    let r = link
        .set_ns_handler(&ns_queue)
        .map_err(Failure::from)
        .and_then(|()| {
            run_link(
                &link,
                |link| {
                    Ok(link.create_endpoint(
                        EndpointConfig::new()
                            .name(&args.service)?
                            .queue(args.window.max(2)),
                    )?)
                },
                |link, ep| {
                    wait_up(session, link, wait)?;
                    let dst = bind_by_name(session, link, &ep, &ns_queue, &args.service, wait)?;
                    say(
                        PING,
                        format_args!(
                            "session {number}: bound {:?} at remote address {dst}",
                            args.service
                        ),
                    );
                    let stamp = u32::try_from(number).unwrap_or(u32::MAX);
                    round_trips(session, &ep, dst, args, stamp, &progress, rtts)
                },
            )
        });
    *made = progress.get();
    let stats = link.stats();
    drop(link);
    let signalled = crate::signal::received().is_some();
    SessionEnd {
        count: *made - start,
        stats,
        rings: session
            .ring_counts_at_end()
            .unwrap_or_else(|| session.ring_counts()),
        peer: if signalled { None } else { peer_gone(session) },
        result: r.map_err(|e| with_violations(e, &stats)),
    }
}

#[cfg(test)]
mod tests {
    use super::mismatch;

    #[test]
    fn a_changed_echo_names_the_first_differing_byte_or_the_length() {
        assert_eq!(
            mismatch(3, &[1, 2, 3], &[1, 9, 3]),
            "reply 3 differs from what was sent: byte 1 is 0x09 instead of 0x02; the payload was changed in shared memory, or the peer is not an echo service"
        );
        assert!(mismatch(0, &[1, 2, 3], &[1, 2]).contains("2 bytes came back for 3 sent"));
        assert!(mismatch(0, &[1], &[1, 0]).contains("2 bytes came back for 1 sent"));
    }
}
