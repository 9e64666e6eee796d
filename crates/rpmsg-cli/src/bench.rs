//! `rpmsg bench`: round-trip latency and one-way flood throughput between two processes, for
//! several payload sizes and doorbell modes, each figure also given as a ratio to a baseline
//! measured in the same run over the same kind of shared-memory file:
//!
//! * latency against a raw ping-pong of one cache line (one atomic `u64` each way, both sides
//!   busy-polling), percentile by percentile;
//! * throughput against a raw single-producer ring that `memcpy`s slots of the same size
//!   through the buffer pool of the same layout.
//!
//! The host (driver) side runs here, pinned to one CPU; each case's peer (device side) is a
//! second process of this binary (`rpmsg bench-peer`), pinned to another.

use crate::common::{
    Announcements, CliLink, DoorbellArg, Failure, LayoutArg, bind_by_name, config, ns, run_link,
    wait_up,
};
use crate::demo::{ChildGuard, remove_stale_socket};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rpmsg::{EndpointConfig, Timeout};
use rpmsg_host::{
    DoorbellMode, Geometry, GeometrySpec, RawPingPong, RawRing, Session, SessionOptions,
    SharedFile, Side,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `rpmsg bench`.
#[derive(Debug, Clone, Args)]
pub(crate) struct BenchArgs {
    /// Doorbell modes to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "busy-poll,futex,socket"
    )]
    pub(crate) modes: Vec<DoorbellArg>,
    /// Payload sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "16,64,256,496")]
    pub(crate) sizes: Vec<usize>,
    /// Milliseconds of each latency case.
    #[arg(long, default_value_t = 400, value_name = "MS")]
    pub(crate) latency_ms: u64,
    /// Milliseconds of each throughput case.
    #[arg(long, default_value_t = 250, value_name = "MS")]
    pub(crate) flood_ms: u64,
    /// Layout of the shared memory.
    #[arg(long, value_enum, default_value = "lite")]
    pub(crate) layout: LayoutArg,
    /// Buffers per direction (also the raw ring's slots).
    #[arg(long, default_value_t = 64)]
    pub(crate) buffers: u16,
    /// Bytes per buffer, the 16-byte header included.
    #[arg(long, default_value_t = 512)]
    pub(crate) buffer_size: u32,
    /// Vring alignment.
    #[arg(long, default_value_t = 0x10)]
    pub(crate) align: u32,
    /// Print the results as JSON on standard output instead of tables.
    #[arg(long)]
    pub(crate) json: bool,
    /// Draw the latency histogram of each mode (smallest size) into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<PathBuf>,
    /// Do not pin the two processes to two CPUs.
    #[arg(long)]
    pub(crate) no_pin: bool,
    /// Measure even when both processes can only run on one CPU (then no goal is judged:
    /// the figures measure the scheduler's time slices, not the link).
    #[arg(long)]
    pub(crate) shared_cpu: bool,
    /// Directory of the doorbell sockets.
    #[arg(long, default_value = "/tmp", value_name = "DIR")]
    pub(crate) sock_dir: PathBuf,
    /// Milliseconds after which a silent peer fails the run.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub(crate) timeout: u64,
    /// Test knob: the peer's sink sleeps this long in each message's callback, which widens
    /// the window in which the flood's flush can overtake the last callbacks.
    #[arg(long, default_value_t = 0, value_name = "US", hide = true)]
    pub(crate) sink_delay_us: u64,
}

/// Which baseline or link the peer serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PeerCase {
    /// Echo the ping-pong word.
    Pingpong,
    /// Consume the raw ring.
    Ring,
    /// Serve the rpmsg bench endpoint.
    Rpmsg,
}

/// `rpmsg bench-peer` (hidden).
#[derive(Debug, Clone, Args)]
pub(crate) struct PeerArgs {
    /// What to serve.
    #[arg(long, value_enum)]
    pub(crate) case: PeerCase,
    /// The shared-memory file.
    #[arg(long)]
    pub(crate) shm: PathBuf,
    /// Directory of the doorbell sockets.
    #[arg(long, default_value = "/tmp")]
    pub(crate) sock_dir: PathBuf,
    /// CPU to pin to.
    #[arg(long)]
    pub(crate) pin: Option<usize>,
    /// Ring: bytes copied out of each slot.
    #[arg(long, default_value_t = 496)]
    pub(crate) size: usize,
    /// Milliseconds of silence after which the peer gives up.
    #[arg(long, default_value_t = 5000)]
    pub(crate) timeout: u64,
    /// Microseconds the sink sleeps in each message's callback (a test knob).
    #[arg(long, default_value_t = 0)]
    pub(crate) sink_delay_us: u64,
}

const SERVICE: &str = "rpmsg-bench";
/// The peer's sink for floods: a callback endpoint (messages are copied out and counted inside
/// the link's poll, RPMsg-Lite's callback mode), so a flood measures the transport rather than
/// a receive queue.
const SINK: &str = "rpmsg-bench-sink";
/// Message tags, in the first payload byte.
const TAG_ECHO: u8 = b'E';
const TAG_SINK: u8 = b'S';
const TAG_FLUSH: u8 = b'F';
const TAG_QUIT: u8 = b'Q';
/// Asks the peer for its doorbell count (answer: 8 bytes, little-endian).
const TAG_STATS: u8 = b'D';

/// Latency percentiles of one case, in nanoseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Latency {
    pub(crate) samples: usize,
    pub(crate) mean_ns: f64,
    pub(crate) p50_ns: f64,
    pub(crate) p99_ns: f64,
    pub(crate) p999_ns: f64,
    pub(crate) max_ns: f64,
}

impl Latency {
    fn of(samples: &mut [u32]) -> Self {
        samples.sort_unstable();
        let n = samples.len().max(1);
        let at = |q: f64| {
            let i = ((n as f64 * q) as usize).min(n - 1);
            f64::from(samples.get(i).copied().unwrap_or(0))
        };
        let sum: u64 = samples.iter().map(|&v| u64::from(v)).sum();
        Self {
            samples: samples.len(),
            mean_ns: sum as f64 / n as f64,
            p50_ns: at(0.5),
            p99_ns: at(0.99),
            p999_ns: at(0.999),
            max_ns: at(1.0),
        }
    }

    fn ratio(&self, base: &Self) -> LatencyRatio {
        let r = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        LatencyRatio {
            p50: r(self.p50_ns, base.p50_ns),
            p99: r(self.p99_ns, base.p99_ns),
            p999: r(self.p999_ns, base.p999_ns),
            max: r(self.max_ns, base.max_ns),
        }
    }
}

/// Each percentile divided by the baseline's.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct LatencyRatio {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

/// Throughput of one flood.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Throughput {
    pub(crate) messages: u64,
    pub(crate) seconds: f64,
    pub(crate) msgs_per_s: f64,
    pub(crate) mb_per_s: f64,
}

/// Each flood is this many timed bursts; the median burst is reported, so a burst that another
/// process preempted does not decide the figure.
const BURSTS: u32 = 5;

impl Throughput {
    /// The burst with the median rate.
    fn median(mut bursts: Vec<Self>) -> Self {
        bursts.sort_by(|a, b| a.msgs_per_s.total_cmp(&b.msgs_per_s));
        bursts.get(bursts.len() / 2).copied().unwrap_or(Self {
            messages: 0,
            seconds: 0.0,
            msgs_per_s: 0.0,
            mb_per_s: 0.0,
        })
    }

    fn of(messages: u64, size: usize, d: Duration) -> Self {
        let s = d.as_secs_f64().max(1e-9);
        Self {
            messages,
            seconds: s,
            msgs_per_s: messages as f64 / s,
            mb_per_s: messages as f64 * size as f64 / s / 1e6,
        }
    }
}

/// One (mode, size) result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Case {
    pub(crate) mode: String,
    pub(crate) size: usize,
    pub(crate) latency: Latency,
    pub(crate) latency_ratio: LatencyRatio,
    pub(crate) throughput: Throughput,
    /// Messages per second divided by the raw ring's at the same size.
    pub(crate) throughput_ratio: f64,
    /// Doorbells rung per message, each side.
    pub(crate) doorbells: Doorbells,
}

/// Doorbells each side rang (every ring attempt: sent, coalesced, or to nobody), per
/// message. A round trip is two messages, one each way.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Doorbells {
    /// Host (driver) doorbells per round trip of the latency case.
    pub(crate) round_trip_host: f64,
    /// Peer (device) doorbells per round trip of the latency case.
    pub(crate) round_trip_peer: f64,
    /// Host doorbells per message of the flood.
    pub(crate) flood_host: f64,
    /// Peer doorbells per message of the flood (returning buffers).
    pub(crate) flood_peer: f64,
}

/// Every ring attempt of a session.
fn rung(session: &Session) -> u64 {
    let d = session.doorbell_stats();
    d.rung + d.coalesced + d.no_peer
}

fn per(n: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

/// The raw ring at one size.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RingBaseline {
    pub(crate) size: usize,
    pub(crate) throughput: Throughput,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) layout: String,
    pub(crate) buffers: u16,
    pub(crate) buffer_size: u32,
    pub(crate) align: u32,
    pub(crate) cpus: Option<[usize; 2]>,
    pub(crate) latency_ms: u64,
    pub(crate) flood_ms: u64,
    pub(crate) baseline_pingpong: Latency,
    pub(crate) baseline_ring: Vec<RingBaseline>,
    pub(crate) cases: Vec<Case>,
    /// The two goals, as measured: 16-byte busy-poll round trip (p50) over the ping-pong's,
    /// and the 496-byte busy-poll flood over the raw ring's.
    pub(crate) goal_rtt16_ratio: Option<f64>,
    pub(crate) goal_flood496_ratio: Option<f64>,
    /// Both processes could run on one CPU only (`--shared-cpu`).
    pub(crate) shared_cpu: bool,
    /// Whether the goals were judged; when not, `goal_note` says why.
    pub(crate) goals_judged: bool,
    pub(crate) goal_note: Option<String>,
}

/// A raw ping-pong of one cache line between two CPUs takes well under a microsecond; one this
/// slow (p50) means the two processes did not run at the same time, and no ratio to it means
/// anything.
const PLAUSIBLE_PINGPONG_P50_NS: f64 = 20_000.0;

/// Latency samples of one mode for the plot.
#[derive(Debug)]
pub(crate) struct PlotSeries {
    pub(crate) label: String,
    pub(crate) samples: Vec<u32>,
}

/// One size of one mode: size, latency, flood, and the latency samples for the plot.
type SizeResult = (usize, Latency, Throughput, Vec<u32>, Doorbells);

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) -> Result<(), Failure> {
    let mut set = rustix_cpuset();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)
        .map_err(|e| Failure::msg(format!("cannot pin to CPU {cpu}: {e}")))
}

fn rustix_cpuset() -> rustix::thread::CpuSet {
    rustix::thread::CpuSet::new()
}

/// The CPUs this process may run on (its peer inherits them).
fn allowed_cpus() -> Vec<usize> {
    rustix::thread::sched_getaffinity(None)
        .map(|set| {
            (0..rustix::thread::CpuSet::MAX_CPU)
                .filter(|&c| set.is_set(c))
                .collect()
        })
        .unwrap_or_default()
}

/// Two CPUs this process may run on.
fn two_cpus() -> Option<[usize; 2]> {
    let set = rustix::thread::sched_getaffinity(None).ok()?;
    let mut it = (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| set.is_set(c));
    Some([it.next()?, it.next()?])
}

struct Bench<'a> {
    args: &'a BenchArgs,
    /// Both processes could run on one CPU only (measured before pinning).
    shared_cpu: bool,
    path: PathBuf,
    geometry: Geometry,
    cpus: Option<[usize; 2]>,
    timeout: Duration,
    bar: ProgressBar,
    /// Reused sample buffer (allocated once).
    samples: Vec<u32>,
}

impl Bench<'_> {
    fn spawn_peer(&self, case: PeerCase, size: usize) -> Result<ChildGuard, Failure> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("bench-peer")
            .arg("--case")
            .arg(match case {
                PeerCase::Pingpong => "pingpong",
                PeerCase::Ring => "ring",
                PeerCase::Rpmsg => "rpmsg",
            })
            .arg("--shm")
            .arg(&self.path)
            .arg("--sock-dir")
            .arg(&self.args.sock_dir)
            .arg("--size")
            .arg(size.to_string())
            .arg("--timeout")
            .arg(self.args.timeout.to_string())
            .arg("--sink-delay-us")
            .arg(self.args.sink_delay_us.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some([_, peer]) = self.cpus {
            cmd.arg("--pin").arg(peer.to_string());
        }
        Ok(ChildGuard(Some(cmd.spawn()?)))
    }

    fn finish_peer(&self, mut peer: ChildGuard, what: &str) -> Result<(), Failure> {
        match peer.wait_timeout(self.timeout) {
            Some(st) if st.success() => Ok(()),
            Some(st) => Err(Failure::msg(format!("the {what} peer failed: {st}"))),
            None => Err(Failure::msg(format!(
                "the {what} peer did not exit within {} ms; it was killed",
                self.timeout.as_millis()
            ))),
        }
    }

    fn raw_file(&self) -> Result<SharedFile, Failure> {
        Ok(SharedFile::create(
            &self.path,
            self.geometry,
            DoorbellMode::BusyPoll,
        )?)
    }

    fn pingpong(&mut self) -> Result<(Latency, Vec<u32>), Failure> {
        self.bar
            .set_message("baseline: raw ping-pong of one cache line");
        let file = self.raw_file()?;
        let pp = RawPingPong::new(&file);
        pp.reset();
        let peer = self.spawn_peer(PeerCase::Pingpong, 0)?;
        let r = (|| {
            pp.wait_ready(self.timeout)?;
            let mut seq = 0u64;
            let warm = Instant::now();
            while warm.elapsed() < Duration::from_millis(50) {
                seq += 1;
                pp.round_trip(seq, self.timeout)?;
            }
            self.samples.clear();
            let end = Instant::now() + Duration::from_millis(self.args.latency_ms);
            while self.samples.len() < self.samples.capacity() {
                seq += 1;
                let t0 = Instant::now();
                pp.round_trip(seq, self.timeout)?;
                let t1 = Instant::now();
                self.samples.push(nanos(t1 - t0));
                if t1 >= end || crate::signal::received().is_some() {
                    break;
                }
            }
            Ok::<_, Failure>(())
        })();
        pp.stop();
        file.remove();
        r?;
        self.finish_peer(peer, "ping-pong")?;
        let plot = self.samples.clone();
        Ok((Latency::of(&mut self.samples), plot))
    }

    fn ring(&mut self, size: usize) -> Result<Throughput, Failure> {
        self.bar
            .set_message(format!("baseline: raw ring of {size}-byte slots"));
        let file = self.raw_file()?;
        let mut ring = RawRing::new(&file)?;
        ring.reset();
        let peer = self.spawn_peer(PeerCase::Ring, size)?;
        let msg = vec![0x5a_u8; size];
        let r = (|| {
            ring.wait_ready(self.timeout)?;
            let warm = Instant::now();
            while warm.elapsed() < Duration::from_millis(30) {
                ring.push(&msg, self.timeout)?;
            }
            ring.drain(self.timeout)?;
            let d = Duration::from_millis(self.args.flood_ms) / BURSTS;
            let mut bursts = Vec::new();
            for _ in 0..BURSTS {
                let t0 = Instant::now();
                let mut n = 0u64;
                loop {
                    for _ in 0..64 {
                        ring.push(&msg, self.timeout)?;
                    }
                    n += 64;
                    if t0.elapsed() >= d || crate::signal::received().is_some() {
                        break;
                    }
                }
                ring.drain(self.timeout)?;
                bursts.push(Throughput::of(n, size, t0.elapsed()));
            }
            Ok::<_, Failure>(Throughput::median(bursts))
        })();
        let stop = ring.drain_and_stop(self.timeout);
        file.remove();
        let t = r?;
        stop?;
        self.finish_peer(peer, "ring")?;
        Ok(t)
    }

    fn rpmsg_mode(&mut self, mode: DoorbellMode) -> Result<Vec<SizeResult>, Failure> {
        let mut opts = SessionOptions::new(&self.path, Side::Driver);
        opts.geometry = GeometrySpec {
            layout: Some(self.geometry.layout),
            buffers: Some(self.geometry.buffers),
            buffer_size: Some(self.geometry.buffer_size),
            align: Some(self.geometry.align),
            vring_size: None,
        };
        opts.doorbell = Some(mode);
        opts.socket_dir.clone_from(&self.args.sock_dir);
        let session = Session::create(&opts)?;
        let peer = self.spawn_peer(PeerCase::Rpmsg, 0)?;
        let link: CliLink<'_> = session.link(config(&session, self.timeout)?)?;
        let timeout = self.timeout;
        let ns_queue = Announcements::new();
        link.set_ns_handler(&ns_queue)?;
        let r = run_link(
            &link,
            |link| {
                Ok((
                    link.create_endpoint(EndpointConfig::new().name(SERVICE)?.queue(4))?,
                    link.create_endpoint(EndpointConfig::new().name(SINK)?.queue(1))?,
                ))
            },
            |link, (ep, sink_ep)| {
                let dst = bind_by_name(&session, link, &ep, &ns_queue, SERVICE, Some(timeout))?;
                let sink = bind_by_name(&session, link, &sink_ep, &ns_queue, SINK, Some(timeout))?;
                let explain = |e| Failure::from(session.explain(e, timeout));
                let t = Timeout::After(timeout);
                let mut out = vec![0u8; session.geometry().payload()];
                let mut back = vec![0u8; session.geometry().payload()];
                let mut results = Vec::new();
                for &size in &self.args.sizes {
                    self.bar
                        .set_message(format!("rpmsg {mode}: {size}-byte round trips"));
                    out[0] = TAG_ECHO;
                    let warm = Instant::now();
                    while warm.elapsed() < Duration::from_millis(30) {
                        ep.send_to_timeout(dst, &out[..size], t).map_err(explain)?;
                        ep.recv(&mut back, t).map_err(explain)?;
                    }
                    let peer_rung = |back: &mut [u8]| -> Result<u64, Failure> {
                        ep.send_to_timeout(dst, &[TAG_STATS], t).map_err(explain)?;
                        let (n, _) = ep.recv(back, t).map_err(explain)?;
                        Ok(back
                            .get(..8)
                            .filter(|_| n == 8)
                            .and_then(|b| b.try_into().ok())
                            .map_or(0, u64::from_le_bytes))
                    };
                    let (p0, h0) = (peer_rung(&mut back)?, rung(&session));
                    self.samples.clear();
                    let end = Instant::now() + Duration::from_millis(self.args.latency_ms);
                    while self.samples.len() < self.samples.capacity() {
                        let t0 = Instant::now();
                        ep.send_to_timeout(dst, &out[..size], t).map_err(explain)?;
                        let (n, _) = ep.recv(&mut back, t).map_err(explain)?;
                        let t1 = Instant::now();
                        if n != size {
                            return Err(Failure::msg(format!(
                                "echo of {size} bytes came back with {n}"
                            )));
                        }
                        self.samples.push(nanos(t1 - t0));
                        if t1 >= end || crate::signal::received().is_some() {
                            break;
                        }
                    }
                    let trips = self.samples.len() as u64;
                    let (p1, h1) = (peer_rung(&mut back)?, rung(&session));
                    let mut p2 = p1;
                    let mut flooded = 0u64;
                    let plot = self.samples.clone();
                    let lat = Latency::of(&mut self.samples);
                    self.bar.inc(1);

                    self.bar
                        .set_message(format!("rpmsg {mode}: {size}-byte flood"));
                    out[0] = TAG_SINK;
                    let d = Duration::from_millis(self.args.flood_ms) / BURSTS;
                    let mut bursts = Vec::new();
                    for _ in 0..BURSTS {
                        let t0 = Instant::now();
                        let mut sent = 0u64;
                        loop {
                            for _ in 0..64 {
                                ep.send_to_timeout(sink, &out[..size], t).map_err(explain)?;
                            }
                            sent += 64;
                            if t0.elapsed() >= d || crate::signal::received().is_some() {
                                break;
                            }
                        }
                        // The flush travels behind the flood and says how many were sent: the
                        // peer answers once its sink has counted that many (or its timeout
                        // passed), so callbacks still running on its other thread are counted.
                        let mut flush = [0u8; 9];
                        flush[0] = TAG_FLUSH;
                        flush[1..].copy_from_slice(&sent.to_le_bytes());
                        ep.send_to_timeout(dst, &flush, t).map_err(explain)?;
                        let (n, _) = ep.recv(&mut back, t).map_err(explain)?;
                        let elapsed = t0.elapsed();
                        let word = |i: usize| {
                            back.get(i..i + 8)
                                .filter(|_| n == 16)
                                .and_then(|b| b.try_into().ok())
                                .map(u64::from_le_bytes)
                        };
                        let got = word(0);
                        p2 = word(8).unwrap_or(p2);
                        flooded += sent;
                        if got != Some(sent) {
                            return Err(Failure::msg(format!(
                                "flood: the peer counted {got:?} messages of the {sent} sent"
                            )));
                        }
                        bursts.push(Throughput::of(sent, size, elapsed));
                    }
                    let h2 = rung(&session);
                    let doorbells = Doorbells {
                        round_trip_host: per(h1 - h0, trips),
                        round_trip_peer: per(p1.saturating_sub(p0), trips),
                        flood_host: per(h2 - h1, flooded),
                        flood_peer: per(p2.saturating_sub(p1), flooded),
                    };
                    results.push((size, lat, Throughput::median(bursts), plot, doorbells));
                    self.bar.inc(1);
                }
                // Wait for the peer's goodbye before our link goes down: a peer that saw the
                // reset before it took the quit message would fail.
                ep.send_to_timeout(dst, &[TAG_QUIT], t).map_err(explain)?;
                ep.recv(&mut back, t).map_err(explain)?;
                Ok(results)
            },
        );
        // After an error the peer still waits for messages: close first, so it sees the session
        // end and exits rather than waiting out its timeout. After success it got the quit
        // message: let it take that before the session ends.
        if r.is_err() {
            session.close();
        }
        let peer_result = self.finish_peer(peer, &format!("rpmsg {mode}"));
        remove_stale_socket(session.socket().peer_path());
        session.close();
        let results = r?;
        peer_result?;
        Ok(results)
    }
}

fn nanos(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

/// Runs the benchmark.
pub(crate) fn bench(args: &BenchArgs) -> Result<(), Failure> {
    let geometry = Geometry {
        layout: args.layout.into(),
        buffers: args.buffers,
        buffer_size: args.buffer_size,
        align: args.align,
        vring_size: 0,
    };
    geometry.validate()?;
    if let Some(&s) = args
        .sizes
        .iter()
        .find(|&&s| s == 0 || s > geometry.payload())
    {
        return Err(Failure::usage(format!(
            "size {s} must be between 1 and the {} payload bytes a buffer holds",
            geometry.payload()
        )));
    }
    if args.modes.is_empty() || args.sizes.is_empty() {
        return Err(Failure::usage("give at least one mode and one size"));
    }
    let allowed = allowed_cpus();
    let shared = allowed.len() < 2;
    let shared_cpu = shared;
    if shared && !args.shared_cpu {
        return Err(Failure::usage(format!(
            "both processes could only run on CPU {} (this process's CPU affinity), so the bench would measure the scheduler's time slices, not the link; run it where two CPUs are free (e.g. not under `taskset -c N`), or pass --shared-cpu to measure anyway without judging the goals",
            allowed
                .first()
                .map_or_else(|| "?".to_string(), ToString::to_string)
        )));
    }
    let cpus = if args.no_pin { None } else { two_cpus() };
    if let Some([host, _]) = cpus {
        pin(host)?;
    }
    let steps = 1 + args.sizes.len() + 2 * args.modes.len() * args.sizes.len();
    let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // At most ~20 M samples of a few hundred nanoseconds: allocated once, before measuring.
    let cap = usize::try_from(args.latency_ms.saturating_mul(20_000)).unwrap_or(usize::MAX);
    let mut b = Bench {
        args,
        shared_cpu,
        path: SessionOptions::shm_path(&format!("rpmsg-bench-{}", std::process::id())),
        geometry,
        cpus,
        timeout: Duration::from_millis(args.timeout),
        bar,
        samples: Vec::with_capacity(cap.min(1 << 25)),
    };
    // From here on a SIGINT or SIGTERM ends the current phase; the file and the peer go.
    let armed = crate::signal::arm();
    let r = run(&mut b);
    b.bar.finish_and_clear();
    let _ = std::fs::remove_file(&b.path);
    drop(armed);
    let (report, series) = crate::signal::check(r)?;
    if let Some(p) = &args.plot {
        crate::plot::histograms(p, &series)
            .map_err(|e| Failure::msg(format!("cannot draw {}: {e}", p.display())))?;
    }
    if args.json {
        let s = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::msg(format!("cannot encode JSON: {e}")))?;
        println!("{s}");
    } else {
        print_report(&report, args.plot.as_deref());
    }
    Ok(())
}

fn run(b: &mut Bench<'_>) -> Result<(Report, Vec<PlotSeries>), Failure> {
    let mut series = Vec::new();
    let (base, plot) = b.pingpong()?;
    series.push(PlotSeries {
        label: "raw ping-pong (baseline)".into(),
        samples: plot,
    });
    b.bar.inc(1);
    let mut rings = Vec::new();
    for &size in &b.args.sizes {
        crate::signal::check_now()?;
        rings.push(RingBaseline {
            size,
            throughput: b.ring(size)?,
        });
        b.bar.inc(1);
    }
    let smallest = b.args.sizes.iter().copied().min().unwrap_or(16);
    let mut cases = Vec::new();
    let modes = b.args.modes.clone();
    for mode in modes {
        crate::signal::check_now()?;
        let mode = DoorbellMode::from(mode);
        for (size, lat, thr, plot, doorbells) in b.rpmsg_mode(mode)? {
            let ring = rings
                .iter()
                .find(|r| r.size == size)
                .map_or(f64::NAN, |r| r.throughput.msgs_per_s);
            if size == smallest {
                series.push(PlotSeries {
                    label: format!("rpmsg {mode}, {size} B"),
                    samples: plot,
                });
            }
            cases.push(Case {
                mode: mode.to_string(),
                size,
                latency: lat,
                latency_ratio: lat.ratio(&base),
                throughput: thr,
                throughput_ratio: thr.msgs_per_s / ring,
                doorbells,
            });
        }
    }
    let busy = |size| {
        cases
            .iter()
            .find(|c| c.mode == DoorbellMode::BusyPoll.as_str() && c.size == size)
    };
    let goal_rtt16_ratio = busy(16).map(|c| c.latency_ratio.p50);
    let goal_flood496_ratio = busy(496).map(|c| c.throughput_ratio);
    let shared_cpu = b.shared_cpu;
    let goal_note = if shared_cpu {
        Some("both processes ran on one CPU (--shared-cpu)".to_string())
    } else if base.p50_ns.is_nan() || base.p50_ns > PLAUSIBLE_PINGPONG_P50_NS {
        Some(format!(
            "the baseline ping-pong took {} (p50), implausibly slow for two CPUs: the processes did not run at the same time",
            ns(base.p50_ns)
        ))
    } else {
        None
    };
    Ok((
        Report {
            layout: b.geometry.layout.to_string(),
            buffers: b.geometry.buffers,
            buffer_size: b.geometry.buffer_size,
            align: b.geometry.align,
            cpus: b.cpus,
            latency_ms: b.args.latency_ms,
            flood_ms: b.args.flood_ms,
            baseline_pingpong: base,
            baseline_ring: rings,
            cases,
            goal_rtt16_ratio,
            goal_flood496_ratio,
            shared_cpu,
            goals_judged: goal_note.is_none(),
            goal_note,
        },
        series,
    ))
}

fn print_report(r: &Report, plot: Option<&Path>) {
    println!(
        "rpmsg bench: {} layout, {} x {} B buffers, vring align {:#x}; {}; {} ms per latency case, {} ms per flood",
        r.layout,
        r.buffers,
        r.buffer_size,
        r.align,
        match (r.cpus, r.shared_cpu) {
            (_, true) =>
                "both processes on ONE CPU (--shared-cpu): figures measure the scheduler".into(),
            (Some([a, b]), false) => format!("host pinned to CPU {a}, peer to CPU {b}"),
            (None, false) => "not pinned".into(),
        },
        r.latency_ms,
        r.flood_ms
    );
    let b = &r.baseline_pingpong;
    println!();
    println!(
        "baseline  raw ping-pong of one cache line: p50 {}  p99 {}  p99.9 {}  max {}  ({} round trips)",
        ns(b.p50_ns),
        ns(b.p99_ns),
        ns(b.p999_ns),
        ns(b.max_ns),
        b.samples
    );
    for ring in &r.baseline_ring {
        println!(
            "baseline  raw ring of {:>3}-byte slots:     {:>6.2} M msg/s  {:>7.1} MB/s",
            ring.size,
            ring.throughput.msgs_per_s / 1e6,
            ring.throughput.mb_per_s
        );
    }
    println!();
    println!("round-trip latency (ratio to the ping-pong's same percentile)");
    println!(
        "{:<10} {:>5}  {:>18} {:>18} {:>18} {:>18}",
        "mode", "bytes", "p50", "p99", "p99.9", "max"
    );
    let cell = |v: f64, ratio: f64| format!("{} ({ratio:.1}x)", ns(v));
    for c in &r.cases {
        println!(
            "{:<10} {:>5}  {:>18} {:>18} {:>18} {:>18}",
            c.mode,
            c.size,
            cell(c.latency.p50_ns, c.latency_ratio.p50),
            cell(c.latency.p99_ns, c.latency_ratio.p99),
            cell(c.latency.p999_ns, c.latency_ratio.p999),
            cell(c.latency.max_ns, c.latency_ratio.max),
        );
    }
    println!();
    println!("one-way flood (ratio to the raw ring at the same size)");
    println!(
        "{:<10} {:>5}  {:>12} {:>10} {:>8}",
        "mode", "bytes", "msg/s", "MB/s", "ratio"
    );
    for c in &r.cases {
        println!(
            "{:<10} {:>5}  {:>10.2} M {:>10.1} {:>7.2}x",
            c.mode,
            c.size,
            c.throughput.msgs_per_s / 1e6,
            c.throughput.mb_per_s,
            c.throughput_ratio
        );
    }
    println!();
    println!("doorbells per message (every ring attempt; a round trip is two messages)");
    println!(
        "{:<10} {:>5}  {:>16} {:>16} {:>14} {:>14}",
        "mode", "bytes", "host/round trip", "peer/round trip", "host/flood msg", "peer/flood msg"
    );
    for c in &r.cases {
        let d = &c.doorbells;
        println!(
            "{:<10} {:>5}  {:>16.3} {:>16.3} {:>14.3} {:>14.3}",
            c.mode, c.size, d.round_trip_host, d.round_trip_peer, d.flood_host, d.flood_peer
        );
    }
    println!();
    if let Some(note) = &r.goal_note {
        println!("WARNING: no goal is judged: {note}");
    }
    let verdict = |met: bool| match (&r.goal_note, met) {
        (Some(_), _) => "not judged",
        (None, true) => "met",
        (None, false) => "missed",
    };
    if let Some(x) = r.goal_rtt16_ratio {
        println!(
            "goal: 16-byte busy-poll round trip within 3x of the ping-pong: {x:.2}x ({})",
            verdict(x <= 3.0)
        );
    }
    if let Some(x) = r.goal_flood496_ratio {
        println!(
            "goal: 496-byte busy-poll flood at least 0.5x the raw ring: {x:.2}x ({})",
            verdict(x >= 0.5)
        );
    }
    if let Some(p) = plot {
        println!("latency histograms drawn in {}", p.display());
    }
}

/// The benchmark's peer process.
pub(crate) fn peer(args: &PeerArgs) -> Result<(), Failure> {
    if let Some(cpu) = args.pin {
        pin(cpu)?;
    }
    let idle = Duration::from_millis(args.timeout);
    match args.case {
        PeerCase::Pingpong => {
            let file = SharedFile::open(&args.shm)?;
            RawPingPong::new(&file).serve(idle)?;
            Ok(())
        }
        PeerCase::Ring => {
            let file = SharedFile::open(&args.shm)?;
            let mut ring = RawRing::new(&file)?;
            let mut buf = vec![0u8; args.size];
            ring.consume(&mut buf, idle)?;
            Ok(())
        }
        PeerCase::Rpmsg => rpmsg_peer(args, idle),
    }
}

/// Counts and copies out every message it gets (the flood's receiving end).
#[derive(Debug, Default)]
struct Sink {
    count: AtomicU64,
    /// Sleep in each callback (a test knob).
    delay: Duration,
}

std::thread_local! {
    static SINK_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl rpmsg::RxHandler for Sink {
    fn on_message(&self, msg: rpmsg::RxBuffer<'_>) {
        SINK_BUF.with(|b| {
            let mut b = b.borrow_mut();
            if b.len() < msg.len() {
                b.resize(msg.len(), 0);
            }
            let _ = msg.read(0, &mut b[..msg.len()]);
            std::hint::black_box(&b);
        });
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        // Release pairs with the flush handler's Acquire: the copy happened before the count.
        self.count.fetch_add(1, Ordering::Release);
    }
}

fn rpmsg_peer(args: &PeerArgs, idle: Duration) -> Result<(), Failure> {
    let sink = Sink {
        count: AtomicU64::new(0),
        delay: Duration::from_micros(args.sink_delay_us),
    };
    let mut opts = SessionOptions::new(&args.shm, Side::Device);
    opts.socket_dir.clone_from(&args.sock_dir);
    opts.wait_for_driver = idle;
    let session = Session::attach(&opts)?;
    let _armed = crate::signal::arm();
    let link: CliLink<'_> = session.link(config(&session, idle)?)?;
    let r = run_link(
        &link,
        |link| {
            link.create_endpoint(
                EndpointConfig::new()
                    .name(SINK)?
                    .announce(true)
                    .callback(&sink),
            )?;
            Ok(link.create_endpoint(
                EndpointConfig::new()
                    .name(SERVICE)?
                    .announce(true)
                    .queue(session.geometry().buffers),
            )?)
        },
        |link, ep| {
            wait_up(&session, link, Some(idle))?;
            let explain = |e| Failure::from(session.explain(e, idle));
            let mut buf = vec![0u8; session.geometry().payload()];
            loop {
                // Forever: the service thread ends the wait if the host goes away.
                let (n, src) = ep.recv(&mut buf, Timeout::Forever).map_err(explain)?;
                match buf.first().copied() {
                    Some(TAG_ECHO) => ep
                        .send_to_timeout(src, &buf[..n], Timeout::After(idle))
                        .map_err(explain)?,
                    Some(TAG_FLUSH) => {
                        // Every message of the flood was taken from the ring before the flush
                        // (one ring, in order), but the sink's callback may still be running on
                        // the service thread: wait for the count to reach what the host sent.
                        let sent = buf
                            .get(1..9)
                            .filter(|_| n == 9)
                            .and_then(|b| b.try_into().ok())
                            .map_or(0, u64::from_le_bytes);
                        let start = Instant::now();
                        while sink.count.load(Ordering::Acquire) < sent && start.elapsed() < idle {
                            link.poll().map_err(explain)?;
                            std::thread::yield_now();
                        }
                        let sunk = sink.count.swap(0, Ordering::AcqRel);
                        let mut reply = [0u8; 16];
                        reply[..8].copy_from_slice(&sunk.to_le_bytes());
                        reply[8..].copy_from_slice(&rung(&session).to_le_bytes());
                        ep.send_to_timeout(src, &reply, Timeout::After(idle))
                            .map_err(explain)?;
                    }
                    Some(TAG_STATS) => ep
                        .send_to_timeout(src, &rung(&session).to_le_bytes(), Timeout::After(idle))
                        .map_err(explain)?,
                    Some(TAG_QUIT) => {
                        ep.send_to_timeout(src, &[TAG_QUIT], Timeout::After(idle))
                            .map_err(explain)?;
                        return Ok(());
                    }
                    _ => {}
                }
            }
        },
    );
    session.close();
    r
}
