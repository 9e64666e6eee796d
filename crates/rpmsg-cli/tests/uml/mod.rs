//! A harness that boots the real Linux kernel, as User-Mode Linux (UML), for the kernel tests.
//!
//! The kernel is built by `uml/build-kernel.sh` (Debian's linux-source-6.1 with the rpmsg stack
//! and `virtio_uml`); its path comes from `RPMSG_UML_KERNEL`. The guest runs our static `rpmsg`
//! (`RPMSG_GUEST_BIN`) from an initramfs written here: busybox-static from the host, `/bin/rpmsg`
//! and an `/init` shell script made of [`INIT_PROLOGUE`], the test's body and a trailer.
//!
//! Verdict convention: the body ends the run with `pass` or `fail WHY` (shell functions of the
//! prologue), which print `RPMSG-TEST PASS` or `RPMSG-TEST FAIL WHY` and power the guest off.
//! [`Outcome::assert_pass`] checks that, with the whole console log in the failure message.
//!
//! ```ignore
//! let scratch = Scratch::new("echo");
//! let mut backend = HostProcess::spawn(
//!     "vhost-user",
//!     host_rpmsg(&["vhost-user", "--socket"]).arg(scratch.socket()),
//! );
//! backend.wait_for_line("listening on", Duration::from_secs(10)); // UML connects only once
//! let out = Boot::new(&scratch, "check 'ping' rpmsg dev ping /dev/rpmsg0\necho READY-TO-STOP\npass")
//!     .socket(&scratch.socket())
//!     .run_with(|line| {
//!         if line.text.contains("READY-TO-STOP") {
//!             backend.kill();
//!         }
//!     });
//! out.assert_pass();
//! out.assert_kernel_healthy();
//! ```
//!
//! `RPMSG_UML_VERBOSE=1` prints every run's log (with `--nocapture`); `RPMSG_UML_KEEP=1` keeps the
//! scratch directories.
//!
//! UML runs in its own process group, so that all of its host processes (one per guest address
//! space) are killed together: at the overall timeout, a short grace after the verdict, or when
//! the [`Running`] handle is dropped (a panicking test leaves nothing behind).

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// The verdict lines' common prefix.
pub(crate) const VERDICT: &str = "RPMSG-TEST ";
/// Printed by the prologue once `/init` runs (boot time = when this line appears).
pub(crate) const INIT_MARKER: &str = "RPMSG-TEST INIT";

/// How to get the kernel and the guest binary; part of every "not set" failure message.
const HOW_TO: &str = "\
build them as .ci/run does:
    kernel=$(uml/build-kernel.sh | tail -n 1)        # cached after the first build (~4 min)
    rustup target add x86_64-unknown-linux-musl
    CARGO_PROFILE_RELEASE_DEBUG=0 cargo build --release -p rpmsg-cli --target x86_64-unknown-linux-musl
    RPMSG_UML_KERNEL=$kernel RPMSG_GUEST_BIN=$PWD/target/x86_64-unknown-linux-musl/release/rpmsg \\
        cargo test -p rpmsg-cli --test linux_kernel -- --ignored
(TMPDIR must be on a filesystem with room and exec permission: UML maps its memory file there)";

/// Start of every `/init`: mounts, busybox applets, and the verdict helpers.
///
/// Shell functions for the test's body:
/// * `pass`: prints `RPMSG-TEST PASS` and powers off;
/// * `fail WHY...`: prints `RPMSG-TEST FAIL WHY...` and powers off;
/// * `check WHAT CMD...`: runs `CMD`, and `fail`s with `WHAT` and its exit status if it fails.
pub(crate) const INIT_PROLOGUE: &str = r#"#!/bin/busybox sh
# /init of the rpmsg-rs kernel tests (prologue from crates/rpmsg-cli/tests/uml/mod.rs)
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
pass() { echo "RPMSG-TEST PASS"; poweroff -f; }
fail() { echo "RPMSG-TEST FAIL $*"; poweroff -f; }
check() { what=$1; shift; "$@" || fail "$what (exit status $?)"; }
echo "RPMSG-TEST INIT"
# --- the test's body
"#;

/// End of every `/init`: a body that falls through is a failure, not a kernel panic.
const INIT_TRAILER: &str = r#"
# --- end of the test's body
fail "the /init script ended without a verdict"
"#;

/// The UML kernel and the static guest `rpmsg`, from `RPMSG_UML_KERNEL` and `RPMSG_GUEST_BIN`.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    /// The `linux` binary built by `uml/build-kernel.sh`.
    pub(crate) kernel: PathBuf,
    /// A statically linked `rpmsg`, copied to `/bin/rpmsg` in the guest.
    pub(crate) guest_bin: PathBuf,
    /// busybox-static, `/bin/busybox` unless `RPMSG_UML_BUSYBOX` says otherwise.
    pub(crate) busybox: PathBuf,
}

impl Env {
    /// Reads the environment; panics with instructions when something is missing or unusable.
    pub(crate) fn get() -> Self {
        let var = |name: &str, what: &str| -> PathBuf {
            match std::env::var_os(name) {
                Some(v) if !v.is_empty() => PathBuf::from(v),
                _ => panic!("{name} is not set: it must name {what}; {HOW_TO}"),
            }
        };
        let kernel = var(
            "RPMSG_UML_KERNEL",
            "the UML kernel built by uml/build-kernel.sh",
        );
        let guest_bin = var("RPMSG_GUEST_BIN", "a statically linked rpmsg for the guest");
        let busybox = std::env::var_os("RPMSG_UML_BUSYBOX")
            .map_or_else(|| PathBuf::from("/bin/busybox"), PathBuf::from);
        for (name, path) in [
            ("RPMSG_UML_KERNEL", &kernel),
            ("RPMSG_GUEST_BIN", &guest_bin),
        ] {
            assert!(
                path.is_file(),
                "{name}={} is not a file; {HOW_TO}",
                path.display()
            );
        }
        assert!(
            busybox.is_file(),
            "{} not found: install busybox-static (apt-get install busybox-static) or set RPMSG_UML_BUSYBOX",
            busybox.display()
        );
        // A dynamically linked binary would fail in the guest with a bare "not found".
        for (what, path) in [("RPMSG_GUEST_BIN", &guest_bin), ("busybox", &busybox)] {
            assert!(
                is_static_elf(path),
                "{what} {} is not a static executable (it has an ELF interpreter); {HOW_TO}",
                path.display()
            );
        }
        Self {
            kernel,
            guest_bin,
            busybox,
        }
    }
}

/// True for an ELF64 executable without a `PT_INTERP` program header (static or static-pie).
fn is_static_elf(path: &Path) -> bool {
    let Ok(b) = std::fs::read(path) else {
        return false;
    };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        // PT_INTERP = 3
        b.get(o..o + 4).is_some_and(|t| t != 3u32.to_le_bytes())
    })
}

/// The host's `rpmsg` (the binary under test, built by cargo for this test run) with `args`,
/// e.g. to start the vhost-user back-end the guest's kernel connects to.
pub(crate) fn host_rpmsg(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rpmsg"));
    c.args(args);
    c
}

/// A scratch directory for one test: the initramfs, UML's memory file and mconsole dir, sockets.
/// Removed on drop unless `RPMSG_UML_KEEP` is set (then its path is printed).
#[derive(Debug)]
pub(crate) struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// A fresh directory under `RPMSG_UML_TMPDIR`, else `TMPDIR`, else /tmp.
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let base =
            std::env::var_os("RPMSG_UML_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = base.join(format!("rpmsg-uml-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Self { dir }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// `vhost.sock` in the directory: where a back-end should listen.
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("vhost.sock")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("RPMSG_UML_KEEP").is_some() {
            eprintln!("uml: keeping {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// An initramfs in the cpio "newc" format, written here so that device nodes such as
/// `/dev/console` need no root. Paths are relative to `/`; parent directories are added.
#[derive(Debug, Default, Clone)]
pub(crate) struct Initramfs {
    entries: BTreeMap<String, Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

impl Initramfs {
    /// The skeleton every guest needs: the usual directories (busybox `--install -s` needs
    /// usr/bin and usr/sbin to exist) and `/dev/console`, which the kernel opens for `/init`.
    pub(crate) fn skeleton() -> Self {
        let mut fs = Self::default();
        for d in [
            "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "run", "root",
        ] {
            fs.dir(d);
        }
        fs.char_dev("dev/console", 5, 1);
        fs.char_dev("dev/null", 1, 3);
        fs
    }

    /// Adds a directory.
    pub(crate) fn dir(&mut self, path: &str) -> &mut Self {
        self.insert(path, Node::Dir)
    }

    /// Adds a file with `mode` (permission bits, e.g. 0o755).
    pub(crate) fn file(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> &mut Self {
        self.insert(
            path,
            Node::File {
                data: data.into(),
                mode,
            },
        )
    }

    /// Adds a host file (its contents) at `path`.
    pub(crate) fn host_file(&mut self, path: &str, host: &Path, mode: u32) -> &mut Self {
        let data =
            std::fs::read(host).unwrap_or_else(|e| panic!("cannot read {}: {e}", host.display()));
        self.file(path, data, mode)
    }

    /// Adds a symbolic link to `target`.
    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.insert(path, Node::Symlink(target.to_owned()))
    }

    /// Adds a character device node.
    pub(crate) fn char_dev(&mut self, path: &str, major: u32, minor: u32) -> &mut Self {
        self.insert(path, Node::CharDev { major, minor })
    }

    fn insert(&mut self, path: &str, node: Node) -> &mut Self {
        let path = path.trim_matches('/');
        assert!(
            !path.is_empty() && !path.split('/').any(|c| c.is_empty() || c == ".."),
            "bad path {path:?}"
        );
        // Parents first; the archive is written in path order, so they precede their children.
        let mut parent = String::new();
        for comp in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(comp);
            self.entries.entry(parent.clone()).or_insert(Node::Dir);
        }
        self.entries.insert(path.to_owned(), node);
        self
    }

    /// The archive: uncompressed newc, root-owned entries, mtime 0, ending with `TRAILER!!!`.
    pub(crate) fn to_cpio(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (path, node)) in (1u32..).zip(&self.entries) {
            let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match node {
                Node::Dir => (0o040_755, 2, &[], (0, 0)),
                Node::File { data, mode } => (0o100_000 | (mode & 0o7777), 1, data, (0, 0)),
                Node::Symlink(target) => (0o120_777, 1, target.as_bytes(), (0, 0)),
                Node::CharDev { major, minor } => (0o020_600, 1, &[], (*major, *minor)),
            };
            cpio_entry(&mut out, ino, path, mode, nlink, rdev, data);
        }
        cpio_entry(&mut out, 0, "TRAILER!!!", 0, 1, (0, 0), &[]);
        out
    }
}

/// One newc entry: "070701", 13 eight-digit hex fields, the NUL-terminated name and the data,
/// each padded to a multiple of 4 bytes.
fn cpio_entry(
    out: &mut Vec<u8>,
    ino: u32,
    name: &str,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    data: &[u8],
) {
    let len = u32::try_from(data.len()).expect("initramfs file over 4 GiB");
    let namesize = u32::try_from(name.len() + 1).unwrap();
    let mut h = String::from("070701");
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    for f in [
        ino, mode, 0, 0, nlink, 0, len, 0, 0, rdev.0, rdev.1, namesize, 0,
    ] {
        write!(h, "{f:08X}").unwrap();
    }
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// One line of the guest's console (UML's stdout) or of UML's stderr.
#[derive(Debug, Clone)]
pub(crate) struct ConsoleLine {
    /// Time since UML was started.
    pub(crate) at: Duration,
    /// The line, without the line ending.
    pub(crate) text: String,
    /// From UML's stderr (host-side messages) rather than the console.
    pub(crate) stderr: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// UML exited by itself (`poweroff -f`, a panic, a crash).
    Exited,
    /// A verdict was printed but UML had not exited after the grace period: killed.
    KilledAfterVerdict,
    /// The overall timeout passed: killed.
    TimedOut,
    /// [`Running::kill`] was called.
    Killed,
}

/// The test's verdict, from the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// `RPMSG-TEST PASS`
    Pass,
    /// `RPMSG-TEST FAIL why`
    Fail(String),
}

/// One UML boot to set up: the `/init` body, the back-end socket, limits.
#[derive(Debug, Clone)]
pub(crate) struct Boot {
    env: Env,
    scratch: PathBuf,
    body: String,
    socket: Option<PathBuf>,
    kernel_args: Vec<String>,
    files: Initramfs,
    mem: String,
    timeout: Duration,
    grace: Duration,
}

impl Boot {
    /// A boot whose `/init` is [`INIT_PROLOGUE`] + `body` + a trailer that fails the test if the
    /// body falls through. Defaults: no virtio device, 128 MiB, 60 s timeout, 5 s after the verdict.
    pub(crate) fn new(scratch: &Scratch, body: &str) -> Self {
        Self {
            env: Env::get(),
            scratch: scratch.path().to_owned(),
            body: body.to_owned(),
            socket: None,
            kernel_args: Vec::new(),
            files: Initramfs::default(),
            mem: "128M".into(),
            timeout: Duration::from_secs(60),
            grace: Duration::from_secs(5),
        }
    }

    /// Connect `virtio_uml` to the vhost-user back-end at `path` as an rpmsg device (virtio
    /// id 7). The back-end must already listen: the kernel connects once, at boot.
    pub(crate) fn socket(mut self, path: &Path) -> Self {
        let s = path.to_str().expect("socket path not UTF-8");
        // The kernel splits "path:id" at the first ':' and the command line at spaces.
        assert!(
            !s.contains([':', ' ', '\t', '\n']),
            "socket path {s:?} unusable on the kernel command line"
        );
        assert!(
            s.len() < 108,
            "socket path {s:?} too long for sun_path (set RPMSG_UML_TMPDIR shorter)"
        );
        self.socket = Some(path.to_owned());
        self
    }

    /// Extra kernel command line arguments (e.g. `loglevel=8`, `dyndbg=...`).
    pub(crate) fn kernel_arg(mut self, arg: &str) -> Self {
        self.kernel_args.push(arg.to_owned());
        self
    }

    /// An extra file in the initramfs.
    pub(crate) fn file(mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.file(path, data, mode);
        self
    }

    /// Guest memory (`mem=`), e.g. "128M".
    pub(crate) fn mem(mut self, mem: &str) -> Self {
        mem.clone_into(&mut self.mem);
        self
    }

    /// Overall limit, after which all of UML is killed.
    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long UML may take to halt after the verdict line before it is killed.
    pub(crate) fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The complete `/init` script.
    pub(crate) fn init_script(&self) -> String {
        format!("{INIT_PROLOGUE}{}\n{INIT_TRAILER}", self.body)
    }

    /// Writes the initramfs and starts UML; read its console with [`Running::next_line`].
    pub(crate) fn spawn(self) -> Running {
        let mut fs = Initramfs::skeleton();
        fs.host_file("bin/busybox", &self.env.busybox, 0o755);
        fs.host_file("bin/rpmsg", &self.env.guest_bin, 0o755);
        fs.file("init", self.init_script(), 0o755);
        for (path, node) in &self.files.entries {
            fs.insert(path, node.clone());
        }
        let initrd = self.scratch.join("initramfs.cpio");
        std::fs::write(&initrd, fs.to_cpio()).unwrap();
        let tmp = self.scratch.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();

        static N: AtomicU32 = AtomicU32::new(0);
        let umid = format!(
            "rpmsg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut args = vec![
            format!("uml_dir={}", self.scratch.display()),
            format!("umid={umid}"),
            format!("mem={}", self.mem),
            format!("initrd={}", initrd.display()),
            // Console 0 (the kernel's and /init's) on stdout, no other consoles or terminals.
            "con=null".into(),
            "con0=null,fd:1".into(),
            // Kernel timestamps in the log: when did the probe, the channel, the oops happen.
            "printk.time=1".into(),
        ];
        if let Some(sock) = &self.socket {
            args.push(format!("virtio_uml.device={}:7", sock.display()));
        }
        args.extend(self.kernel_args.iter().cloned());

        let mut cmd = Command::new(&self.env.kernel);
        cmd.args(&args)
            // UML's memory file goes to TMPDIR; core files (a kernel panic aborts) to the cwd.
            .env("TMPDIR", &tmp)
            .current_dir(&self.scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: UML forks one host process per guest address space.
            .process_group(0);
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.env.kernel.display()));
        let (tx, rx) = mpsc::channel();
        spawn_reader(child.stdout.take().unwrap(), false, start, tx.clone());
        spawn_reader(child.stderr.take().unwrap(), true, start, tx);
        Running {
            child,
            rx,
            start,
            deadline: start + self.timeout,
            grace: self.grace,
            lines: Vec::new(),
            verdict_seen: false,
            kill_requested: false,
            end: None,
            status: None,
            command: format!("{} {}", self.env.kernel.display(), args.join(" ")),
        }
    }

    /// Boots and waits for the end.
    pub(crate) fn run(self) -> Outcome {
        self.run_with(|_| {})
    }

    /// Boots, calls `on_line` for each console line as it arrives (e.g. to stop the back-end
    /// when the guest prints a marker), and waits for the end.
    pub(crate) fn run_with(self, mut on_line: impl FnMut(&ConsoleLine)) -> Outcome {
        let mut running = self.spawn();
        while let Some(line) = running.next_line() {
            on_line(&line);
        }
        running.finish()
    }
}

/// Sends the lines of `r` to `tx`; a line may be cut at a NUL-free but non-UTF-8 byte.
fn spawn_reader<R: Read + Send + 'static>(
    r: R,
    stderr: bool,
    start: Instant,
    tx: Sender<ConsoleLine>,
) {
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    while buf.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
                        buf.pop();
                    }
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if tx
                        .send(ConsoleLine {
                            at: start.elapsed(),
                            text,
                            stderr,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
}

/// A UML that is running: its console lines, then its [`Outcome`].
#[derive(Debug)]
pub(crate) struct Running {
    child: Child,
    rx: Receiver<ConsoleLine>,
    start: Instant,
    deadline: Instant,
    grace: Duration,
    lines: Vec<ConsoleLine>,
    verdict_seen: bool,
    kill_requested: bool,
    end: Option<End>,
    status: Option<ExitStatus>,
    command: String,
}

impl Running {
    /// The next line of output, waiting for it; `None` once UML has ended (exited by itself,
    /// or was killed at the timeout or after the verdict's grace period).
    pub(crate) fn next_line(&mut self) -> Option<ConsoleLine> {
        const POLL: Duration = Duration::from_millis(20);
        loop {
            if self.end.is_some() {
                // Only what was already written before the end.
                return self.rx.try_recv().ok().map(|l| self.keep(l));
            }
            let now = Instant::now();
            if now >= self.deadline {
                self.stop(if self.kill_requested {
                    End::Killed
                } else if self.verdict_seen {
                    End::KilledAfterVerdict
                } else {
                    End::TimedOut
                });
                continue;
            }
            match self.rx.recv_timeout(POLL.min(self.deadline - now)) {
                Ok(line) => return Some(self.keep(line)),
                Err(RecvTimeoutError::Timeout) => {
                    if self.exited() {
                        self.stop(End::Exited);
                    }
                }
                // Both pipes closed: every UML process is gone or closed them.
                Err(RecvTimeoutError::Disconnected) => {
                    if self.exited() {
                        self.stop(End::Exited);
                    } else {
                        thread::sleep(POLL);
                    }
                }
            }
        }
    }

    fn keep(&mut self, line: ConsoleLine) -> ConsoleLine {
        if !line.stderr
            && line.text.contains(VERDICT)
            && !line.text.contains(INIT_MARKER)
            && !self.verdict_seen
        {
            self.verdict_seen = true;
            self.deadline = self.deadline.min(Instant::now() + self.grace);
        }
        self.lines.push(line.clone());
        line
    }

    /// Has the main UML process exited? Looks at /proc without reaping it, so that its pid
    /// (= the process group id) cannot be reused before the group is killed.
    fn exited(&self) -> bool {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // "pid (comm) S ...": the state follows the last ')'.
        stat.rsplit_once(')').is_none_or(|(_, rest)| {
            matches!(rest.trim_start().chars().next(), Some('Z' | 'X') | None)
        })
    }

    /// Kills the whole process group (UML's helpers too, and the leader if still running),
    /// then reaps the leader.
    fn stop(&mut self, end: End) {
        kill_group(&mut self.child);
        self.status = Some(self.child.wait().expect("wait for UML"));
        self.end = Some(end);
        // Give the reader threads a moment to pass on what was written before the end.
        let until = Instant::now() + Duration::from_millis(200);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.keep(line);
                }
                Err(_) => break,
            }
        }
    }

    /// Waits for the end (reading the rest of the output) and returns the outcome.
    pub(crate) fn finish(mut self) -> Outcome {
        while self.next_line().is_some() {}
        let out = Outcome {
            lines: std::mem::take(&mut self.lines),
            end: self.end.expect("ended"),
            status: self.status.expect("reaped"),
            elapsed: self.start.elapsed(),
            command: std::mem::take(&mut self.command),
        };
        if std::env::var_os("RPMSG_UML_VERBOSE").is_some() {
            eprintln!(
                "--- UML ({:?}, {}): {}\n{}",
                out.end,
                out.status,
                out.command,
                out.log()
            );
        }
        out
    }

    /// Time since UML was started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Kills UML at the next [`Running::next_line`] (the run then ends as [`End::Killed`]).
    pub(crate) fn kill(&mut self) {
        self.kill_requested = true;
        self.deadline = Instant::now();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.end.is_none() {
            kill_group(&mut self.child);
            let _ = self.child.wait();
        }
    }
}

/// SIGKILL to every process of `child`'s process group (it leads one: `process_group(0)`),
/// through the shell's `kill` (no `unsafe` here; dash's `kill` takes no `--`), and to `child`
/// itself should that fail, so that a following `wait()` cannot hang. Call it before reaping
/// `child`: until then its pid, the group id, cannot be reused.
fn kill_group(child: &mut Child) {
    let _ = Command::new("sh")
        .args(["-c", "kill -9 \"-$1\"", "sh", &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
}

/// What a UML run produced.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Console and stderr lines, in arrival order.
    pub(crate) lines: Vec<ConsoleLine>,
    /// How it ended.
    pub(crate) end: End,
    /// UML's exit status (a signal when it was killed).
    pub(crate) status: ExitStatus,
    /// Start to end.
    pub(crate) elapsed: Duration,
    /// The command line, for failure messages.
    pub(crate) command: String,
}

impl Outcome {
    /// The whole output, one line each, stderr lines marked, with arrival times.
    pub(crate) fn log(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            let tag = if l.stderr { " stderr|" } else { "" };
            writeln!(s, "[{:7.3}]{tag} {}", l.at.as_secs_f64(), l.text).unwrap();
        }
        s
    }

    /// The first verdict line's verdict, if any.
    pub(crate) fn verdict(&self) -> Option<Verdict> {
        self.lines.iter().filter(|l| !l.stderr).find_map(|l| {
            let rest = &l.text[l.text.find(VERDICT)? + VERDICT.len()..];
            if rest.starts_with("PASS") {
                Some(Verdict::Pass)
            } else {
                rest.strip_prefix("FAIL")
                    .map(|why| Verdict::Fail(why.trim().to_owned()))
            }
        })
    }

    /// The first console line containing `needle`.
    pub(crate) fn find(&self, needle: &str) -> Option<&ConsoleLine> {
        self.lines.iter().find(|l| l.text.contains(needle))
    }

    /// When `/init` started (the prologue's marker line).
    pub(crate) fn init_at(&self) -> Option<Duration> {
        self.find(INIT_MARKER).map(|l| l.at)
    }

    /// Panics with `msg`, the command, how it ended and the whole log.
    pub(crate) fn fail(&self, msg: &str) -> ! {
        panic!(
            "{msg}\n--- UML: {:?} after {:.2} s, {}; command:\n{}\n--- log:\n{}--- end of log ({msg})",
            self.end,
            self.elapsed.as_secs_f64(),
            self.status,
            self.command,
            self.log()
        );
    }

    /// The guest printed `RPMSG-TEST PASS` (however UML ended afterwards).
    pub(crate) fn assert_verdict_pass(&self) {
        match self.verdict() {
            Some(Verdict::Pass) => {}
            Some(Verdict::Fail(why)) => self.fail(&format!("the guest failed: {why}")),
            None => self.fail("no verdict from the guest"),
        }
    }

    /// The guest printed `RPMSG-TEST PASS` and UML then halted by itself with status 0.
    pub(crate) fn assert_pass(&self) {
        self.assert_verdict_pass();
        if self.end != End::Exited {
            self.fail("UML did not halt by itself after the verdict");
        }
        if !self.status.success() {
            self.fail("UML's exit status is not 0");
        }
    }

    /// Some console line contains `needle`.
    pub(crate) fn assert_contains(&self, needle: &str) {
        if self.find(needle).is_none() {
            self.fail(&format!("no line contains {needle:?}"));
        }
    }

    /// No console line contains `needle`.
    pub(crate) fn assert_lacks(&self, needle: &str) {
        if let Some(l) = self.find(needle) {
            self.fail(&format!(
                "unexpected {needle:?} at {:.3} s: {}",
                l.at.as_secs_f64(),
                l.text
            ));
        }
    }

    /// No kernel BUG, oops, WARNING, panic or lockdep report in the log.
    pub(crate) fn assert_kernel_healthy(&self) {
        self.assert_kernel_healthy_except(&[]);
    }

    /// As [`Outcome::assert_kernel_healthy`], except that a `WARNING:` line (and the call
    /// traces that follow warnings) is allowed when it contains one of `expected`: a warning
    /// the scenario provokes on purpose, such as `vu_del_vqs` when the back-end hangs up first.
    pub(crate) fn assert_kernel_healthy_except(&self, expected: &[&str]) {
        for needle in [
            "BUG:",
            "Oops",
            "Kernel panic",
            "scheduling while atomic",
            "enabled interrupts",
            "possible circular locking",
        ] {
            self.assert_lacks(needle);
        }
        let warnings: Vec<&ConsoleLine> = self
            .lines
            .iter()
            .filter(|l| l.text.contains("WARNING:"))
            .collect();
        for w in &warnings {
            if !expected.iter().any(|e| w.text.contains(e)) {
                self.fail(&format!("unexpected kernel warning: {}", w.text));
            }
        }
        if warnings.is_empty() {
            self.assert_lacks("Call Trace");
        }
    }
}

/// A host process the test runs next to UML (typically the vhost-user back-end), in its own
/// process group, with its output collected; killed on drop.
#[derive(Debug)]
pub(crate) struct HostProcess {
    name: String,
    child: Child,
    rx: Receiver<ConsoleLine>,
    lines: Vec<ConsoleLine>,
    status: Option<ExitStatus>,
}

impl HostProcess {
    /// Starts `cmd` (stdin /dev/null, stdout and stderr collected); `name` labels messages.
    pub(crate) fn spawn(name: &str, cmd: &mut Command) -> Self {
        let start = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let (tx, rx) = mpsc::channel();
        spawn_reader(child.stdout.take().unwrap(), false, start, tx.clone());
        spawn_reader(child.stderr.take().unwrap(), true, start, tx);
        Self {
            name: name.to_owned(),
            child,
            rx,
            lines: Vec::new(),
            status: None,
        }
    }

    fn drain(&mut self) {
        while let Ok(l) = self.rx.try_recv() {
            self.lines.push(l);
        }
    }

    /// Waits until `path` is a socket (the back-end has bound it); panics after `timeout` or if
    /// the process exits first. Give the back-end a listen() right after bind(), or have it
    /// print a line once it listens and use [`HostProcess::wait_for_line`].
    pub(crate) fn wait_for_socket(&mut self, path: &Path, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
                let log = self.log();
                panic!(
                    "{} exited ({st}) before {} appeared:\n{log}",
                    self.name,
                    path.display()
                );
            }
            if Instant::now() >= end {
                let log = self.log();
                panic!(
                    "{}: no socket {} after {timeout:?}:\n{log}",
                    self.name,
                    path.display()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for an output line containing `needle`; panics after `timeout`.
    pub(crate) fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> ConsoleLine {
        let end = Instant::now() + timeout;
        if let Some(l) = self.lines.iter().find(|l| l.text.contains(needle)) {
            return l.clone();
        }
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    self.lines.push(l.clone());
                    if l.text.contains(needle) {
                        return l;
                    }
                }
                Err(_) => {
                    let log = self.log();
                    panic!(
                        "{}: no line with {needle:?} after {timeout:?}:\n{log}",
                        self.name
                    );
                }
            }
        }
    }

    /// Has it exited (without waiting)?
    pub(crate) fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Sends SIGTERM to it (an orderly stop request), without waiting.
    pub(crate) fn terminate(&mut self) {
        if self.try_status().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
    }

    /// Kills its whole process group now (idempotent).
    pub(crate) fn kill(&mut self) {
        if self.try_status().is_none() {
            kill_group(&mut self.child);
            self.status = self.child.wait().ok();
        }
    }

    /// Waits up to `timeout` for it to exit by itself (then kills it) and returns its exit
    /// status, `None` if it had to be killed.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(st) = self.try_status() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        None
    }

    /// Its output so far (stderr lines marked).
    pub(crate) fn log(&mut self) -> String {
        self.drain();
        let mut s = String::new();
        for l in &self.lines {
            let tag = if l.stderr { " stderr|" } else { "" };
            writeln!(s, "[{:7.3}]{tag} {}", l.at.as_secs_f64(), l.text).unwrap();
        }
        s
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
