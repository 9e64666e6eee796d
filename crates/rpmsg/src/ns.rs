//! The name service: announcements of named endpoints on address 53.
//!
//! When `VIRTIO_RPMSG_F_NS` is negotiated (always with RPMsg-Lite, which has no features), an
//! endpoint created with [`EndpointConfig::announce`](crate::EndpointConfig::announce) is
//! announced to the peer (a CREATE, sent as soon as the link is up) and its destruction too (a
//! DESTROY). Announcements from the peer go three ways:
//!
//! * a local endpoint with the same name and no destination yet is **bound** to the announced
//!   address (OpenAMP's behaviour: create an endpoint by name, wait for the remote service);
//!   a DESTROY unbinds it;
//! * every other announcement goes to the link's [`NsHandler`]: a bind/unbind pair of closures
//!   ([`NsCallbacks`]), a bounded queue ([`NsQueue`]) read by a task, or your own type.

use crate::wire::ns::Name;
use core::cell::RefCell;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::RawMutex;

/// What an announcement says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsKind {
    /// The service was created (`RPMSG_NS_CREATE`).
    Create,
    /// The service was destroyed (`RPMSG_NS_DESTROY`, any odd flags value).
    Destroy,
}

/// One announcement received from the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    /// Service name.
    pub name: Name,
    /// The remote endpoint's address.
    pub addr: u32,
    /// Create or destroy.
    pub kind: NsKind,
}

/// Receives the announcements no local endpoint was waiting for. Runs in the context that
/// polls the link (an interrupt handler on bare metal), without the link's lock held.
pub trait NsHandler: Sync {
    /// One announcement.
    fn on_announcement(&self, a: &Announcement);

    /// An announcement that a local endpoint took instead (a create bound the endpoint at
    /// `local`, which waited for that name; a destroy unbound it). Only for observing, such
    /// as logging what the peer announced; nothing to do by default.
    fn on_bound(&self, a: &Announcement, local: u32) {
        let _ = (a, local);
    }
}

impl<F: Fn(&Announcement) + Sync> NsHandler for F {
    fn on_announcement(&self, a: &Announcement) {
        self(a);
    }
}

/// A bind callback and an unbind callback (OpenAMP's `ns_bind_cb` and `ns_unbind_cb`).
#[derive(Debug, Clone, Copy)]
pub struct NsCallbacks<B, U> {
    /// Called with `(name, addr)` on CREATE.
    pub bind: B,
    /// Called with `(name, addr)` on DESTROY.
    pub unbind: U,
}

impl<B: Fn(&Name, u32) + Sync, U: Fn(&Name, u32) + Sync> NsHandler for NsCallbacks<B, U> {
    fn on_announcement(&self, a: &Announcement) {
        match a.kind {
            NsKind::Create => (self.bind)(&a.name, a.addr),
            NsKind::Destroy => (self.unbind)(&a.name, a.addr),
        }
    }
}

/// A bounded queue of announcements, filled by the link and drained by a task. When full, new
/// announcements are counted in [`NsQueue::dropped`] instead of vanishing silently.
pub struct NsQueue<M: RawMutex, const K: usize> {
    inner: Mutex<M, RefCell<(heapless::Deque<Announcement, K>, u32)>>,
}

impl<M: RawMutex, const K: usize> core::fmt::Debug for NsQueue<M, K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NsQueue")
            .field("capacity", &K)
            .finish_non_exhaustive()
    }
}

impl<M: RawMutex, const K: usize> Default for NsQueue<M, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: RawMutex, const K: usize> NsQueue<M, K> {
    /// An empty queue (usable in a `static`).
    pub const fn new() -> Self {
        Self {
            inner: Mutex::new(RefCell::new((heapless::Deque::new(), 0))),
        }
    }

    /// Takes the oldest announcement.
    pub fn pop(&self) -> Option<Announcement> {
        self.inner.lock(|c| c.borrow_mut().0.pop_front())
    }

    /// Announcements dropped because the queue was full.
    pub fn dropped(&self) -> u32 {
        self.inner.lock(|c| c.borrow().1)
    }
}

impl<M: RawMutex + Sync, const K: usize> NsHandler for NsQueue<M, K> {
    fn on_announcement(&self, a: &Announcement) {
        self.inner.lock(|c| {
            let mut g = c.borrow_mut();
            if g.0.push_back(*a).is_err() {
                g.1 = g.1.wrapping_add(1);
            }
        });
    }
}
