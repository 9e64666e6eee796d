//! The back-end's protocol state machine: one front-end connection, its memory table, the two
//! vrings, the kick and call descriptors, and the bridge to the core's device role through the
//! synthesized resource table.

use super::proto::{self, Msg, RecvError, req};
use super::{
    End, Event, EventSink, MemoryRegion, PROTOCOL_F_CONFIG, PROTOCOL_F_INBAND_NOTIFICATIONS,
    PROTOCOL_F_SLAVE_REQ, VhostLink, VringSetup,
};
use crate::sys::Mapping;
use rpmsg::SharedRegion;
use rpmsg::layout::RscConfig;
use rpmsg::wire::rsc::vdev_field;
use rpmsg::wire::vring::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK, VringLayout,
};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// Most memory regions accepted (virtio_uml sends one, two with highmem).
pub(crate) const MAX_REGIONS: usize = 2;
/// Largest queue accepted (virtio_uml's `MAX_SUPPORTED_QUEUE_SIZE`, Linux rpmsg's 256).
pub(crate) const MAX_NUM: u32 = 256;
/// Bit of the `u64` of `SET_VRING_KICK`/`CALL`: no descriptor comes with it.
const NOFD: u64 = 1 << 8;

/// A call descriptor and how to write to it.
#[derive(Debug)]
struct CallFd {
    fd: OwnedFd,
    /// A socket (UML's socketpair end): sent to without blocking and without `SIGPIPE`.
    socket: bool,
}

/// Signals the front-end: shared by the platform (any thread) and the protocol thread.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    calls: RwLock<[Option<CallFd>; 2]>,
    slave: Mutex<Option<OwnedFd>>,
    inband: AtomicBool,
    pub(crate) sent: [AtomicU64; 2],
    pub(crate) coalesced: [AtomicU64; 2],
    pub(crate) dropped: [AtomicU64; 2],
}

impl Notifier {
    /// Signals the driver that vring `q` has used buffers.
    pub(crate) fn call(&self, q: usize) {
        let Some(sent) = self.sent.get(q) else {
            return;
        };
        if self.inband.load(Ordering::Acquire) {
            let slave = self.slave.lock().unwrap_or_else(|p| p.into_inner());
            let ok = slave.as_ref().is_some_and(|fd| {
                let mut p = [0u8; 8];
                p[..4].copy_from_slice(&(q as u32).to_le_bytes());
                proto::send_msg(fd.as_fd(), proto::SLAVE_VRING_CALL, 1, &p).is_ok()
            });
            let c = if ok { sent } else { &self.dropped[q] };
            c.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let calls = self.calls.read().unwrap_or_else(|p| p.into_inner());
        let Some(c) = calls.get(q).and_then(Option::as_ref) else {
            self.dropped[q].fetch_add(1, Ordering::Relaxed);
            return;
        };
        let one = 1u64.to_le_bytes();
        let r = if c.socket {
            rustix::net::send(
                &c.fd,
                &one,
                rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL,
            )
        } else {
            rustix::io::write(&c.fd, &one)
        };
        let counter = match r {
            Ok(_) => sent,
            // The front-end has not read the last one yet: it will look at the ring anyway.
            Err(Errno::AGAIN) => &self.coalesced[q],
            Err(_) => &self.dropped[q],
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Notifier {
    /// After we closed the connection: closes the slave channel, then waits up to `linger`
    /// for the front-end to close its ends of socket call descriptors before closing ours.
    /// (virtio_uml removes the device when its slave channel fails; if it finds a call
    /// descriptor at end-of-file first, it logs a warning per vring.)
    pub(crate) fn close(&self, linger: std::time::Duration) {
        drop(self.slave.lock().unwrap_or_else(|p| p.into_inner()).take());
        let calls = std::mem::take(&mut *self.calls.write().unwrap_or_else(|p| p.into_inner()));
        let mut open: Vec<OwnedFd> = calls
            .into_iter()
            .flatten()
            .filter(|c| c.socket)
            .map(|c| c.fd)
            .collect();
        let deadline = std::time::Instant::now() + linger;
        while !open.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let ts = rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let mut fds: Vec<PollFd<'_>> = open
                .iter()
                .map(|fd| PollFd::new(fd, PollFlags::IN))
                .collect();
            if poll(&mut fds, Some(&ts)).is_err() {
                break;
            }
            let revents: Vec<PollFlags> = fds.iter().map(PollFd::revents).collect();
            drop(fds);
            let mut k = 0;
            open.retain(|fd| {
                let ev = revents[k];
                k += 1;
                if ev.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL) {
                    return false;
                }
                if ev.contains(PollFlags::IN) {
                    // Data (the front-end never writes here) or end-of-file: drain and look.
                    let mut b = [0u8; 64];
                    return rustix::net::recv(fd, &mut b, rustix::net::RecvFlags::DONTWAIT)
                        .is_ok_and(|(n, _)| n > 0);
                }
                true
            });
        }
    }
}

/// A vring as the front-end set it up.
#[derive(Debug, Default)]
struct Ring {
    num: Option<u32>,
    setup: Option<VringSetup>,
    enabled: bool,
    kick: Option<OwnedFd>,
    /// Set up (address, base) since the last session ended: a new session may start on it.
    fresh: bool,
}

/// How one message was handled.
enum Handled {
    /// Done; acknowledge if asked.
    Done,
    /// The request's natural reply.
    Reply(Vec<u8>),
    /// Done (acknowledge if asked), then end the connection.
    DoneThenEnd(End),
}

/// What went wrong with one message.
struct Reject(String);

fn reject<T>(m: impl Into<String>) -> Result<T, Reject> {
    Err(Reject(m.into()))
}

/// Where the loop stands after a message or a kick.
pub(crate) enum Step {
    Continue,
    End(End),
}

/// The synthesized resource table and the link: present once guest memory is mapped.
pub(crate) struct Bridge<'a, 'r> {
    pub(crate) link: &'a VhostLink<'r>,
    pub(crate) table: SharedRegion<'r>,
    pub(crate) rsc: RscConfig,
}

/// The protocol state of one connection.
pub(crate) struct Backend {
    pub(crate) offered_features: u64,
    pub(crate) offered_protocol: u64,
    pub(crate) features: Option<u64>,
    pub(crate) protocol: Option<u64>,
    pub(crate) regions: Vec<MemoryRegion>,
    /// Where each region starts in our mapping.
    pub(crate) starts: Vec<usize>,
    /// The mapping of guest memory, until `serve` takes it to build the link.
    pub(crate) mem: Option<Mapping>,
    rings: [Ring; 2],
    pub(crate) notifier: std::sync::Arc<Notifier>,
    /// DRIVER_OK is set in the synthesized table.
    live: bool,
    /// vq0 was kicked while the rings were not ready yet.
    pending_kick0: bool,
    pub(crate) kicks: [u64; 2],
    pub(crate) sessions_seen: u32,
    pub(crate) link_up: bool,
    pub(crate) errors: Vec<String>,
    pub(crate) events: EventSink,
}

impl Backend {
    pub(crate) fn new(offered_features: u64, offered_protocol: u64, events: EventSink) -> Self {
        Self {
            offered_features,
            offered_protocol,
            features: None,
            protocol: None,
            regions: Vec::new(),
            starts: Vec::new(),
            mem: None,
            rings: Default::default(),
            notifier: Default::default(),
            live: false,
            pending_kick0: false,
            kicks: [0; 2],
            sessions_seen: 0,
            link_up: false,
            errors: Vec::new(),
            events,
        }
    }

    fn emit(&self, e: &Event) {
        if let Some(f) = &self.events {
            f(e);
        }
    }

    /// The vrings as set up, for the report.
    pub(crate) fn vrings(&self) -> [Option<VringSetup>; 2] {
        [self.rings[0].setup, self.rings[1].setup]
    }

    fn negotiated(&self, bit: u64) -> bool {
        self.protocol.unwrap_or(0) & bit != 0
    }

    /// Waits for the next message, kick or stop, and handles it. Returns when the connection
    /// ends, or (without a bridge) as soon as guest memory is mapped.
    pub(crate) fn run(
        &mut self,
        sock: BorrowedFd<'_>,
        stop: BorrowedFd<'_>,
        bridge: Option<&Bridge<'_, '_>>,
    ) -> Option<End> {
        self.run_inner(sock, stop, bridge).err()
    }

    fn run_inner(
        &mut self,
        sock: BorrowedFd<'_>,
        stop: BorrowedFd<'_>,
        bridge: Option<&Bridge<'_, '_>>,
    ) -> Result<(), End> {
        loop {
            if bridge.is_none() && self.mem.is_some() {
                return Ok(());
            }
            let mut fds = vec![
                PollFd::from_borrowed_fd(sock, PollFlags::IN),
                PollFd::from_borrowed_fd(stop, PollFlags::IN),
            ];
            // Kicks only matter once the link exists; until then they wait in their eventfd.
            let kick_qs: Vec<usize> = if bridge.is_some() {
                (0..2).filter(|&q| self.rings[q].kick.is_some()).collect()
            } else {
                Vec::new()
            };
            for &q in &kick_qs {
                if let Some(k) = &self.rings[q].kick {
                    fds.push(PollFd::from_borrowed_fd(k.as_fd(), PollFlags::IN));
                }
            }
            match poll(&mut fds, None) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => {
                    return Err(End::Failed(format!(
                        "poll on the vhost-user socket failed: {e}"
                    )));
                }
            }
            let revents: Vec<PollFlags> = fds.iter().map(PollFd::revents).collect();
            drop(fds);
            if !revents[1].is_empty() {
                return Err(End::Stopped);
            }
            let mut kicked = [false; 2];
            for (i, &q) in kick_qs.iter().enumerate() {
                let ev = revents[2 + i];
                if ev.contains(PollFlags::IN) {
                    kicked[q] = self.read_kick(q);
                } else if !ev.is_empty() {
                    // Hung up or invalid: drop it rather than spin on it.
                    self.rings[q].kick = None;
                }
            }
            for (q, k) in kicked.into_iter().enumerate() {
                if k {
                    if let Step::End(e) = self.on_kick(q, bridge) {
                        return Err(e);
                    }
                }
            }
            if !revents[0].is_empty() {
                let msg = match proto::recv_msg(sock) {
                    Ok(m) => m,
                    Err(RecvError::Closed) => return Err(End::Disconnected),
                    Err(RecvError::Reset(e)) => {
                        return Err(
                            if e.raw_os_error() == Some(Errno::CONNRESET.raw_os_error()) {
                                End::Disconnected
                            } else {
                                End::Failed(format!("reading the vhost-user socket failed: {e}"))
                            },
                        );
                    }
                    Err(RecvError::Malformed(m)) => {
                        self.errors.push(m.clone());
                        return Err(End::ProtocolError(m));
                    }
                };
                if let Step::End(e) = self.dispatch(sock, msg, bridge) {
                    return Err(e);
                }
            }
        }
    }

    /// Reads one kick from vq `q`'s kick descriptor; `true` if there was one.
    fn read_kick(&mut self, q: usize) -> bool {
        let Some(k) = &self.rings[q].kick else {
            return false;
        };
        let mut b = [0u8; 8];
        match rustix::io::read(k, &mut b) {
            Ok(n) if n > 0 => true,
            Ok(_) => {
                // End of file: a pipe or socket whose writer went away.
                self.rings[q].kick = None;
                false
            }
            Err(_) => false,
        }
    }

    /// One kick of vq `q` (an eventfd read or an in-band `VRING_KICK`).
    fn on_kick(&mut self, q: usize, bridge: Option<&Bridge<'_, '_>>) -> Step {
        self.kicks[q] += 1;
        let Some(b) = bridge else {
            if q == 0 {
                self.pending_kick0 = true;
            }
            return Step::Continue;
        };
        if q == 0 && !self.live {
            if self.ready() {
                self.go_live(b);
            } else {
                self.pending_kick0 = true;
            }
        }
        self.notify_link(b, q)
    }

    /// Lets the link take what the driver published on vq `q`, and reports link-state changes.
    fn notify_link(&mut self, b: &Bridge<'_, '_>, q: usize) -> Step {
        let r = b.link.handle_notify(q as u32);
        self.note_link_state(b);
        match r {
            Err(rpmsg::Error::PeerViolation(v)) => {
                if self.link_up {
                    self.link_up = false;
                    self.emit(&Event::LinkDown {
                        reason: format!("peer violation: {v:?}"),
                    });
                }
                Step::End(End::PeerViolation(v))
            }
            _ => Step::Continue,
        }
    }

    /// Emits `LinkUp` when a session started since we last looked (whoever noticed it).
    fn note_link_state(&mut self, b: &Bridge<'_, '_>) {
        let s = b.link.stats().sessions;
        if s != self.sessions_seen && b.link.is_up() {
            self.sessions_seen = s;
            self.link_up = true;
            self.emit(&Event::LinkUp);
        }
    }

    /// Both rings complete, enabled and set up for a new session.
    fn ready(&self) -> bool {
        let enabled = |r: &Ring| {
            // Without protocol features a ring is enabled by its kick descriptor.
            if self.features.unwrap_or(0) & super::VHOST_USER_F_PROTOCOL_FEATURES != 0 {
                r.enabled
            } else {
                r.kick.is_some() || self.negotiated(PROTOCOL_F_INBAND_NOTIFICATIONS)
            }
        };
        self.rings
            .iter()
            .all(|r| r.fresh && r.setup.is_some() && enabled(r))
    }

    /// The driver is live: writes the rings and features into the table, then DRIVER_OK.
    fn go_live(&mut self, b: &Bridge<'_, '_>) {
        let Ok(vdev) = b.rsc.read_vdev(&b.table) else {
            return;
        };
        let f = |field| b.rsc.vdev_field(&vdev, field);
        let gfeatures = self.features.unwrap_or(0) as u32;
        let mut ok = b
            .table
            .write_u32(f(vdev_field::GFEATURES), gfeatures)
            .is_ok();
        for (k, r) in self.rings.iter().enumerate() {
            let Some(s) = r.setup else { return };
            let at = f(vdev_field::vring(k));
            ok &= b
                .table
                .write_u32(at + vdev_field::VRING_DA, s.guest_addr as u32)
                .is_ok();
            ok &= b
                .table
                .write_u32(at + vdev_field::VRING_ALIGN, s.align)
                .is_ok();
            ok &= b.table.write_u32(at + vdev_field::VRING_NUM, s.num).is_ok();
            ok &= b
                .table
                .write_u32(at + vdev_field::VRING_NOTIFYID, k as u32)
                .is_ok();
        }
        if !ok {
            return;
        }
        // A lock round trip: every reader of the status byte reads it under the link's lock, so
        // one that sees DRIVER_OK took the lock after this and sees the fields written above.
        let _ = b.link.stats();
        let status =
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK;
        if b.table.write_u8(f(vdev_field::STATUS), status).is_ok() {
            self.live = true;
            self.pending_kick0 = false;
            for r in &mut self.rings {
                r.fresh = false;
            }
        }
    }

    /// Ends the session: clears DRIVER_OK and lets the link notice (calls get `LinkDown`).
    pub(crate) fn end_session(&mut self, b: &Bridge<'_, '_>, reason: &str) {
        self.pending_kick0 = false;
        if !self.live {
            return;
        }
        self.live = false;
        if let Ok(vdev) = b.rsc.read_vdev(&b.table) {
            let _ = b
                .table
                .write_u8(b.rsc.vdev_field(&vdev, vdev_field::STATUS), 0);
        }
        let _ = b.link.poll();
        self.note_link_state(b);
        if self.link_up {
            self.link_up = false;
            self.emit(&Event::LinkDown {
                reason: reason.to_string(),
            });
        }
    }

    /// Handles one message and answers it.
    fn dispatch(
        &mut self,
        sock: BorrowedFd<'_>,
        msg: Msg,
        bridge: Option<&Bridge<'_, '_>>,
    ) -> Step {
        let request = msg.request;
        let need_reply = msg.need_reply();
        let natural = matches!(
            request,
            req::GET_FEATURES | req::GET_PROTOCOL_FEATURES | req::GET_CONFIG
        );
        let r = self.handle(msg, bridge);
        let name = req::name(request);
        let sent = match r {
            Ok(Handled::Reply(p)) => proto::send_msg(sock, request, proto::REPLY_FLAGS, &p),
            Ok(Handled::Done) if need_reply => {
                proto::send_msg(sock, request, proto::REPLY_FLAGS, &0u64.to_le_bytes())
            }
            Ok(Handled::Done) => Ok(()),
            Ok(Handled::DoneThenEnd(end)) => {
                if need_reply {
                    let _ = proto::send_msg(sock, request, proto::REPLY_FLAGS, &0u64.to_le_bytes());
                }
                return Step::End(end);
            }
            Err(Reject(why)) => {
                let m = format!("{name} (request {request}) rejected: {why}");
                self.errors.push(m.clone());
                if need_reply && !natural {
                    self.emit(&Event::Rejected { message: m });
                    proto::send_msg(sock, request, proto::REPLY_FLAGS, &1u64.to_le_bytes())
                } else {
                    // No way to tell the front-end: it would go on believing us.
                    return Step::End(End::ProtocolError(m));
                }
            }
        };
        match sent {
            Ok(()) => Step::Continue,
            Err(e) if e.raw_os_error() == Some(Errno::PIPE.raw_os_error()) => {
                Step::End(End::Disconnected)
            }
            Err(e) if e.raw_os_error() == Some(Errno::CONNRESET.raw_os_error()) => {
                Step::End(End::Disconnected)
            }
            Err(e) => Step::End(End::Failed(format!("replying to {name} failed: {e}"))),
        }
    }

    fn handle(&mut self, mut msg: Msg, bridge: Option<&Bridge<'_, '_>>) -> Result<Handled, Reject> {
        let size = msg.payload.len();
        let want_size = |n: usize| {
            if size == n {
                Ok(())
            } else {
                reject(format!("payload of {size} bytes, expected {n}"))
            }
        };
        let takes_fds = matches!(
            msg.request,
            req::SET_MEM_TABLE | req::SET_VRING_KICK | req::SET_VRING_CALL | req::SET_SLAVE_REQ_FD
        );
        if !takes_fds && !msg.fds.is_empty() {
            return reject(format!("{} unexpected file descriptor(s)", msg.fds.len()));
        }
        match msg.request {
            req::SET_OWNER => {
                want_size(0)?;
                Ok(Handled::Done)
            }
            req::GET_FEATURES => {
                want_size(0)?;
                Ok(Handled::Reply(self.offered_features.to_le_bytes().to_vec()))
            }
            req::SET_FEATURES => {
                want_size(8)?;
                let f = msg.u64_at(0);
                if f & !self.offered_features != 0 {
                    return reject(format!(
                        "features {f:#x} include bits not offered ({:#x})",
                        self.offered_features
                    ));
                }
                self.features = Some(f);
                self.emit(&Event::Features { features: f });
                Ok(Handled::Done)
            }
            req::GET_PROTOCOL_FEATURES => {
                want_size(0)?;
                Ok(Handled::Reply(self.offered_protocol.to_le_bytes().to_vec()))
            }
            req::SET_PROTOCOL_FEATURES => {
                want_size(8)?;
                let f = msg.u64_at(0);
                if f & !self.offered_protocol != 0 {
                    return reject(format!(
                        "protocol features {f:#x} include bits not offered ({:#x})",
                        self.offered_protocol
                    ));
                }
                if f & PROTOCOL_F_INBAND_NOTIFICATIONS != 0 && f & PROTOCOL_F_SLAVE_REQ == 0 {
                    return reject("INBAND_NOTIFICATIONS needs SLAVE_REQ");
                }
                self.protocol = Some(f);
                self.notifier
                    .inband
                    .store(f & PROTOCOL_F_INBAND_NOTIFICATIONS != 0, Ordering::Release);
                self.emit(&Event::ProtocolFeatures { features: f });
                Ok(Handled::Done)
            }
            req::SET_SLAVE_REQ_FD => {
                want_size(0)?;
                if !self.negotiated(PROTOCOL_F_SLAVE_REQ) {
                    return reject("SLAVE_REQ was not negotiated");
                }
                let fd = one_fd(&mut msg)?;
                *self
                    .notifier
                    .slave
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(fd);
                Ok(Handled::Done)
            }
            req::SET_MEM_TABLE => self.set_mem_table(msg),
            req::SET_VRING_NUM => {
                want_size(8)?;
                let q = ring_index(msg.u32_at(0))?;
                let num = msg.u32_at(4);
                if !num.is_power_of_two() || num > MAX_NUM {
                    return reject(format!(
                        "vring {q} num {num}: must be a power of two of at most {MAX_NUM}"
                    ));
                }
                self.reconfigure(q, bridge);
                let r = &mut self.rings[q];
                if r.num != Some(num) {
                    r.setup = None;
                }
                r.num = Some(num);
                Ok(Handled::Done)
            }
            req::SET_VRING_BASE => {
                want_size(8)?;
                let q = ring_index(msg.u32_at(0))?;
                let base = msg.u32_at(4);
                if base != 0 {
                    return reject(format!(
                        "vring {q} base {base}: only 0 is supported (each session starts the rings at index 0)"
                    ));
                }
                self.reconfigure(q, bridge);
                self.rings[q].fresh = true;
                Ok(Handled::Done)
            }
            req::SET_VRING_ADDR => {
                want_size(40)?;
                let q = ring_index(msg.u32_at(0))?;
                let s = self.vring_addr(q, &msg)?;
                self.reconfigure(q, bridge);
                self.rings[q].setup = Some(s);
                self.rings[q].fresh = true;
                self.emit(&Event::Vring(s));
                Ok(Handled::Done)
            }
            req::SET_VRING_KICK | req::SET_VRING_CALL => {
                want_size(8)?;
                let v = msg.u64_at(0);
                if v & !(NOFD | 0xff) != 0 {
                    return reject(format!("value {v:#x} has unknown bits"));
                }
                let q = ring_index((v & 0xff) as u32)?;
                let fd = if v & NOFD != 0 {
                    if !msg.fds.is_empty() {
                        return reject("file descriptor sent with the no-descriptor flag");
                    }
                    None
                } else {
                    Some(one_fd(&mut msg)?)
                };
                if msg.request == req::SET_VRING_KICK {
                    self.rings[q].kick = fd;
                } else {
                    let call = match fd {
                        Some(fd) => {
                            let socket = rustix::fs::fstat(&fd).is_ok_and(|st| {
                                rustix::fs::FileType::from_raw_mode(st.st_mode)
                                    == rustix::fs::FileType::Socket
                            });
                            Some(CallFd { fd, socket })
                        }
                        None => None,
                    };
                    self.notifier
                        .calls
                        .write()
                        .unwrap_or_else(|p| p.into_inner())[q] = call;
                }
                Ok(Handled::Done)
            }
            req::SET_VRING_ENABLE => {
                want_size(8)?;
                let q = ring_index(msg.u32_at(0))?;
                let on = match msg.u32_at(4) {
                    0 => false,
                    1 => true,
                    v => return reject(format!("vring {q} enable value {v} (0 or 1)")),
                };
                self.rings[q].enabled = on;
                self.emit(&Event::VringEnabled {
                    index: q,
                    enabled: on,
                });
                if !on {
                    if let Some(b) = bridge {
                        self.end_session(b, &format!("vring {q} disabled"));
                    }
                    self.pending_kick0 = false;
                } else if self.pending_kick0 && self.ready() {
                    if let Some(b) = bridge {
                        self.go_live(b);
                        if let Step::End(e) = self.notify_link(b, 0) {
                            return Ok(Handled::DoneThenEnd(e));
                        }
                    }
                }
                Ok(Handled::Done)
            }
            req::GET_CONFIG => {
                if !self.negotiated(PROTOCOL_F_CONFIG) {
                    return reject("CONFIG was not negotiated");
                }
                let (offset, len, flags) = config_header(&msg)?;
                // rpmsg has no config space: an empty answer says there is nothing to read.
                let _ = len;
                let mut p = Vec::with_capacity(12);
                p.extend_from_slice(&offset.to_le_bytes());
                p.extend_from_slice(&0u32.to_le_bytes());
                p.extend_from_slice(&flags.to_le_bytes());
                Ok(Handled::Reply(p))
            }
            req::SET_CONFIG => {
                if !self.negotiated(PROTOCOL_F_CONFIG) {
                    return reject("CONFIG was not negotiated");
                }
                let (offset, len, _) = config_header(&msg)?;
                if len != 0 {
                    return reject(format!(
                        "write of {len} bytes at {offset}: rpmsg has no config space"
                    ));
                }
                Ok(Handled::Done)
            }
            req::VRING_KICK => {
                want_size(8)?;
                if !self.negotiated(PROTOCOL_F_INBAND_NOTIFICATIONS) {
                    return reject("INBAND_NOTIFICATIONS was not negotiated");
                }
                let q = ring_index(msg.u32_at(0))?;
                match self.on_kick(q, bridge) {
                    Step::Continue => Ok(Handled::Done),
                    Step::End(e) => Ok(Handled::DoneThenEnd(e)),
                }
            }
            other => reject(format!("request {other} is not supported by this back-end")),
        }
    }

    /// A ring changes while a session runs on it: the session ends (the core reads the rings
    /// only when a session starts).
    fn reconfigure(&mut self, q: usize, bridge: Option<&Bridge<'_, '_>>) {
        if let (true, Some(b)) = (self.live, bridge) {
            self.end_session(b, &format!("vring {q} reconfigured"));
        }
    }

    fn set_mem_table(&mut self, mut msg: Msg) -> Result<Handled, Reject> {
        let size = msg.payload.len();
        if size < 8 {
            return reject(format!("payload of {size} bytes, expected at least 8"));
        }
        let num = msg.u32_at(0) as usize;
        if num == 0 || num > MAX_REGIONS {
            return reject(format!("{num} regions (1 to {MAX_REGIONS} supported)"));
        }
        // virtio_uml always sends room for two regions (72 bytes); others send exactly `num`.
        if size < 8 + 32 * num || size > 8 + 32 * 8 || (size - 8) % 32 != 0 {
            return reject(format!(
                "payload of {size} bytes for {num} region(s): expected 8 + 32 * k bytes, {num} <= k <= 8"
            ));
        }
        if msg.fds.len() != num {
            return reject(format!(
                "{} file descriptor(s) for {num} region(s)",
                msg.fds.len()
            ));
        }
        let page = rustix::param::page_size() as u64;
        let mut regions = Vec::with_capacity(num);
        for i in 0..num {
            let at = 8 + 32 * i;
            let r = MemoryRegion {
                guest_addr: msg.u64_at(at),
                size: msg.u64_at(at + 8),
                user_addr: msg.u64_at(at + 16),
                mmap_offset: msg.u64_at(at + 24),
            };
            if r.size == 0
                || [r.guest_addr, r.size, r.user_addr, r.mmap_offset]
                    .iter()
                    .any(|v| v % page != 0)
            {
                return reject(format!(
                    "region {i} ({r}): addresses, size and offset must be non-zero page multiples"
                ));
            }
            let ends = [
                r.guest_addr.checked_add(r.size),
                r.user_addr.checked_add(r.size),
                r.mmap_offset.checked_add(r.size),
            ];
            if ends.iter().any(Option::is_none) || usize::try_from(r.size).is_err() {
                return reject(format!("region {i} ({r}) overflows"));
            }
            for (j, o) in regions.iter().enumerate() {
                let o: &MemoryRegion = o;
                let overlap = |a: u64, b: u64| a < b + o.size && b < a + r.size;
                if overlap(r.guest_addr, o.guest_addr) || overlap(r.user_addr, o.user_addr) {
                    return reject(format!("regions {j} and {i} overlap"));
                }
            }
            let file_len = rustix::fs::fstat(&msg.fds[i]).map(|s| s.st_size as u64);
            match file_len {
                Ok(len) if len >= r.mmap_offset + r.size => {}
                Ok(len) => {
                    return reject(format!(
                        "region {i} ({r}) lies beyond the end of its {len}-byte file"
                    ));
                }
                Err(e) => return reject(format!("region {i}: fstat failed: {e}")),
            }
            regions.push(r);
        }
        if !self.regions.is_empty() {
            // Mapped already (the link is built on it): only the same table is accepted again.
            if regions == self.regions {
                return Ok(Handled::Done);
            }
            return reject("the memory table cannot change once it is mapped");
        }
        let fds = std::mem::take(&mut msg.fds);
        let segs: Vec<(BorrowedFd<'_>, u64, usize)> = fds
            .iter()
            .zip(&regions)
            .map(|(fd, r)| (fd.as_fd(), r.mmap_offset, r.size as usize))
            .collect();
        let (map, starts) = Mapping::map_segments(&segs)
            .map_err(|e| Reject(format!("mapping guest memory failed: {e}")))?;
        self.emit(&Event::MemoryTable(regions.clone()));
        self.regions = regions;
        self.starts = starts;
        self.mem = Some(map);
        Ok(Handled::Done)
    }

    /// Translates and checks `SET_VRING_ADDR`.
    fn vring_addr(&self, q: usize, msg: &Msg) -> Result<VringSetup, Reject> {
        let flags = msg.u32_at(4);
        let (desc, used, avail) = (msg.u64_at(8), msg.u64_at(16), msg.u64_at(24));
        if flags != 0 {
            return reject(format!(
                "vring {q} flags {flags:#x}: logging is not supported"
            ));
        }
        let Some(num) = self.rings[q].num else {
            return reject(format!("vring {q}: SET_VRING_ADDR before SET_VRING_NUM"));
        };
        if self.regions.is_empty() {
            return reject(format!("vring {q}: SET_VRING_ADDR before SET_MEM_TABLE"));
        }
        let n = u64::from(num);
        if desc % 16 != 0 {
            return reject(format!(
                "vring {q} descriptors at {desc:#x}: not 16-byte aligned"
            ));
        }
        if avail != desc.wrapping_add(16 * n) {
            return reject(format!(
                "vring {q}: avail ring at {avail:#x}, expected right after the {num} descriptors at {:#x} (rings must be contiguous as vring_create_virtqueue lays them out)",
                desc.wrapping_add(16 * n)
            ));
        }
        let rel_used = used.wrapping_sub(desc);
        let layout = (4..=20)
            .filter_map(|k| VringLayout::new(num as u16, 1 << k).ok())
            .find(|l| l.used as u64 == rel_used)
            .ok_or_else(|| {
                Reject(format!(
                    "vring {q}: used ring at {used:#x} is not at a power-of-two alignment after the avail ring ({:#x} + {} bytes)",
                    avail,
                    6 + 2 * n
                ))
            })?;
        let size = layout.size as u64;
        let region = self
            .regions
            .iter()
            .find(|r| desc >= r.user_addr && desc - r.user_addr <= r.size.saturating_sub(size))
            .ok_or_else(|| {
                Reject(format!(
                    "vring {q} at {desc:#x} ({size} bytes) is not inside one memory region"
                ))
            })?;
        let guest = region.guest_addr + (desc - region.user_addr);
        if guest > u64::from(u32::MAX) {
            return reject(format!(
                "vring {q} at guest address {guest:#x}: rings above 4 GiB are not supported (the resource table's da is 32-bit)"
            ));
        }
        Ok(VringSetup {
            index: q,
            num,
            desc,
            avail,
            used,
            guest_addr: guest,
            align: layout.align as u32,
        })
    }
}

fn ring_index(i: u32) -> Result<usize, Reject> {
    if i < 2 {
        Ok(i as usize)
    } else {
        reject(format!("vring index {i}: rpmsg has two vrings"))
    }
}

fn one_fd(msg: &mut Msg) -> Result<OwnedFd, Reject> {
    match msg.fds.len() {
        1 => msg
            .fds
            .pop()
            .ok_or_else(|| Reject("file descriptor missing".into())),
        0 => reject("file descriptor missing"),
        n => reject(format!("{n} file descriptors, expected 1")),
    }
}

/// `{u32 offset; u32 size; u32 flags; u8 payload[size]}` of GET/SET_CONFIG, checked.
fn config_header(msg: &Msg) -> Result<(u32, u32, u32), Reject> {
    let size = msg.payload.len();
    if size < 12 {
        return reject(format!("payload of {size} bytes, expected at least 12"));
    }
    let (offset, len, flags) = (msg.u32_at(0), msg.u32_at(4), msg.u32_at(8));
    if len > 256 || size != 12 + len as usize {
        return reject(format!(
            "config size {len} with a payload of {size} bytes (expected 12 + size, size <= 256)"
        ));
    }
    Ok((offset, len, flags))
}

/// The fuzzer's entry (`--cfg fuzzing` only, as cargo-fuzz builds): the front-end's messages
/// as bytes on the wire, each received with `recv_msg` and handled by a fresh back-end (no link
/// yet, as before guest memory is mapped). Message `k` carries `(flags >> 16) & 7` anonymous
/// files of two pages as its descriptors (bits the protocol does not use), so the requests that
/// take descriptors are reached.
///
/// Checks, beyond "no panic": every vring the back-end accepted lies inside one memory region
/// at a guest address below 4 GiB, and the regions it mapped do not overlap.
#[cfg(fuzzing)]
pub(crate) fn fuzz_messages(data: &[u8]) {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let Ok((mut front, back)) = UnixStream::pair() else {
        return;
    };
    // At most what fits the socket's buffer, so the write never blocks.
    let data = &data[..data.len().min(32 * 1024)];
    if front.write_all(data).is_err() {
        return;
    }
    drop(front);
    // Everything a device offers by default, in-band notifications included.
    let opts = super::DeviceOptions::new("fuzz");
    let mut be = Backend::new(
        opts.features(),
        opts.protocol_features() | PROTOCOL_F_INBAND_NOTIFICATIONS,
        None,
    );
    let page = rustix::param::page_size() as u64;
    while let Ok(mut msg) = proto::recv_msg(back.as_fd()) {
        for _ in 0..(msg.flags >> 16) & 7 {
            let Ok(fd) = rustix::fs::memfd_create("fuzz", rustix::fs::MemfdFlags::CLOEXEC) else {
                return;
            };
            if rustix::fs::ftruncate(&fd, 2 * page).is_err() {
                return;
            }
            msg.fds.push(fd);
        }
        let _ = be.handle(msg, None);
        for (i, r) in be.regions.iter().enumerate() {
            for o in &be.regions[..i] {
                let apart = |a: u64, b: u64, la: u64, lb: u64| a + la <= b || b + lb <= a;
                assert!(
                    apart(r.guest_addr, o.guest_addr, r.size, o.size)
                        && apart(r.user_addr, o.user_addr, r.size, o.size),
                    "overlapping regions accepted: {r} and {o}"
                );
            }
        }
        for s in be.vrings().into_iter().flatten() {
            let size = rpmsg::wire::vring::VringLayout::new(s.num as u16, s.align as usize)
                .expect("an accepted ring has a valid layout")
                .size as u64;
            assert!(
                be.regions
                    .iter()
                    .any(|r| s.desc >= r.user_addr && s.desc + size <= r.user_addr + r.size),
                "vring {s:?} accepted outside every memory region"
            );
            assert!(
                s.guest_addr <= u64::from(u32::MAX),
                "vring {s:?} above 4 GiB"
            );
        }
    }
}
