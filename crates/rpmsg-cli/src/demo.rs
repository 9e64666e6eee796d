//! `rpmsg demo`: the host (driver) in this process, the remote (device) in a second process of
//! the same binary, over a fresh shared-memory file, walking through what rpmsg does.

use crate::common::{
    Announcements, CliLink, DoorbellArg, Failure, LayoutArg, LinkArgs, config, describe, ns,
    run_link, say, wait_up,
};
use clap::Args;
use rpmsg::{EndpointConfig, NsKind, Timeout};
use rpmsg_host::doorbell::{Probe, probe};
use rpmsg_host::{PeerStatus, Session, SessionOptions, Side};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `rpmsg demo`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DemoArgs {
    /// Layout of the shared memory.
    #[arg(long, value_enum, default_value = "lite")]
    pub(crate) layout: LayoutArg,
    /// How each side rings the other.
    #[arg(long, value_enum, default_value = "socket")]
    pub(crate) doorbell: DoorbellArg,
    /// Buffers per direction (a power of two up to 256).
    #[arg(long, default_value_t = 4)]
    pub(crate) buffers: u16,
    /// Bytes per buffer, the 16-byte header included.
    #[arg(long, default_value_t = 512)]
    pub(crate) buffer_size: u32,
    /// Vring alignment.
    #[arg(long, default_value_t = 0x10)]
    pub(crate) align: u32,
    /// Directory of the doorbell sockets.
    #[arg(long, default_value = "/tmp", value_name = "DIR")]
    pub(crate) sock_dir: PathBuf,
}

const HOST: &str = "host";
const REMOTE: &str = "remote";
const SERVICE: &str = "rpmsg-echo";
const CLIENT: &str = "rpmsg-client";
/// Milliseconds the remote is asked to wait before it answers, and the host's first timeout.
const LATE_MS: u64 = 400;
const SHORT_TIMEOUT_MS: u64 = 250;

/// A child process that is killed and reaped if it is still running when dropped.
#[derive(Debug)]
pub(crate) struct ChildGuard(pub(crate) Option<Child>);

impl ChildGuard {
    /// Waits up to `d` for the child to exit.
    pub(crate) fn wait_timeout(&mut self, d: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        let child = self.0.as_mut()?;
        loop {
            match child.try_wait() {
                Ok(Some(st)) => {
                    self.0 = None;
                    return Some(st);
                }
                Ok(None) if start.elapsed() < d => std::thread::sleep(Duration::from_millis(5)),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The child's process id.
    pub(crate) fn id(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// Removes the socket at `path` if it is a stale one (its process is gone).
pub(crate) fn remove_stale_socket(path: &Path) {
    if let Probe::Refused = probe(path) {
        let _ = std::fs::remove_file(path);
    }
}

/// Runs the demo.
pub(crate) fn demo(args: &DemoArgs) -> Result<(), Failure> {
    let name = format!("rpmsg-demo-{}", std::process::id());
    let path = SessionOptions::shm_path(&name);
    let mut opts = SessionOptions::new(&path, Side::Driver);
    opts.geometry = rpmsg_host::GeometrySpec {
        layout: Some(args.layout.into()),
        buffers: Some(args.buffers),
        buffer_size: Some(args.buffer_size),
        align: Some(args.align),
        vring_size: None,
    };
    opts.doorbell = Some(args.doorbell.into());
    opts.socket_dir.clone_from(&args.sock_dir);
    let timeout = Duration::from_secs(2);
    let ns_queue = Announcements::new();
    let session = Session::create(&opts)?;
    let _armed = crate::signal::arm();
    say(HOST, format_args!("created {}", describe(&session)));

    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .arg("demo-remote")
        .arg("--shm")
        .arg(&path)
        .arg("--sock-dir")
        .arg(&args.sock_dir)
        .stdin(Stdio::null())
        .spawn()?;
    let mut remote = ChildGuard(Some(child));
    say(
        HOST,
        format_args!(
            "started the remote: `rpmsg demo-remote` as pid {}",
            remote.id().unwrap_or(0)
        ),
    );

    let link: CliLink<'_> = session.link(config(&session, timeout)?)?;
    link.set_ns_handler(&ns_queue)?;
    let r = run_link(
        &link,
        |link| {
            Ok(link.create_endpoint(EndpointConfig::new().name(CLIENT)?.announce(true).queue(4))?)
        },
        |link, ep| {
            host_script(&session, link, &ep, &ns_queue, timeout)?;
            say(
                HOST,
                format_args!("shutting down: the link announces DESTROY {CLIENT:?} and goes down"),
            );
            link.shutdown()?;
            Ok(())
        },
    );
    let status = remote.wait_timeout(Duration::from_secs(5));
    let peer_sock = session.socket().peer_path().to_path_buf();
    let sock = session.socket().own_path().to_path_buf();
    drop(remote);
    remove_stale_socket(&peer_sock);
    session.close();
    r?;
    match status {
        Some(st) if st.success() => say(HOST, format_args!("the remote exited with status 0")),
        Some(st) => return Err(Failure::msg(format!("the remote failed: {st}"))),
        None => {
            return Err(Failure::msg(
                "the remote did not exit within 5 s after the shutdown; it was killed",
            ));
        }
    }
    say(
        HOST,
        format_args!(
            "removed {} and the sockets {} and {}; done",
            path.display(),
            sock.display(),
            peer_sock.display()
        ),
    );
    Ok(())
}

fn host_script(
    session: &Session,
    link: &CliLink<'_>,
    ep: &rpmsg::Endpoint<'_>,
    ns_queue: &Announcements,
    timeout: Duration,
) -> Result<(), Failure> {
    let t = Timeout::After(timeout);
    let explain = |e| Failure::from(session.explain(e, timeout));
    say(
        HOST,
        format_args!(
            "link up as the virtio driver: rings laid out, {} receive buffers posted",
            session.geometry().buffers
        ),
    );
    say(
        HOST,
        format_args!(
            "created endpoint {CLIENT:?} at address {} (announced to the remote)",
            ep.addr()
        ),
    );

    // 1. Name service: wait for the remote's announcement and bind to it by name.
    let start = Instant::now();
    let dst = loop {
        link.poll().map_err(explain)?;
        if let Some(a) = ns_queue.pop() {
            if a.kind == NsKind::Create && a.name.as_str() == Some(SERVICE) {
                break a.addr;
            }
        }
        if let PeerStatus::Died { .. } | PeerStatus::Closed = session.peer() {
            return Err(explain(rpmsg::Error::LinkDown));
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(Failure::msg(format!(
                "the remote announced no {SERVICE:?} within 10 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    ep.set_dst(dst)?;
    say(
        HOST,
        format_args!(
            "name service: the remote announced {SERVICE:?} at address {dst}; bound to it by name"
        ),
    );

    // 2. Echo.
    let mut buf = [0u8; 65536];
    for text in ["hello", "from the host", "over shared memory"] {
        let t0 = Instant::now();
        ep.send(text.as_bytes()).map_err(explain)?;
        let (n, src) = ep.recv(&mut buf, t).map_err(explain)?;
        say(
            HOST,
            format_args!(
                "echo: sent {text:?}, got {:?} back from {src} after {}",
                String::from_utf8_lossy(&buf[..n]),
                ns(t0.elapsed().as_nanos() as f64)
            ),
        );
    }

    // 3. Zero-copy send and receive.
    let mut tx = ep.alloc_tx(t).map_err(explain)?;
    let text = b"zero-copy: written straight into shared memory";
    say(
        HOST,
        format_args!(
            "zero-copy send: took a {}-byte tx buffer from the pool, writing in place",
            tx.capacity()
        ),
    );
    tx.write(0, text)?;
    tx.send(text.len()).map_err(|e| explain(e.error))?;
    let msg = ep.recv_zero_copy(t).map_err(explain)?;
    let n = msg.copy_to(&mut buf);
    say(
        HOST,
        format_args!(
            "zero-copy receive: {msg:?} still in shared memory: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
    );
    drop(msg);
    say(
        HOST,
        format_args!("dropped the rx buffer: it went back to the remote"),
    );

    // 4. Blocking receive with a timeout: first nothing comes, then a late message.
    let t0 = Instant::now();
    match ep.recv(&mut buf, Timeout::from_millis(SHORT_TIMEOUT_MS)) {
        Err(rpmsg::Error::Timeout) => say(
            HOST,
            format_args!(
                "blocking recv with a {SHORT_TIMEOUT_MS} ms timeout and nothing sent: timed out after {}, as expected",
                ns(t0.elapsed().as_nanos() as f64)
            ),
        ),
        Err(e) => return Err(explain(e)),
        Ok((n, _)) => {
            return Err(Failure::msg(format!(
                "unexpected message of {n} bytes while expecting a timeout"
            )));
        }
    }
    let cmd = format!("delay {LATE_MS}");
    ep.send(cmd.as_bytes()).map_err(explain)?;
    say(
        HOST,
        format_args!(
            "asked the remote to answer in {LATE_MS} ms; blocking in recv (timeout {} ms)",
            timeout.as_millis()
        ),
    );
    let t0 = Instant::now();
    let (n, _) = ep.recv(&mut buf, t).map_err(explain)?;
    say(
        HOST,
        format_args!(
            "blocking recv returned after {}: {:?}",
            ns(t0.elapsed().as_nanos() as f64),
            String::from_utf8_lossy(&buf[..n])
        ),
    );

    // 5. What the link counted.
    let st = link.stats();
    let db = session.doorbell_stats();
    say(
        HOST,
        format_args!(
            "stats: {} messages sent, {} received, {} announcements, {} dropped; doorbells rung {}, received {}",
            st.tx_messages,
            st.rx_messages,
            st.ns_received,
            st.rx_unknown_dst + st.rx_malformed + st.ns_malformed,
            db.rung,
            db.received
        ),
    );
    Ok(())
}

/// The remote's side of the demo (`rpmsg demo-remote`, hidden): the device role, an echo
/// service that also answers "delay MS" late, reporting what it sees.
pub(crate) fn demo_remote(args: &LinkArgs) -> Result<(), Failure> {
    let wait = args.wait(Some(5000));
    let timeout = args.timeout();
    let ns_queue = Announcements::new();
    let session = Session::open(&args.options(Side::Device, wait))?;
    let _armed = crate::signal::arm();
    say(
        REMOTE,
        format_args!("attached to {}", session.file().path().display()),
    );
    let link: CliLink<'_> = session.link(config(&session, timeout)?)?;
    link.set_ns_handler(&ns_queue)?;
    let r = run_link(
        &link,
        |link| {
            Ok(link.create_endpoint(EndpointConfig::new().name(SERVICE)?.announce(true).queue(4))?)
        },
        |link, ep| {
            wait_up(&session, link, wait)?;
            say(
                REMOTE,
                format_args!("link up as the virtio device (the driver's buffers are there)"),
            );
            say(
                REMOTE,
                format_args!(
                    "created endpoint {SERVICE:?} at address {} and announced it",
                    ep.addr()
                ),
            );
            remote_loop(&session, link, &ep, &ns_queue, timeout)
        },
    );
    session.close();
    r
}

fn remote_loop(
    session: &Session,
    link: &CliLink<'_>,
    ep: &rpmsg::Endpoint<'_>,
    ns_queue: &Announcements,
    timeout: Duration,
) -> Result<(), Failure> {
    let explain = |e| Failure::from(session.explain(e, timeout));
    let mut buf = [0u8; 65536];
    loop {
        while let Some(a) = ns_queue.pop() {
            let name = a.name.as_str().unwrap_or("?");
            match a.kind {
                NsKind::Create => say(
                    REMOTE,
                    format_args!(
                        "name service: the host announced {name:?} at address {}",
                        a.addr
                    ),
                ),
                NsKind::Destroy => {
                    say(
                        REMOTE,
                        format_args!(
                            "name service: the host destroyed {name:?}: it is shutting down, so are we"
                        ),
                    );
                    return Ok(());
                }
            }
        }
        let msg = match ep.recv_zero_copy(Timeout::from_millis(20)) {
            Ok(m) => m,
            Err(rpmsg::Error::Timeout) => {
                if !link.is_up() {
                    say(
                        REMOTE,
                        format_args!("link down: the host reset the device; exiting"),
                    );
                    return Ok(());
                }
                continue;
            }
            // The host reset the device (resource table) or closed the session.
            Err(rpmsg::Error::LinkDown) if !matches!(session.peer(), PeerStatus::Died { .. }) => {
                // The DESTROY may have come just before the reset: say so if it did.
                while let Some(a) = ns_queue.pop() {
                    if a.kind == NsKind::Destroy {
                        say(
                            REMOTE,
                            format_args!(
                                "name service: the host destroyed {:?}",
                                a.name.as_str().unwrap_or("?")
                            ),
                        );
                    }
                }
                say(
                    REMOTE,
                    format_args!("link down: the host shut the link down; exiting"),
                );
                return Ok(());
            }
            Err(e) => return Err(explain(e)),
        };
        let n = msg.copy_to(&mut buf);
        let src = msg.src();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("zero-copy") {
            say(
                REMOTE,
                format_args!("zero-copy receive: {n} bytes read in place from buffer {msg:?}"),
            );
        } else if let Some(ms) = text
            .strip_prefix("delay ")
            .and_then(|s| s.parse::<u64>().ok())
        {
            drop(msg);
            say(REMOTE, format_args!("asked to answer in {ms} ms; sleeping"));
            std::thread::sleep(Duration::from_millis(ms));
            ep.send_to(src, b"late reply from the remote")
                .map_err(explain)?;
            say(REMOTE, format_args!("sent the late reply"));
            continue;
        } else {
            say(REMOTE, format_args!("echo {n} bytes from {src}: {text:?}"));
        }
        drop(msg);
        // Answer with a zero-copy send.
        let mut tx = ep.alloc_tx(Timeout::After(timeout)).map_err(explain)?;
        tx.write(0, &buf[..n])?;
        tx.send_to(src, n).map_err(|e| explain(e.error))?;
    }
}
