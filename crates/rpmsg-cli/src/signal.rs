//! SIGINT and SIGTERM: leave the session cleanly, then exit with 130 or 143 (128 + the
//! signal's number, what a shell reports for a process the signal killed).
//!
//! [`install`] registers, for both signals, three `signal-hook` actions (async-signal-safe:
//! atomic stores and `_exit`):
//!
//! 1. exit at once with 128 + the signal if [`EXIT_NOW`] is set: no session is open (nothing
//!    to close), or this is the second signal (a second Ctrl-C still kills at once);
//! 2. record the signal's number;
//! 3. set [`EXIT_NOW`], for the next signal.
//!
//! While a session is open ([`arm`]), the first signal only records itself. [`Watch`] (run by
//! `run_link` beside the link's service thread) sees it, shuts the link down and wakes our
//! waiters, so every blocked call returns; the command then closes its session (DESTROY
//! announced, state word "closed", socket and file removed) and [`check`] turns its result into
//! [`Failure::signal`], which `main` reports and exits with.

use crate::common::Failure;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

struct Flags {
    /// The signal received, 0 for none.
    received: Arc<AtomicUsize>,
    /// Exit at once on the next signal.
    exit_now: Arc<AtomicBool>,
    /// Sessions open ([`arm`]).
    armed: AtomicUsize,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

/// Registers the handlers (once, at start-up). Until a session is [`arm`]ed a signal exits at
/// once, as if no handler were installed.
pub(crate) fn install() -> std::io::Result<()> {
    let flags = Flags {
        received: Arc::new(AtomicUsize::new(0)),
        exit_now: Arc::new(AtomicBool::new(true)),
        armed: AtomicUsize::new(0),
    };
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(
            sig,
            128 + sig,
            Arc::clone(&flags.exit_now),
        )?;
        signal_hook::flag::register_usize(sig, Arc::clone(&flags.received), sig as usize)?;
        signal_hook::flag::register(sig, Arc::clone(&flags.exit_now))?;
    }
    let _ = FLAGS.set(flags);
    Ok(())
}

/// The signal received (SIGINT or SIGTERM), if one came.
pub(crate) fn received() -> Option<i32> {
    let n = FLAGS.get()?.received.load(Ordering::SeqCst);
    (n != 0).then(|| i32::try_from(n).unwrap_or(SIGTERM))
}

/// A session is open: the first signal closes it rather than exiting at once. Drop it when the
/// session is closed.
#[derive(Debug)]
pub(crate) struct Armed(());

/// Arms the handlers until the returned guard drops.
pub(crate) fn arm() -> Armed {
    if let Some(f) = FLAGS.get() {
        f.armed.fetch_add(1, Ordering::SeqCst);
        if received().is_none() {
            f.exit_now.store(false, Ordering::SeqCst);
        }
    }
    Armed(())
}

impl Drop for Armed {
    fn drop(&mut self) {
        if let Some(f) = FLAGS.get() {
            if f.armed.fetch_sub(1, Ordering::SeqCst) == 1 {
                f.exit_now.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// `Err(Failure::signal)` if a signal came, whatever `r` says; `r` otherwise.
pub(crate) fn check<T>(r: Result<T, Failure>) -> Result<T, Failure> {
    match received() {
        Some(sig) => Err(Failure::signal(sig)),
        None => r,
    }
}

/// `Err(Failure::signal)` if a signal came.
pub(crate) fn check_now() -> Result<(), Failure> {
    check(Ok(()))
}

/// Waits in a thread for the first signal, without waking up otherwise.
pub(crate) struct Watch {
    signals: Signals,
}

/// Ends a [`Watch::wait`] from another thread.
pub(crate) struct WatchHandle(signal_hook::iterator::Handle);

impl Watch {
    /// A watch for SIGINT and SIGTERM.
    pub(crate) fn new() -> std::io::Result<Self> {
        Ok(Self {
            signals: Signals::new([SIGINT, SIGTERM])?,
        })
    }

    /// What ends [`Watch::wait`] without a signal.
    pub(crate) fn handle(&self) -> WatchHandle {
        WatchHandle(self.signals.handle())
    }

    /// Blocks until a signal comes (`true`, also when it came before the watch) or the handle
    /// closes the watch (`false`).
    pub(crate) fn wait(mut self) -> bool {
        if received().is_some() {
            return true;
        }
        self.signals.forever().next().is_some() || received().is_some()
    }
}

impl WatchHandle {
    /// Ends the wait.
    pub(crate) fn close(&self) {
        self.0.close();
    }
}
