//! Against the real Linux kernel: User-Mode Linux built from Debian's linux-source-6.1 by
//! `uml/build-kernel.sh`, booted by the harness in `tests/uml`, with our static `rpmsg` inside.
//!
//! Ignored by default (they need the kernel); `.ci/run` builds it and runs them with
//! `RPMSG_UML_KERNEL=... RPMSG_GUEST_BIN=... cargo test -p rpmsg-cli --test linux_kernel -- --ignored`.

mod uml;

use std::os::unix::net::UnixListener;
use std::time::Duration;
use uml::{Boot, End, Scratch};

/// A boot to `/init` takes ~0.3 s; this leaves room for a loaded CI machine.
const SMOKE_LIMIT: Duration = Duration::from_secs(20);

/// The kernel boots, our static `rpmsg` runs inside, the verdict comes back and UML halts by
/// itself with status 0; the kernel has the rpmsg bus built in (our config took effect).
#[test]
#[ignore = "needs the UML kernel (uml/build-kernel.sh); .ci/run runs them"]
fn boots_and_runs_the_static_rpmsg() {
    let scratch = Scratch::new("help");
    let out = Boot::new(
        &scratch,
        r#"
check "rpmsg --help" sh -c 'rpmsg --help > /tmp/help 2>&1'
cat /tmp/help
check "usage line in rpmsg --help" grep -q "Usage: rpmsg" /tmp/help
check "kernel 6.1" sh -c 'uname -r | grep -q "^6\.1\."'
check "the rpmsg bus is built in" test -d /sys/bus/rpmsg
check "the virtio bus is built in" test -d /sys/bus/virtio
pass
"#,
    )
    .timeout(SMOKE_LIMIT)
    .run();
    out.assert_pass();
    out.assert_contains("Usage: rpmsg");
    out.assert_kernel_healthy();
    let init = out.init_at().unwrap_or_else(|| out.fail("no /init marker"));
    eprintln!(
        "boot to /init {:.3} s, whole run {:.3} s",
        init.as_secs_f64(),
        out.elapsed.as_secs_f64()
    );
    if out.elapsed >= SMOKE_LIMIT {
        out.fail("too slow");
    }
}

/// The guest side of "no back-end": /init sees no rpmsg device at all.
const NO_RPMSG_DEVICES: &str = r#"
if ls /dev/rpmsg* 2>/dev/null; then fail "/dev/rpmsg* exists without a back-end"; fi
if [ -d /sys/class/rpmsg ] && [ -n "$(ls /sys/class/rpmsg)" ]; then
    fail "/sys/class/rpmsg is not empty: $(ls /sys/class/rpmsg)"
fi
if [ -n "$(ls /sys/bus/rpmsg/devices)" ]; then fail "rpmsg devices: $(ls /sys/bus/rpmsg/devices)"; fi
pass
"#;

/// A socket path that does not exist: `virtio_uml` fails to probe with -ENOENT, the boot goes
/// on, and there is no rpmsg device.
#[test]
#[ignore = "needs the UML kernel (uml/build-kernel.sh); .ci/run runs them"]
fn no_socket_probe_fails_with_enoent() {
    let scratch = Scratch::new("nosock");
    let out = Boot::new(&scratch, NO_RPMSG_DEVICES)
        .socket(&scratch.socket())
        .timeout(SMOKE_LIMIT)
        .run();
    out.assert_pass();
    out.assert_contains("virtio-uml: probe of virtio-uml.0 failed with error -2");
    out.assert_lacks("virtio_rpmsg_bus");
    out.assert_kernel_healthy();
}

/// A socket that exists with nobody listening: the probe fails with -ECONNREFUSED, no retry,
/// no rpmsg device.
#[test]
#[ignore = "needs the UML kernel (uml/build-kernel.sh); .ci/run runs them"]
fn nobody_listening_probe_fails_with_econnrefused() {
    let scratch = Scratch::new("refused");
    // Bound, then closed: the socket file stays, connect() is refused.
    drop(UnixListener::bind(scratch.socket()).unwrap());
    let out = Boot::new(&scratch, NO_RPMSG_DEVICES)
        .socket(&scratch.socket())
        .timeout(SMOKE_LIMIT)
        .run();
    out.assert_pass();
    out.assert_contains("virtio-uml: probe of virtio-uml.0 failed with error -111");
    out.assert_lacks("virtio_rpmsg_bus");
    out.assert_kernel_healthy();
}

/// The harness itself: a body without a verdict is a failure (not a hang or a panic), and a
/// guest that never halts is killed at the timeout, all its processes with it.
#[test]
#[ignore = "needs the UML kernel (uml/build-kernel.sh); .ci/run runs them"]
fn harness_reports_missing_verdict_and_kills_a_hung_guest() {
    let scratch = Scratch::new("noverdict");
    let out = Boot::new(&scratch, "true").timeout(SMOKE_LIMIT).run();
    assert_eq!(
        out.verdict(),
        Some(uml::Verdict::Fail(
            "the /init script ended without a verdict".into()
        )),
        "{}",
        out.log()
    );
    assert_eq!(out.end, End::Exited, "{}", out.log());

    let scratch = Scratch::new("hang");
    let mut running = Boot::new(&scratch, "echo HUNG-FOREVER\nwhile :; do sleep 1; done")
        .timeout(SMOKE_LIMIT)
        .spawn();
    while let Some(line) = running.next_line() {
        if line.text.contains("HUNG-FOREVER") {
            running.kill();
        }
    }
    let out = running.finish();
    assert_eq!(out.end, End::Killed, "{}", out.log());
    assert!(out.verdict().is_none(), "{}", out.log());
    assert!(
        out.elapsed < SMOKE_LIMIT,
        "not killed at once: {}",
        out.log()
    );
}
