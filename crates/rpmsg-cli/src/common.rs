//! What every subcommand shares: the link options, opening a session, running a link with its
//! service thread, binding a service by name, and errors that say what to do.

use clap::{Args, ValueEnum};
use rpmsg::port::CriticalSectionRawMutex;
use rpmsg::{Config, NsQueue};
use rpmsg_host::{
    DoorbellMode, GeometrySpec, HostError, HostLink, LayoutKind, PeerStatus, Service, Session,
    SessionOptions, Side,
};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Descriptors per ring the CLI's links accept (the largest `--buffers`).
pub(crate) const N: usize = 256;
/// Endpoints per link.
pub(crate) const EPTS: usize = 8;
/// The CLI's link type.
pub(crate) type CliLink<'s> = HostLink<'s, N, EPTS>;
/// The CLI's name-service queue.
pub(crate) type Announcements = NsQueue<CriticalSectionRawMutex, 8>;

/// `--role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RoleArg {
    /// The virtio driver (host, master): creates the shared-memory file, owns the buffers.
    Driver,
    /// The virtio device (remote): attaches to the driver's file.
    Device,
}

impl From<RoleArg> for Side {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Driver => Self::Driver,
            RoleArg::Device => Self::Device,
        }
    }
}

/// `--layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LayoutArg {
    /// RPMsg-Lite's static layout: vrings at offset 0, then the buffers.
    Lite,
    /// A remoteproc resource table at offset 0, written by the driver side.
    RscTable,
}

impl From<LayoutArg> for LayoutKind {
    fn from(l: LayoutArg) -> Self {
        match l {
            LayoutArg::Lite => Self::Lite,
            LayoutArg::RscTable => Self::RscTable,
        }
    }
}

/// `--doorbell`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DoorbellArg {
    /// A 4-byte datagram on a UNIX socket per side (the documented default).
    Socket,
    /// A futex word per side in the shared file.
    Futex,
    /// No doorbell: both sides poll (lowest latency, one busy core per side).
    BusyPoll,
}

impl From<DoorbellArg> for DoorbellMode {
    fn from(d: DoorbellArg) -> Self {
        match d {
            DoorbellArg::Socket => Self::Socket,
            DoorbellArg::Futex => Self::Futex,
            DoorbellArg::BusyPoll => Self::BusyPoll,
        }
    }
}

/// `--honour-no-interrupt`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum HonourArg {
    /// The layout's default: honoured with a resource table (Linux, OpenAMP), ignored with
    /// RPMsg-Lite's layout (its master sets the flag and still needs every interrupt).
    #[default]
    Auto,
    /// Leave out the doorbell while the driver sets `VRING_AVAIL_F_NO_INTERRUPT`.
    Yes,
    /// Ring after every returned buffer, whatever the flag says.
    No,
}

impl HonourArg {
    /// The session option: `None` for the layout's default.
    pub(crate) fn choice(self) -> Option<bool> {
        match self {
            Self::Auto => None,
            Self::Yes => Some(true),
            Self::No => Some(false),
        }
    }
}

fn parse_number(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s:?} is not a number (decimal, or hex with 0x)"))
}

/// How to reach the other process: the shared-memory file and the link's shape.
///
/// The driver side creates the file with these settings (defaults: RPMsg-Lite's 2 buffers of
/// 512 bytes, vrings aligned to 0x10, socket doorbell); the device side reads them from the
/// file, and any it is given must match.
#[derive(Debug, Clone, Args)]
pub(crate) struct LinkArgs {
    /// Shared-memory file: a name in /dev/shm, or a path (anything with a '/').
    #[arg(long, default_value = "rpmsg", value_name = "NAME|PATH")]
    pub(crate) shm: String,
    /// Layout of the shared memory [driver default: lite].
    #[arg(long, value_enum)]
    pub(crate) layout: Option<LayoutArg>,
    /// Buffers per direction, a power of two up to 256 [driver default: 2].
    #[arg(long, value_name = "N")]
    pub(crate) buffers: Option<u16>,
    /// Bytes per buffer, the 16-byte header included [driver default: 512].
    #[arg(long, value_name = "BYTES", value_parser = parse_number)]
    pub(crate) buffer_size: Option<u32>,
    /// Vring alignment, a power of two of at least 0x10 [driver default: 0x10].
    #[arg(long, value_name = "BYTES", value_parser = parse_number)]
    pub(crate) align: Option<u32>,
    /// RPMsg-Lite's VRING_SIZE, the fixed slot of each vring (0x8000 on the i.MX ports, with
    /// --align 0x1000) [driver default: 0, computed from --buffers and --align].
    #[arg(long, value_name = "BYTES", value_parser = parse_number)]
    pub(crate) vring_size: Option<u32>,
    /// How each side rings the other [driver default: socket].
    #[arg(long, value_enum)]
    pub(crate) doorbell: Option<DoorbellArg>,
    /// Directory of the doorbell sockets (rpmsg-NAME.driver.sock, rpmsg-NAME.device.sock).
    #[arg(long, default_value = "/tmp", value_name = "DIR")]
    pub(crate) sock_dir: PathBuf,
    /// Milliseconds to wait for each answer before giving up.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub(crate) timeout: u64,
    /// Milliseconds to wait for the other side to come up [default: 5000; echo: forever].
    #[arg(long, value_name = "MS")]
    pub(crate) wait: Option<u64>,
    /// Device side: wait (up to --wait) for the driver to create the file instead of failing.
    #[arg(long)]
    pub(crate) wait_for_file: bool,
    /// Microseconds to spin before sleeping in socket and futex modes.
    #[arg(long, default_value_t = 0, value_name = "US")]
    pub(crate) spin: u64,
    /// Device side: skip the doorbell while the driver sets VRING_AVAIL_F_NO_INTERRUPT
    /// (auto: yes with --layout rsc-table, no with lite, whose master needs it anyway).
    #[arg(long, value_enum, default_value_t = HonourArg::Auto, value_name = "WHEN")]
    pub(crate) honour_no_interrupt: HonourArg,
}

impl LinkArgs {
    /// The per-answer timeout.
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout)
    }

    /// How long to wait for the peer, `default_ms` when not given (`None`: forever).
    pub(crate) fn wait(&self, default_ms: Option<u64>) -> Option<Duration> {
        self.wait.or(default_ms).map(Duration::from_millis)
    }

    /// The file's path.
    pub(crate) fn path(&self) -> PathBuf {
        SessionOptions::shm_path(&self.shm)
    }

    /// Session options for `side`.
    pub(crate) fn options(&self, side: Side, wait: Option<Duration>) -> SessionOptions {
        let mut o = SessionOptions::new(self.path(), side);
        o.geometry = GeometrySpec {
            layout: self.layout.map(Into::into),
            buffers: self.buffers,
            buffer_size: self.buffer_size,
            align: self.align,
            vring_size: self.vring_size,
        };
        o.doorbell = self.doorbell.map(Into::into);
        o.socket_dir.clone_from(&self.sock_dir);
        let forever = Duration::from_secs(365 * 24 * 3600);
        o.wait_for_file = self.wait_for_file.then(|| wait.unwrap_or(forever));
        o.wait_for_driver = wait.unwrap_or(forever);
        o.spin = Duration::from_micros(self.spin);
        o.honour_no_interrupt = self.honour_no_interrupt.choice();
        o
    }
}

/// A failed command: the message (with its causes) and whether it was a usage error.
#[derive(Debug)]
pub(crate) struct Failure {
    /// Usage errors (bad arguments, a missing or wrong file) exit with status 2.
    pub(crate) usage: bool,
    /// Stopped by this signal (SIGINT, SIGTERM) after a clean close: exit with 128 + it.
    pub(crate) signal: Option<i32>,
    error: Box<dyn std::error::Error + Send + Sync>,
}

impl Failure {
    /// A runtime failure with this message.
    pub(crate) fn msg(m: impl Into<String>) -> Self {
        Self {
            usage: false,
            signal: None,
            error: m.into().into(),
        }
    }

    /// A usage error with this message.
    pub(crate) fn usage(m: impl Into<String>) -> Self {
        Self {
            usage: true,
            signal: None,
            error: m.into().into(),
        }
    }

    /// Stopped by signal `sig`, after closing the session cleanly.
    pub(crate) fn signal(sig: i32) -> Self {
        let name = match sig {
            signal_hook::consts::SIGINT => "SIGINT",
            signal_hook::consts::SIGTERM => "SIGTERM",
            _ => "a signal",
        };
        Self {
            usage: false,
            signal: Some(sig),
            error: format!("interrupted by {name}; closed the session cleanly").into(),
        }
    }

    /// Exit status: 128 + the signal, 2 for usage errors, 1 otherwise.
    pub(crate) fn code(&self) -> u8 {
        match self.signal {
            Some(sig) => u8::try_from(128 + sig).unwrap_or(1),
            None if self.usage => 2,
            None => 1,
        }
    }
}

impl fmt::Display for Failure {
    /// The message and every cause, on one line; a cause the text already ends with (an error
    /// that shows its source in its own message, like `rpmsg::Error::PeerViolation`) is not
    /// repeated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.error.to_string();
        let mut src = self.error.source();
        while let Some(s) = src {
            let cause = s.to_string();
            if !text.ends_with(&cause) {
                text.push_str(": ");
                text.push_str(&cause);
            }
            src = s.source();
        }
        f.write_str(&text)
    }
}

impl From<HostError> for Failure {
    fn from(e: HostError) -> Self {
        Self {
            usage: e.is_usage(),
            signal: None,
            error: Box::new(e),
        }
    }
}

impl From<rpmsg::Error> for Failure {
    fn from(e: rpmsg::Error) -> Self {
        HostError::Link(e).into()
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self {
            usage: false,
            signal: None,
            error: Box::new(e),
        }
    }
}

/// Prints `[tag] message` to standard output (to standard error while `--json` owns standard
/// output, see [`quiet_stdout`]).
pub(crate) fn say(tag: &str, msg: fmt::Arguments<'_>) {
    if JSON_OUT.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("[{tag}] {msg}");
    } else {
        println!("[{tag}] {msg}");
    }
}

static JSON_OUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--json`: standard output carries only the JSON object, so [`say`] writes to standard
/// error from now on.
pub(crate) fn quiet_stdout() {
    JSON_OUT.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The link's counters as JSON (`LinkStats`, field by field; the last violation as its
/// message).
pub(crate) fn stats_json(s: &rpmsg::LinkStats) -> serde_json::Value {
    serde_json::json!({
        "tx_messages": s.tx_messages,
        "rx_messages": s.rx_messages,
        "rx_unknown_dst": s.rx_unknown_dst,
        "rx_malformed": s.rx_malformed,
        "ns_malformed": s.ns_malformed,
        "ns_received": s.ns_received,
        "peer_violations": s.peer_violations,
        "backpressure": s.backpressure,
        "held": s.held,
        "sessions": s.sessions,
        "doorbells": s.doorbells,
        "doorbells_suppressed": s.doorbells_suppressed,
        "last_violation": s.last_violation.map(|v| v.to_string()),
    })
}

/// Adds what the link saw of the peer's faults to a failure: a timeout or a closed link after
/// the peer broke the protocol is then reported with the violation that caused it.
pub(crate) fn with_violations(e: Failure, s: &rpmsg::LinkStats) -> Failure {
    match s.last_violation {
        Some(v) if s.peer_violations > 0 && !e.to_string().contains(&v.to_string()) => Failure {
            error: format!(
                "{e} (the peer broke the protocol {} times; the last: {v})",
                s.peer_violations
            )
            .into(),
            ..e
        },
        _ => e,
    }
}

/// Describes the session in one line.
pub(crate) fn describe(session: &Session) -> String {
    let g = session.geometry();
    let slot = if g.vring_size == 0 {
        String::new()
    } else {
        format!(", vring size {:#x}", g.vring_size)
    };
    format!(
        "{} ({} layout, {} x {} B buffers, vring align {:#x}{slot}, {} doorbell)",
        session.file().path().display(),
        g.layout,
        g.buffers,
        g.buffer_size,
        g.align,
        session.doorbell()
    )
}

/// The core configuration the CLI uses: `timeout` for sends.
pub(crate) fn config(session: &Session, timeout: Duration) -> Result<Config, Failure> {
    let mut cfg = session.config()?;
    cfg.send_timeout = timeout;
    Ok(cfg)
}

/// Runs `setup` (create endpoints: before the link starts, so that announcements and
/// messages that come at once find them), starts the link, then runs `body`, with the link's
/// service thread running throughout; shuts the link down and stops the thread afterwards,
/// whatever happened.
///
/// A SIGINT or SIGTERM meanwhile shuts the link down too (every blocked call returns), and the
/// result is [`Failure::signal`]: the caller closes its session and exits with it.
pub(crate) fn run_link<'l, 's, S, R>(
    link: &'l CliLink<'s>,
    setup: impl FnOnce(&'l CliLink<'s>) -> Result<S, Failure>,
    body: impl FnOnce(&'l CliLink<'s>, S) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let watch = crate::signal::Watch::new()?;
    let unwatch = watch.handle();
    let r = std::thread::scope(|scope| {
        let service = Service::spawn(scope, link);
        scope.spawn(move || {
            if watch.wait() {
                let _ = link.shutdown();
                link.platform().session().wake_local();
            }
        });
        let r = setup(link).and_then(|s| {
            link.start()?;
            body(link, s)
        });
        let _ = link.shutdown();
        service.stop();
        unwatch.close();
        r
    });
    crate::signal::check(r)
}

/// Waits up to `wait` (forever: `None`) for the peer's service `name` to be announced, and
/// binds `ep` to it: the link binds an endpoint of the same name by itself; an announcement
/// that came before `ep` existed is in `ns`. Returns the peer's address.
pub(crate) fn bind_by_name(
    session: &Session,
    link: &CliLink<'_>,
    ep: &rpmsg::Endpoint<'_>,
    ns: &Announcements,
    name: &str,
    wait: Option<Duration>,
) -> Result<u32, Failure> {
    let start = Instant::now();
    let expired = || wait.is_some_and(|w| start.elapsed() >= w);
    loop {
        if let Some(dst) = ep.dst()? {
            return Ok(dst);
        }
        while let Some(a) = ns.pop() {
            if a.kind == rpmsg::NsKind::Create && a.name.as_str() == Some(name) {
                ep.set_dst(a.addr)?;
                return Ok(a.addr);
            }
        }
        match session.peer() {
            PeerStatus::Died { pid } => {
                return Err(HostError::PeerDied {
                    side: session.side().peer(),
                    pid,
                }
                .into());
            }
            PeerStatus::Closed => {
                return Err(HostError::PeerClosed {
                    side: session.side().peer(),
                }
                .into());
            }
            PeerStatus::Waiting if expired() => {
                return Err(HostError::PeerNotRunning {
                    side: session.side().peer(),
                    socket: session.socket().peer_path().to_path_buf(),
                }
                .into());
            }
            PeerStatus::Waiting | PeerStatus::Alive => {}
        }
        if expired() {
            return Err(Failure::msg(format!(
                "the {} side is running but announced no {name:?} service within {} ms; start `rpmsg echo` with --service {name}",
                session.side().peer(),
                wait.map_or(0, |w| w.as_millis())
            )));
        }
        if let Err(e) = link.poll() {
            return Err(session.explain(e, Duration::ZERO).into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits up to `wait` for the link to come up.
pub(crate) fn wait_up(
    session: &Session,
    link: &CliLink<'_>,
    wait: Option<Duration>,
) -> Result<(), Failure> {
    let t = wait.map_or(rpmsg::Timeout::Forever, rpmsg::Timeout::After);
    link.wait_link_up(t)
        .map_err(|e| session.explain(e, wait.unwrap_or_default()).into())
}

/// Formats nanoseconds for people.
pub(crate) fn ns(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.2} µs", v / 1e3)
    } else {
        format!("{v:.0} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        link: LinkArgs,
    }

    fn honour(args: &[&str]) -> Option<bool> {
        let cli =
            Cli::try_parse_from(std::iter::once("rpmsg").chain(args.iter().copied())).unwrap();
        cli.link.options(Side::Device, None).honour_no_interrupt
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let v = rpmsg::Violation::IdOutOfRange { id: 9, num: 8 };
        let f = Failure::from(rpmsg::Error::PeerViolation(v));
        assert_eq!(
            f.to_string(),
            "peer protocol violation: descriptor id 9 is out of range for a queue of 8"
        );
    }

    #[test]
    fn item6_honour_no_interrupt_flag() {
        assert_eq!(honour(&[]), None, "auto: the layout's default");
        assert_eq!(honour(&["--honour-no-interrupt", "auto"]), None);
        assert_eq!(honour(&["--honour-no-interrupt", "yes"]), Some(true));
        assert_eq!(honour(&["--honour-no-interrupt=no"]), Some(false));
        assert!(Cli::try_parse_from(["rpmsg", "--honour-no-interrupt", "maybe"]).is_err());
    }
}
