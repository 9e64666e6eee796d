//! `rpmsg echo` (alias `remote`): an echo service; `rpmsg ping`: round trips against it.

use crate::common::{
    Announcements, CliLink, Failure, LinkArgs, RoleArg, bind_by_name, config, describe, ns,
    run_link, say, wait_up,
};
use clap::Args;
use rpmsg::{EndpointConfig, Timeout};
use rpmsg_host::{HostError, PeerStatus, Session, Side};
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
    #[command(flatten)]
    pub(crate) link: LinkArgs,
}

const ECHO: &str = "echo";
const PING: &str = "ping";

/// Serves one session: echoes every message back to its sender until the other side leaves.
pub(crate) fn echo(args: &EchoArgs) -> Result<(), Failure> {
    let side = Side::from(args.role);
    let wait = args.link.wait(None);
    let timeout = args.link.timeout();
    let ns_queue = Announcements::new();
    let session = Session::open(&args.link.options(side, wait))?;
    let _armed = crate::signal::arm();
    say(ECHO, format_args!("{side} side on {}", describe(&session)));
    let link: CliLink<'_> = session.link(config(&session, timeout)?)?;
    link.set_ns_handler(&ns_queue)?;
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
            serve(&session, &ep, timeout)
        },
    );
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

/// Echoes until the peer leaves; returns how many messages.
fn serve(session: &Session, ep: &rpmsg::Endpoint<'_>, timeout: Duration) -> Result<u64, Failure> {
    let mut n = 0u64;
    let mut buf = [0u8; 65536];
    loop {
        // Forever is safe: the service thread shuts the link down when the peer goes.
        let msg = match ep.recv_zero_copy(Timeout::Forever) {
            Ok(m) => m,
            // The peer shut the link down (a driver's reset, or our service thread after the
            // peer closed): the session is over. A dead peer is an error.
            Err(rpmsg::Error::LinkDown) => {
                return match session.peer() {
                    PeerStatus::Died { pid } => Err(HostError::PeerDied {
                        side: session.side().peer(),
                        pid,
                    }
                    .into()),
                    PeerStatus::Closed | PeerStatus::Alive | PeerStatus::Waiting => Ok(n),
                };
            }
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
    }
}

/// Binds the echo service and makes `count` round trips.
pub(crate) fn ping(args: &PingArgs) -> Result<(), Failure> {
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
    let r = run_link(
        &link,
        |link| Ok(link.create_endpoint(EndpointConfig::new().name(&args.service)?.queue(2))?),
        |link, ep| {
            wait_up(&session, link, wait)?;
            let dst = bind_by_name(&session, link, &ep, &ns_queue, &args.service, wait)?;
            say(
                PING,
                format_args!("bound {:?} at remote address {dst}", args.service),
            );
            let mut rtts =
                Vec::with_capacity(usize::try_from(args.count.min(1 << 24)).unwrap_or(0));
            let mut out = vec![0u8; args.size];
            let mut back = vec![0u8; mtu];
            for i in 0..args.count {
                for (k, b) in out.iter_mut().enumerate() {
                    *b = (i as usize).wrapping_add(k) as u8;
                }
                let t0 = Instant::now();
                ep.send_to_timeout(dst, &out, Timeout::After(timeout))
                    .map_err(|e| session.explain(e, timeout))?;
                let (n, _) = ep
                    .recv(&mut back, Timeout::After(timeout))
                    .map_err(|e| session.explain(e, timeout))?;
                let rtt = t0.elapsed();
                if back.get(..n) != Some(&out[..]) {
                    return Err(Failure::msg(format!(
                        "reply {i} differs from what was sent ({n} bytes back for {}); is the peer an echo service?",
                        out.len()
                    )));
                }
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
            Ok(rtts)
        },
    );
    let mut rtts = match r {
        Ok(r) => r,
        Err(e) => {
            session.close();
            return Err(e);
        }
    };
    session.close();
    rtts.sort_unstable();
    if rtts.is_empty() {
        say(PING, format_args!("no round trips made"));
        return Ok(());
    }
    let pct = |p: f64| rtts[((rtts.len() - 1) as f64 * p).round() as usize] as f64;
    let avg = rtts.iter().sum::<u64>() as f64 / rtts.len() as f64;
    say(
        PING,
        format_args!(
            "{} round trips of {} bytes ({} doorbell): min {}, avg {}, p50 {}, p99 {}, max {}",
            rtts.len(),
            args.size,
            session.doorbell(),
            ns(pct(0.0)),
            ns(avg),
            ns(pct(0.5)),
            ns(pct(0.99)),
            ns(pct(1.0)),
        ),
    );
    Ok(())
}
