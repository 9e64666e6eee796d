//! One side that outlives the other: a long-running driver or device that serves any number of
//! sessions of the other side on the same path, across its deaths, clean exits and restarts.
//!
//! A [`Session`] is one process of the other side. [`Sessions`] holds the current one and,
//! when the caller's link of it is gone (dropped), [`Sessions::next`] starts the next:
//!
//! * **driver**: it keeps its file and socket and lays the rings out again as a new epoch
//!   ([`Session::new_epoch`]); the next device claims them (doorbell.rs section 6);
//! * **device**: it leaves the old file ([`Session::close_for_restart`]) and attaches again,
//!   waiting as long as [`SessionOptions::wait_for_driver`] says for the next driver's file.
//!
//! The caller builds a new [`Link`](rpmsg::Link) on each session, creates its endpoints again
//! (they are announced again when the link starts), and runs it with a
//! [`Service`](crate::Service), which ends the link when the other side goes. Nothing of an
//! old link survives into the next: its buffers, tokens and handles borrow the link, which
//! borrows the session, and the next session starts only after the borrow ends.
//!
//! ```no_run
//! # use rpmsg_host::{Sessions, SessionOptions, Side, Service, HostLink};
//! # fn main() -> Result<(), rpmsg_host::HostError> {
//! let mut sessions = Sessions::open(SessionOptions::new("/dev/shm/rpmsg", Side::Driver))?;
//! loop {
//!     let session = sessions.session();
//!     let link: HostLink<'_> = session.link(session.config()?)?;
//!     std::thread::scope(|scope| {
//!         let service = Service::spawn(scope, &link);
//!         // create endpoints, link.start(), serve until calls return LinkDown ...
//!         let _ = link.shutdown();
//!         service.stop();
//!     });
//!     drop(link);
//!     sessions.next(&|| false)?;
//! }
//! # }
//! ```

use crate::doorbell::Side;
use crate::error::HostError;
use crate::session::{Session, SessionOptions};
use std::time::Duration;

/// One side across any number of sessions of the other side; see the module docs.
#[derive(Debug)]
pub struct Sessions {
    opts: SessionOptions,
    current: Session,
    number: u64,
}

impl Sessions {
    /// Opens the first session ([`Session::open`]).
    ///
    /// # Errors
    ///
    /// As [`Session::open`].
    pub fn open(opts: SessionOptions) -> Result<Self, HostError> {
        Self::open_until(opts, &|| false)
    }

    /// [`Sessions::open`], giving up with [`HostError::Interrupted`] when `stop` says so while
    /// a device waits for its driver.
    ///
    /// # Errors
    ///
    /// As [`Session::open`], and [`HostError::Interrupted`].
    pub fn open_until(opts: SessionOptions, stop: &dyn Fn() -> bool) -> Result<Self, HostError> {
        let current = match opts.side {
            Side::Driver => Session::create(&opts)?,
            Side::Device => Session::attach_until(&opts, stop)?,
        };
        Ok(Self {
            opts,
            current,
            number: 1,
        })
    }

    /// The current session.
    pub fn session(&self) -> &Session {
        &self.current
    }

    /// The current session's number, from 1.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Starts the next session once the current one is over (the other side died, closed or
    /// was replaced) and its link dropped: a driver lays the rings out again, a device attaches
    /// again to whatever driver comes next (waiting for its file). `stop` is asked every few
    /// milliseconds while a device waits; when it says so the wait ends with
    /// [`HostError::Interrupted`] and the old session stays current.
    ///
    /// # Errors
    ///
    /// [`HostError::Interrupted`]; a device gets the attach errors that are not about the
    /// driver going away again ([`HostError::Mismatch`] for a driver with other settings, I/O
    /// errors, [`HostError::PeerNotRunning`] after [`SessionOptions::wait_for_driver`]).
    pub fn next(&mut self, stop: &dyn Fn() -> bool) -> Result<(), HostError> {
        match self.opts.side {
            Side::Driver => self.current.new_epoch()?,
            Side::Device => {
                self.current.close_for_restart();
                let mut opts = self.opts.clone();
                // The old driver may have removed its file; the next one creates another.
                opts.wait_for_file = Some(opts.wait_for_file.unwrap_or(opts.wait_for_driver));
                let start = std::time::Instant::now();
                let next = loop {
                    let mut o = opts.clone();
                    o.wait_for_driver = opts.wait_for_driver.saturating_sub(start.elapsed());
                    o.wait_for_file = o.wait_for_file.map(|_| o.wait_for_driver);
                    match Session::attach_until(&o, stop) {
                        Ok(s) => break s,
                        // The driver we found went away while we attached: wait for the next.
                        Err(
                            HostError::PeerDied { .. }
                            | HostError::PeerClosed { .. }
                            | HostError::PeerSilent { .. },
                        ) if !o.wait_for_driver.is_zero() => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        // Its file vanished between our look and our open.
                        Err(HostError::MissingFile { .. }) if !o.wait_for_driver.is_zero() => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(e) => return Err(e),
                    }
                };
                self.current = next;
            }
        }
        self.number += 1;
        Ok(())
    }
}
