//! The C API from C: `tests/c/capi_app.c` (RPMsg-Lite's API) and `tests/c/rtos_app.c` (the
//! NXP RTOS layer, `src/c/rpmsg_rtos.c`) built with the system C compiler (`cc`) against
//! `include/`, the glue file and `librpmsg_c.a`, in several configurations (dynamic and static
//! API, RPMsg-Lite's default geometry, 256 buffers of 1,000 bytes, 4 of 64), and run as two
//! processes over rpmsg-rs's shared-memory file and doorbell sockets: against the Rust `rpmsg`
//! CLI in both roles, and against another C process on this library. The ping side checks every
//! echoed byte (and with `--sweep`, every payload size from 0 to the buffer's); the `checks`
//! program checks the error codes of every call on a master with no remote.
//!
//! Every process wait is a hang guard of minutes; nothing here measures time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Longest any one program may run before it is taken for hung.
const HANG_GUARD: Duration = Duration::from_secs(240);

/// `target/<profile>`: where cargo put this test, the archive and the CLI.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// The archive cargo built for this test run: `deps/librpmsg_c-<hash>.a` (only `cargo build`
/// copies it to `target/<profile>/librpmsg_c.a`, so that copy may be stale), the newest if
/// several builds left one.
fn archive() -> PathBuf {
    let deps = target_dir().join("deps");
    std::fs::read_dir(&deps)
        .expect("read target/<profile>/deps")
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("librpmsg_c-") && n.ends_with(".a")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
        .expect("no librpmsg_c-*.a in target/<profile>/deps: cargo builds it with this test")
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `rpmsg` CLI of this workspace (`cargo test --workspace` builds it; a lone
/// `cargo test -p rpmsg-c` builds it here if it is missing).
fn cli() -> PathBuf {
    let bin = target_dir().join("rpmsg");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-p", "rpmsg-cli", "--bin", "rpmsg"])
            .current_dir(manifest_dir())
            .status()
            .expect("run cargo build for the rpmsg CLI");
        assert!(st.success(), "building the rpmsg CLI failed");
    }
    assert!(bin.exists(), "no rpmsg CLI at {}", bin.display());
    bin
}

/// Builds `capi_app` with these `-D` definitions into `target/<profile>/capi/<name>`.
fn build(name: &str, defines: &[&str]) -> PathBuf {
    build_program(name, "capi_app.c", &[], defines)
}

/// Builds `tests/c/<program>` with the glue file, `extra` library sources and these `-D`
/// definitions into `target/<profile>/capi/<name>`.
fn build_program(name: &str, program: &str, extra: &[&str], defines: &[&str]) -> PathBuf {
    let archive = archive();
    let out_dir = target_dir().join("capi");
    std::fs::create_dir_all(&out_dir).expect("create target/<profile>/capi");
    let out = out_dir.join(name);
    let m = manifest_dir();
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"]);
    for d in defines {
        cmd.arg(format!("-D{d}"));
    }
    cmd.arg("-I")
        .arg(m.join("include"))
        .arg("-I")
        .arg(m.join("tests/c"))
        .arg("-o")
        .arg(&out)
        .arg(m.join("tests/c").join(program))
        .arg(m.join("tests/c/host_port.c"))
        .arg(m.join("src/c/rpmsg_c_glue.c"))
        .args(extra.iter().map(|e| m.join(e)))
        .arg(&archive)
        .args(["-lpthread", "-ldl", "-lm"]);
    let o = cmd.output().expect("run the C compiler (cc)");
    assert!(
        o.status.success(),
        "cc failed for {name}:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// A private directory for one case's shared file and sockets (short: `sun_path` is 108 bytes).
fn scratch() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "capi-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// Waits for `child` (killed after the hang guard) and returns its output.
fn finish(mut child: Child, what: &str) -> Output {
    let start = Instant::now();
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => break,
            None if start.elapsed() > HANG_GUARD => {
                let _ = child.kill();
                let o = child.wait_with_output().expect("wait");
                panic!(
                    "{what} hung for {HANG_GUARD:?}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    child.wait_with_output().expect("wait")
}

fn report(what: &str, o: &Output) -> String {
    format!(
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(st: ExitStatus) -> bool {
    st.success()
}

/// Runs `first` (the side that waits: echo), then `second` (ping) after it, and checks both
/// exit 0; returns their outputs.
fn pair(first: &mut Command, second: &mut Command, names: (&str, &str)) -> (Output, Output) {
    let a = spawn(first);
    std::thread::sleep(Duration::from_millis(100));
    let b = spawn(second);
    let ob = finish(b, names.1);
    let oa = finish(a, names.0);
    assert!(
        ok(oa.status) && ok(ob.status),
        "{}\n{}",
        report(names.0, &oa),
        report(names.1, &ob)
    );
    (oa, ob)
}

fn app(bin: &Path, role: &str, mode: &str, dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.arg(role)
        .arg(mode)
        .arg(dir.join("shm"))
        .arg("--sockdir")
        .arg(dir)
        .args(extra);
    c
}

fn rust(mode: &str, role: &str, dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(cli());
    c.arg(mode)
        .args(["--role", role, "--shm"])
        .arg(dir.join("shm"))
        .arg("--sock-dir")
        .arg(dir)
        .args(["--wait", "60000"])
        .args(extra);
    c
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const DYNAMIC: &[&str] = &["RL_USE_STATIC_API=0"];
const STATIC: &[&str] = &["RL_USE_STATIC_API=1"];

#[test]
fn checks_dynamic_and_static_api() {
    for (name, defs) in [("checks_dyn", DYNAMIC), ("checks_static", STATIC)] {
        let bin = build(name, defs);
        let dir = scratch();
        let o = finish(
            spawn(
                Command::new(&bin)
                    .arg("checks")
                    .arg(dir.join("shm"))
                    .arg(&dir),
            ),
            name,
        );
        assert!(ok(o.status), "{}", report(name, &o));
        assert!(
            stdout(&o).contains("capi_app: ok checks"),
            "{}",
            report(name, &o)
        );
    }
}

#[test]
fn c_and_c_both_roles_static_and_dynamic() {
    let dynamic = build("cc_dyn", DYNAMIC);
    let stat = build("cc_static", STATIC);
    // Master pings (static API), remote echoes (dynamic API), every payload size.
    let dir = scratch();
    let (echo, ping) = pair(
        &mut app(&dynamic, "remote", "echo", &dir, &[]),
        &mut app(&stat, "master", "ping", &dir, &["--sweep"]),
        ("C remote echo (dynamic)", "C master ping (static)"),
    );
    assert!(
        stdout(&ping).contains("ok 497 round trips"),
        "{}",
        stdout(&ping)
    );
    assert!(
        stdout(&echo).contains("echoed 497 messages"),
        "{}",
        stdout(&echo)
    );
    // And the other way round.
    let dir = scratch();
    let (echo, ping) = pair(
        &mut app(&dynamic, "master", "echo", &dir, &[]),
        &mut app(&stat, "remote", "ping", &dir, &["--sweep"]),
        ("C master echo (dynamic)", "C remote ping (static)"),
    );
    assert!(
        stdout(&ping).contains("ok 497 round trips"),
        "{}",
        stdout(&ping)
    );
    assert!(
        stdout(&echo).contains("echoed 497 messages"),
        "{}",
        stdout(&echo)
    );
}

#[test]
fn c_against_the_rust_cli_in_every_role() {
    let dynamic = build("cli_dyn", DYNAMIC);
    let stat = build("cli_static", STATIC);

    // C master pings every payload size; the Rust device echoes.
    let dir = scratch();
    let (_, ping) = pair(
        &mut rust("echo", "device", &dir, &["--wait-for-file"]),
        &mut app(&dynamic, "master", "ping", &dir, &["--sweep"]),
        ("rpmsg echo --role device", "C master ping"),
    );
    assert!(
        stdout(&ping).contains("ok 497 round trips"),
        "{}",
        stdout(&ping)
    );

    // The Rust driver pings; the C remote echoes (static API).
    let dir = scratch();
    let (echo, _) = pair(
        &mut app(&stat, "remote", "echo", &dir, &[]),
        &mut rust("ping", "driver", &dir, &["--count", "300", "--size", "496"]),
        ("C remote echo", "rpmsg ping --role driver"),
    );
    assert!(
        stdout(&echo).contains("echoed 300 messages"),
        "{}",
        stdout(&echo)
    );

    // The Rust driver echoes; the C remote pings every payload size.
    let dir = scratch();
    let (_, ping) = pair(
        &mut rust("echo", "driver", &dir, &[]),
        &mut app(&stat, "remote", "ping", &dir, &["--sweep"]),
        ("rpmsg echo --role driver", "C remote ping"),
    );
    assert!(
        stdout(&ping).contains("ok 497 round trips"),
        "{}",
        stdout(&ping)
    );

    // The C master echoes; the Rust device pings.
    let dir = scratch();
    let (echo, _) = pair(
        &mut app(&dynamic, "master", "echo", &dir, &[]),
        &mut rust(
            "ping",
            "device",
            &dir,
            &["--count", "300", "--size", "1", "--wait-for-file"],
        ),
        ("C master echo", "rpmsg ping --role device"),
    );
    assert!(
        stdout(&echo).contains("echoed 300 messages"),
        "{}",
        stdout(&echo)
    );
}

#[test]
fn other_geometries_from_rpmsg_config() {
    // 256 buffers of 1,000 payload bytes (buffers of 1,016), static API.
    let big = build(
        "geom_256x1000",
        &[
            "RL_USE_STATIC_API=1",
            "RL_BUFFER_COUNT=256U",
            "RL_BUFFER_PAYLOAD_SIZE=1000U",
        ],
    );
    let dir = scratch();
    let (_, ping) = pair(
        &mut rust("echo", "device", &dir, &["--wait-for-file"]),
        &mut app(&big, "master", "ping", &dir, &["--sweep"]),
        ("rpmsg echo --role device", "C master ping, 256 x 1000"),
    );
    assert!(
        stdout(&ping).contains("ok 1001 round trips"),
        "{}",
        stdout(&ping)
    );
    let dir = scratch();
    let (echo, _) = pair(
        &mut app(&big, "remote", "echo", &dir, &[]),
        &mut rust(
            "ping",
            "driver",
            &dir,
            &[
                "--count",
                "600",
                "--size",
                "1000",
                "--buffers",
                "256",
                "--buffer-size",
                "1016",
            ],
        ),
        ("C remote echo, 256 x 1000", "rpmsg ping --role driver"),
    );
    assert!(
        stdout(&echo).contains("echoed 600 messages"),
        "{}",
        stdout(&echo)
    );

    // 4 buffers of 64 bytes, dynamic API, C on both sides.
    let small = build(
        "geom_4x64",
        &[
            "RL_USE_STATIC_API=0",
            "RL_BUFFER_COUNT=4U",
            "RL_BUFFER_PAYLOAD_SIZE=64U",
        ],
    );
    let dir = scratch();
    let (_, ping) = pair(
        &mut app(&small, "remote", "echo", &dir, &[]),
        &mut app(&small, "master", "ping", &dir, &["--sweep"]),
        ("C remote echo, 4 x 64", "C master ping, 4 x 64"),
    );
    assert!(
        stdout(&ping).contains("ok 65 round trips"),
        "{}",
        stdout(&ping)
    );
}

fn rtos(bin: &Path, role: &str, dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg(role).arg(dir.join("shm")).arg(dir);
    c
}

#[test]
fn rtos_layer_both_roles_against_c_and_the_rust_cli() {
    // The default channel is the CLI's echo service, so the RTOS layer meets the Rust side too.
    let name = "RPMSG_RTOS_CHANNEL_NAME=\"rpmsg-echo\"";
    // A remote process may start after the master kicked (it waits for the master's file).
    let late = "RPMSG_RTOS_REMOTE_INIT_FLAGS=RL_C_LATE_REMOTE";
    let extra = &["src/c/rpmsg_rtos.c"];
    let dynamic = build_program(
        "rtos_dyn",
        "rtos_app.c",
        extra,
        &["RL_USE_STATIC_API=0", name, late],
    );
    let stat = build_program(
        "rtos_static",
        "rtos_app.c",
        extra,
        &["RL_USE_STATIC_API=1", name, late],
    );

    // C and C: the master's deinit withdraws the channel and the remote sees it.
    let dir = scratch();
    let (remote, master) = pair(
        &mut rtos(&stat, "remote", &dir),
        &mut rtos(&dynamic, "master", &dir),
        ("RTOS remote (static)", "RTOS master (dynamic)"),
    );
    assert!(
        stdout(&master).contains("ok master 497 round trips"),
        "{}",
        stdout(&master)
    );
    assert!(
        stdout(&remote).contains("echoed 497 messages, then the master withdrew the channel"),
        "{}",
        stdout(&remote)
    );

    // RTOS master against the Rust echo device.
    let dir = scratch();
    let (_, master) = pair(
        &mut rust("echo", "device", &dir, &["--wait-for-file"]),
        &mut rtos(&stat, "master", &dir),
        ("rpmsg echo --role device", "RTOS master (static)"),
    );
    assert!(
        stdout(&master).contains("ok master 497 round trips"),
        "{}",
        stdout(&master)
    );

    // The Rust driver pings the RTOS remote.
    let dir = scratch();
    let (remote, _) = pair(
        &mut rtos(&dynamic, "remote", &dir),
        &mut rust("ping", "driver", &dir, &["--count", "300", "--size", "200"]),
        ("RTOS remote (dynamic)", "rpmsg ping --role driver"),
    );
    assert!(
        stdout(&remote).contains("echoed 300 messages"),
        "{}",
        stdout(&remote)
    );
}

#[test]
fn sessions_init_and_deinit_on_both_sides() {
    // Each side re-initialises for every session; the master gives the remote's echo back only
    // after the remote's next init, so a doorbell for it would reach the new remote.
    let dynamic = build("sess_dyn", DYNAMIC);
    let stat = build("sess_static", STATIC);
    let dir = scratch();
    let (remote, master) = pair(
        &mut app(&stat, "remote", "sessions", &dir, &["--count", "6"]),
        &mut app(&dynamic, "master", "sessions", &dir, &["--count", "6"]),
        ("C remote, 6 sessions", "C master, 6 sessions"),
    );
    assert!(
        stdout(&master).contains("ok 6 sessions as master"),
        "{}",
        stdout(&master)
    );
    assert!(
        stdout(&remote).contains("ok 6 sessions as remote"),
        "{}",
        stdout(&remote)
    );
}
