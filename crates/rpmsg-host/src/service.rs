//! The service thread of one side: receives doorbells and watches the peer.
//!
//! One thread per link, spawned in a [`std::thread::scope`] so it can borrow the link:
//!
//! * **socket mode**: it blocks in `recv` on our doorbell socket and calls
//!   [`Link::handle_notify`](rpmsg::Link::handle_notify) with each id, which takes every
//!   published message (queues it, runs its callback) and wakes our waiters;
//! * **every mode**: each watch period it looks at the peer ([`Session::peer`]); once the peer
//!   has died or closed, it takes what is still in the rings, shuts the link down and wakes our
//!   waiters, so every blocked call returns ([`rpmsg::Error::LinkDown`], which
//!   [`Session::explain`] turns into what happened).
//!
//! * **driver, socket mode**: when a doorbell of ours found no device socket (the device had
//!   not bound yet) and the device is now there, it rings vring 0's notify id again, then
//!   vring 1's. An RPMsg-Lite remote links up once, on the master's first doorbell
//!   (`rpmsg_lite_remote_init` waits for it); a remote that starts after our driver kicked
//!   would otherwise wait forever. A spurious doorbell is harmless to every other peer.
//!
//! In futex and busy-poll modes it never touches the link until the peer is gone, so the
//! message path has no second thread contending for the link's lock.

use crate::doorbell::{DoorbellMode, Side};
use crate::port::HostLink;
use crate::session::{PeerStatus, Session};
use rpmsg::Platform;
use std::sync::atomic::Ordering;
use std::thread::{Scope, ScopedJoinHandle};
use std::time::Instant;

/// A running service thread. Stop it with [`Service::stop`]; dropping it also stops it (the
/// scope joins it).
#[derive(Debug)]
pub struct Service<'scope, 's> {
    session: &'s Session,
    handle: Option<ScopedJoinHandle<'scope, Option<PeerStatus>>>,
}

impl<'scope, 's> Service<'scope, 's> {
    /// Starts the service thread of `link` in `scope`.
    pub fn spawn<'env, const N: usize, const EPTS: usize>(
        scope: &'scope Scope<'scope, 'env>,
        link: &'env HostLink<'s, N, EPTS>,
    ) -> Self
    where
        's: 'env,
    {
        let session = link.platform().session();
        session.stop_service.store(false, Ordering::Release);
        let handle = scope.spawn(move || run(link));
        Self {
            session,
            handle: Some(handle),
        }
    }

    /// Stops the thread and waits for it; returns the peer's fate if the thread saw it go.
    pub fn stop(mut self) -> Option<PeerStatus> {
        self.signal();
        self.handle.take().and_then(|h| h.join().ok()).flatten()
    }

    fn signal(&self) {
        self.session.stop_service.store(true, Ordering::Release);
        self.session.socket().poke_self();
    }
}

impl Drop for Service<'_, '_> {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.signal();
        }
    }
}

fn run<const N: usize, const EPTS: usize>(link: &HostLink<'_, N, EPTS>) -> Option<PeerStatus> {
    let s = link.platform().session();
    let period = s.watch_period;
    let mut next_watch = Instant::now();
    let mut gone = None;
    while !s.stop_service.load(Ordering::Acquire) {
        let wait = next_watch.saturating_duration_since(Instant::now());
        match s.socket().recv(wait) {
            Ok(Some(Some(id))) => {
                if s.stop_service.load(Ordering::Acquire) {
                    break;
                }
                s.counters.received.fetch_add(1, Ordering::Relaxed);
                if s.doorbell() == DoorbellMode::Socket && gone.is_none() {
                    let _ = link.handle_notify(id);
                }
            }
            Ok(Some(None)) => {
                s.counters.malformed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => {}
            Err(_) => std::thread::sleep(period),
        }
        if Instant::now() < next_watch {
            continue;
        }
        next_watch = Instant::now() + period;
        if gone.is_some() {
            continue;
        }
        let status = s.peer();
        if status == PeerStatus::Alive {
            ring_again(link);
        }
        if matches!(status, PeerStatus::Closed | PeerStatus::Died { .. }) {
            gone = Some(status);
            // Take what the peer published before it went, then end every blocked call.
            let _ = link.poll();
            s.note_end_rings();
            let _ = link.shutdown();
            s.wake_local();
        }
    }
    gone
}

/// Driver, socket mode: rings again what went to nobody, now that the device is there (vring 0,
/// the link-up kick, first). Only once the link is up: before that, `start` kicks by itself.
fn ring_again<const N: usize, const EPTS: usize>(link: &HostLink<'_, N, EPTS>) {
    let s = link.platform().session();
    if s.side() != Side::Driver
        || s.doorbell() != DoorbellMode::Socket
        || !s.lost_doorbell.load(Ordering::Relaxed)
        || !link.is_up()
    {
        return;
    }
    s.lost_doorbell.store(false, Ordering::Relaxed);
    for id in link.notify_ids() {
        link.platform().notify(id);
    }
}
