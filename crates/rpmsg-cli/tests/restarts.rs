//! Issue 15, scenario a: the other side killed (`kill -9`) and restarted mid-flood, 100 times,
//! with `rpmsg echo --sessions` surviving in each role; and `rpmsg ping --reconnect` surviving
//! the echo server's restarts.
//!
//! Each cycle: a pinger starts against the survivor and floods it (16 buffers each way, 8
//! messages in flight) until the test has seen a few replies, and is killed with SIGKILL in the
//! middle of the flood; then a second pinger makes 20 round trips the same way and closes its
//! session cleanly. Every reply is checked byte for
//! byte by the pinger, and each pinger stamps its payloads with its process id and session
//! number, so a reply from an earlier session fails it. The survivor reports every session: the
//! clean ones must show exactly 20 messages (nothing of the killed session's traffic delivered
//! in the next), no receive buffer held, and idle rings (nothing of the driver's at the device,
//! every receive buffer posted). No test asserts a duration: the clock is a hang guard and the
//! recovery times are printed as figures.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const RPMSG: &str = env!("CARGO_BIN_EXE_rpmsg");
/// A process or line that takes longer than this is hung: the test fails.
const GUARD: Duration = Duration::from_secs(240);
/// Kill and restart cycles per role.
const CYCLES: u32 = 100;
/// Round trips of each clean pinger.
const CLEAN: u64 = 20;

/// A unique shared-memory name and socket directory for one test.
struct Scratch {
    name: String,
    dir: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("rpmsg-r{}-{n}-{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        Self { name, dir }
    }

    fn shm(&self) -> PathBuf {
        Path::new("/dev/shm").join(&self.name)
    }

    fn cmd(&self, sub: &str, args: &[&str]) -> Command {
        let mut c = Command::new(RPMSG);
        c.arg(sub)
            .arg("--shm")
            .arg(&self.name)
            .arg("--sock-dir")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// `cmd` with standard output and error going to files in the scratch directory.
    fn logged(&self, sub: &str, args: &[&str], tag: &str) -> Command {
        let mut c = self.cmd(sub, args);
        c.stdout(std::fs::File::create(self.dir.join(format!("{tag}.out"))).unwrap())
            .stderr(std::fs::File::create(self.dir.join(format!("{tag}.err"))).unwrap());
        c
    }

    fn read(&self, tag: &str, ext: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{tag}.{ext}"))).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("logs kept in {}", self.dir.display());
        }
        let _ = std::fs::remove_file(self.shm());
    }
}

/// A process whose standard output is read line by line in a thread.
struct Lines {
    child: Child,
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn spawn(mut c: Command) -> Self {
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let (tx, rx) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            child,
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; the time it arrived.
    fn wait_for(&mut self, needle: &str) -> Instant {
        let start = Instant::now();
        while start.elapsed() < GUARD {
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.seen.push(l);
                    if hit {
                        return Instant::now();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.child.kill();
        panic!("no line with {needle:?}; output:\n{}", self.seen.join("\n"));
    }

    /// Waits for a round trip line (`seq N `, ping `-v`) with N at least `min`; returns N. The
    /// pinger runs on while the test reads, so the exact line may be long gone by then.
    fn wait_for_seq(&mut self, min: u64) -> u64 {
        let start = Instant::now();
        while start.elapsed() < GUARD {
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    let seq = l
                        .split("seq ")
                        .nth(1)
                        .and_then(|t| t.split_whitespace().next())
                        .and_then(|n| n.parse::<u64>().ok());
                    self.seen.push(l);
                    if let Some(n) = seq.filter(|n| *n >= min) {
                        return n;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.child.kill();
        panic!(
            "no round trip {min} or later; output:\n{}",
            self.seen.join("\n")
        );
    }

    /// Waits for the process to exit; its status and every line it printed.
    fn finish(mut self, what: &str) -> (std::process::ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if start.elapsed() > GUARD {
                let _ = self.child.kill();
                panic!("{what} hung; output:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // The reader threads end at end-of-file.
        while let Ok(l) = self.rx.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(l);
        }
        (status, self.seen.join("\n"))
    }
}

/// A child process killed when the test is done with it, or fails before that.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` (bounded by the guard).
fn wait_child(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > GUARD {
            let _ = child.kill();
            panic!("{what} hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `cycles` cycles against `rpmsg echo --role SURVIVOR --sessions 2*cycles`: a pinger of the
/// other role killed mid-flood, then a clean pinger of 20 round trips.
fn survivor_outlives_killed_peers(survivor: &str, layout: &str, doorbell: &str, cycles: u32) {
    let s = Scratch::new(survivor);
    let pinger = if survivor == "driver" {
        "device"
    } else {
        "driver"
    };
    let sessions = (2 * cycles).to_string();
    let mut echo_args = vec![
        "--role",
        survivor,
        "--sessions",
        &sessions,
        "--json",
        "--wait-for-file",
    ];
    let mut ping_args = vec!["--role", pinger, "--wait", "120000", "--wait-for-file"];
    // 16 buffers each way, 8 messages in flight: the kill finds messages in both rings.
    if survivor == "driver" {
        echo_args.extend([
            "--layout",
            layout,
            "--buffers",
            "16",
            "--doorbell",
            doorbell,
        ]);
    } else {
        ping_args.extend([
            "--layout",
            layout,
            "--buffers",
            "16",
            "--doorbell",
            doorbell,
        ]);
    }
    ping_args.extend(["--window", "8"]);
    let mut echo = Reaped(s.logged("echo", &echo_args, "echo").spawn().unwrap());
    let mut recovery = Vec::new();
    for cycle in 0..cycles {
        // Mid-flood: killed right after the test saw round trip K (1 to 20) come back.
        let k = 1 + (cycle * 7) % 20;
        let mut args = ping_args.clone();
        args.extend(["-v", "-c", "1000000000"]);
        let mut victim = Lines::spawn(s.cmd("ping", &args));
        victim.wait_for(&format!("seq {k} "));
        victim.child.kill().unwrap();
        let killed_at = Instant::now();
        let _ = victim.finish("killed pinger");
        // The next pinger: its first round trip marks the survivor's recovery.
        let mut args = ping_args.clone();
        let clean = CLEAN.to_string();
        args.extend(["-v", "-c", &clean]);
        let mut next = Lines::spawn(s.cmd("ping", &args));
        let first = next.wait_for("seq 0 ");
        recovery.push(first - killed_at);
        let (status, out) = next.finish("clean pinger");
        assert!(
            status.success() && out.contains(&format!("{CLEAN} round trips of")),
            "cycle {cycle}: the pinger after the kill failed: {status}\n{out}\nsurvivor:\n{}",
            s.read("echo", "err")
        );
    }
    let status = wait_child(&mut echo.0, "echo");
    let err = s.read("echo", "err");
    assert!(status.success(), "survivor {survivor}: {status}\n{err}");
    let json: serde_json::Value = serde_json::from_str(s.read("echo", "out").trim())
        .unwrap_or_else(|e| panic!("survivor's --json: {e}\n{err}"));
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["sessions"], u64::from(2 * cycles), "{json}");
    let log = json["session_log"].as_array().unwrap();
    for (i, sess) in log.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(sess["end"], "died", "session {}: {sess}", i + 1);
            assert!(
                sess["messages"].as_u64() > Some(0),
                "session {}: {sess}",
                i + 1
            );
        } else {
            // The clean session after each kill: nothing of the killed one in it, nothing
            // lost, nothing held, idle rings.
            assert_eq!(sess["end"], "closed", "session {}: {sess}", i + 1);
            assert_eq!(sess["messages"], CLEAN, "session {}: {sess}", i + 1);
            assert_eq!(sess["held"], 0, "session {}: {sess}", i + 1);
            assert_eq!(sess["rings"]["idle"], true, "session {}: {sess}", i + 1);
            assert_eq!(
                sess["stats"]["peer_violations"],
                0,
                "session {}: {sess}",
                i + 1
            );
            assert_eq!(
                sess["stats"]["rx_unknown_dst"],
                0,
                "session {}: {sess}",
                i + 1
            );
        }
    }
    let last = &log[log.len() - 1];
    recovery.sort_unstable();
    eprintln!(
        "FIGURES survivor {survivor} ({layout}, {doorbell} doorbell): {cycles} kill -9 cycles, recovery (kill to the next pinger's first round trip, process start included) p50 {:.1} ms, max {:.1} ms; last session: held {}, rings {}, ring epochs {}",
        percentile(&recovery, 0.5).as_secs_f64() * 1e3,
        percentile(&recovery, 1.0).as_secs_f64() * 1e3,
        last["held"],
        last["rings"],
        json["ring_epochs"],
    );
}

#[test]
fn issue15_echo_driver_outlives_100_killed_devices() {
    survivor_outlives_killed_peers("driver", "lite", "socket", CYCLES);
}

#[test]
fn issue15_echo_device_outlives_100_killed_drivers() {
    survivor_outlives_killed_peers("device", "rsc-table", "socket", CYCLES);
}

/// The other doorbells, fewer cycles: a device killed asleep in `FUTEX_WAIT` leaves its waiter
/// count behind (the driver clears it with the new epoch); busy-poll has no doorbell at all.
#[test]
fn issue15_futex_and_busy_poll_survivors() {
    for doorbell in ["futex", "busy-poll"] {
        survivor_outlives_killed_peers("driver", "rsc-table", doorbell, 10);
        survivor_outlives_killed_peers("device", "lite", doorbell, 10);
    }
}

/// Echo servers killed and restarted under `rpmsg ping --reconnect`, 10 times.
const PING_CYCLES: u64 = 10;
/// Round trips of the pinger: enough that it is still going when the last server is killed,
/// however far it ran on while the test read its output.
const PING_COUNT: u64 = 3000;

/// `rpmsg ping --reconnect --role SURVIVOR` makes all its round trips (8 in flight) while the
/// echo server (the other role) is killed mid-flood and restarted: it resumes in a new session
/// with the first round trip that was cut off, every reply checked.
fn ping_reconnects(survivor: &str, layout: &str) {
    let s = Scratch::new(&format!("ping-{survivor}"));
    let server = if survivor == "driver" {
        "device"
    } else {
        "driver"
    };
    let count = PING_COUNT.to_string();
    let mut ping_args = vec![
        "--role",
        survivor,
        "--reconnect",
        "--json",
        "-v",
        "-c",
        &count,
        "--wait-for-file",
    ];
    let mut echo_args = vec!["--role", server, "--wait-for-file", "--wait", "120000"];
    // 16 buffers each way, 8 messages in flight.
    if survivor == "driver" {
        ping_args.extend(["--layout", layout, "--buffers", "16"]);
    } else {
        echo_args.extend(["--layout", layout, "--buffers", "16"]);
    }
    ping_args.extend(["--window", "8"]);
    let server_cmd = || {
        let mut c = s.cmd("echo", &echo_args);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    let mut ping = Lines::spawn(s.cmd("ping", &ping_args));
    // Kill to the first round trip of the next session, per cycle.
    let mut times = Vec::new();
    let mut echo = Reaped(server_cmd().spawn().unwrap());
    let mut session_start = ping.wait_for_seq(0);
    for cycle in 0..PING_CYCLES {
        ping.wait_for_seq(session_start + 10 + cycle % 7);
        echo.0.kill().unwrap();
        let killed_at = Instant::now();
        let _ = echo.0.wait();
        echo = Reaped(server_cmd().spawn().unwrap());
        ping.wait_for("bound \"rpmsg-echo\"");
        session_start = ping.wait_for_seq(0);
        times.push(Instant::now() - killed_at);
    }
    // The last server lets the pinger finish.
    let (status, out) = ping.finish("ping --reconnect");
    drop(echo);
    assert!(status.success(), "ping --reconnect: {status}\n{out}");
    let json: serde_json::Value = out
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no --json object:\n{out}"));
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["round_trips"], PING_COUNT, "{json}");
    assert_eq!(json["sessions"], PING_CYCLES + 1, "{json}");
    times.sort_unstable();
    eprintln!(
        "FIGURES ping --reconnect as {survivor} ({layout}): {PING_CYCLES} echo servers killed, recovery (kill to the first round trip of the next session, server start included) p50 {:.1} ms, max {:.1} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 1.0).as_secs_f64() * 1e3,
    );
}

#[test]
fn issue15_ping_driver_reconnects_to_restarted_echo_devices() {
    ping_reconnects("driver", "rsc-table");
}

#[test]
fn issue15_ping_device_reconnects_to_restarted_echo_drivers() {
    ping_reconnects("device", "lite");
}

/// A long-running echo stopped by a signal while it waits for the next session: exits 128 + the
/// signal, prints its JSON (every session so far), and leaves no file or socket behind.
#[test]
fn issue15_signal_between_sessions_ends_cleanly() {
    for (survivor, pinger, sig, code) in [
        ("driver", "device", "TERM", 143),
        ("device", "driver", "INT", 130),
    ] {
        let s = Scratch::new(&format!("sig-{survivor}"));
        let mut echo = Reaped(
            s.logged(
                "echo",
                &[
                    "--role",
                    survivor,
                    "--sessions",
                    "0",
                    "--json",
                    "--wait-for-file",
                ],
                "echo",
            )
            .spawn()
            .unwrap(),
        );
        let mut ping = s.cmd(
            "ping",
            &[
                "--role",
                pinger,
                "-c",
                "5",
                "--wait-for-file",
                "--wait",
                "120000",
            ],
        );
        ping.stdout(Stdio::null()).stderr(Stdio::null());
        let st = ping.status().unwrap();
        assert!(st.success(), "{survivor}: ping {st}");
        // The first session ended; the survivor now waits for the next.
        let start = Instant::now();
        while !s.read("echo", "err").contains("session 1 ended") {
            assert!(
                start.elapsed() < GUARD,
                "no session end:\n{}",
                s.read("echo", "err")
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let signal = if sig == "TERM" {
            rustix::process::Signal::TERM
        } else {
            rustix::process::Signal::INT
        };
        let pid = rustix::process::Pid::from_raw(i32::try_from(echo.0.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
        let st = wait_child(&mut echo.0, "echo");
        let err = s.read("echo", "err");
        assert_eq!(st.code(), Some(code), "{survivor}: {err}");
        let json: serde_json::Value = serde_json::from_str(s.read("echo", "out").trim())
            .unwrap_or_else(|e| panic!("{survivor}: --json: {e}\n{err}"));
        assert_eq!(json["session_log"][0]["end"], "closed", "{json}");
        assert_eq!(json["session_log"][0]["messages"], 5, "{json}");
        assert!(!s.shm().exists(), "{survivor}: the file is left");
        let socks: Vec<_> = std::fs::read_dir(&s.dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "sock"))
            .map(|e| e.path())
            .collect();
        assert!(socks.is_empty(), "{survivor}: sockets left: {socks:?}");
    }
}
