//! The receive half of the engine: take one message from the peer's ring, check it, queue it
//! or hand its callback back to the shell, give buffers back.

use super::{Effects, Io, NIL, Next, Phase, Queues, RxMeta, RxState, Slot, State, phase_error};
use crate::buffer::RxInfo;
use crate::endpoint::RxMode;
use crate::error::Error;
use crate::ns::Announcement;
use crate::ns::NsKind;
use crate::port::{AddressMap, Platform};
use crate::virtqueue::Violation;
use crate::wire::ns::{NS_MSG_LEN, Name, NsRepr};
use crate::wire::rpmsg::{HEADER_LEN, RPMSG_ADDR_ANY, RPMSG_NS_ADDR, RpmsgRepr};
use crate::wire::vring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};

impl<'r, const N: usize, const EPTS: usize> State<'r, N, EPTS> {
    /// Takes one message from the peer's ring (or moves the parked one on), checks it and
    /// dispatches it: queued or dropped here, or handed back as a callback for the shell to
    /// run without the lock. The shell asks `check_device_up` once per critical section
    /// before its first step, not per message.
    pub(crate) fn rx_step<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        fx: &mut Effects,
    ) -> Result<Next<'r>, Error> {
        match self.phase {
            Phase::Up => {}
            Phase::Down | Phase::Broken(_) => return Err(phase_error(self.phase)),
            Phase::Idle | Phase::Waiting | Phase::Reset => return Ok(Next::Idle),
        }
        if self.parked != NIL {
            if !self.unpark(io, fx) {
                return Ok(Next::Idle);
            }
            return Ok(Next::Again);
        }
        let base = io.region.base_addr();
        // Take one buffer from the peer: (id, buffer offset, bytes usable, length to return).
        let (id, buf, cap, ret_len): (u16, usize, u32, u32) = match &mut self.queues {
            Queues::None => return Ok(Next::Idle),
            #[cfg(feature = "role-driver")]
            Queues::Driver { rx, rx_pool, .. } => {
                match rx.pop_used_with(&io.region, &io.mem()) {
                    Ok(None) => return Ok(Next::Idle),
                    Ok(Some((id, used_len))) => {
                        let pool = *rx_pool;
                        if id >= pool.count {
                            // Outstanding but not a pool buffer cannot happen: we only post pool ids.
                            return Ok(Next::Again);
                        }
                        if used_len < HEADER_LEN as u32 {
                            // No message was written: the header there is an old one.
                            let v = Violation::ShortUsed { id, len: used_len };
                            Self::violation(&mut self.stats, v);
                            self.stats.rx_malformed = self.stats.rx_malformed.wrapping_add(1);
                            self.return_rx(io, fx, id, 0)?;
                            return Ok(Next::Again);
                        }
                        // Bound by used.len (wire.md 14, driver rule 4), at least a header now.
                        let cap = pool.size.min(used_len);
                        (id, pool.buffer(id), cap, 0)
                    }
                    Err(v) if v.breaks_ring() => {
                        return Err(self.fatal(fx, v));
                    }
                    Err(v) => {
                        Self::violation(&mut self.stats, v);
                        return Ok(Next::Again);
                    }
                }
            }
            #[cfg(feature = "role-device")]
            Queues::Device { rx, .. } => {
                match rx.pop_avail_with(&io.region, &io.mem()) {
                    Ok(None) => return Ok(Next::Idle),
                    Ok(Some(p)) => {
                        // vring 1 flags: RPMsg-Lite sets WRITE there; only chaining is refused.
                        let bad = if p.flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT) != 0 {
                            Some(Violation::Chained {
                                id: p.id,
                                flags: p.flags,
                            })
                        } else if (p.len as usize) < HEADER_LEN {
                            Some(Violation::LengthTooLarge { len: 0, cap: p.len })
                        } else {
                            None
                        };
                        let off = io.platform.address_map().to_offset(p.addr, p.len as usize);
                        let area =
                            off.map(|o| io.in_buffer_area(o, o.saturating_add(p.len as usize)));
                        let bad = match (bad, area) {
                            (None, Some(Err(v))) => Some(v),
                            (bad, _) => bad,
                        };
                        match (bad, off) {
                            (None, Some(off)) if io.region.contains(off, p.len as usize) => {
                                (p.id, off, p.len, p.len)
                            }
                            (bad, _) => {
                                let v = bad.unwrap_or(Violation::BadAddress {
                                    addr: p.addr,
                                    len: p.len,
                                });
                                Self::violation(&mut self.stats, v);
                                self.stats.rx_malformed = self.stats.rx_malformed.wrapping_add(1);
                                let _ = rx.push_used_with(&io.region, p.id, p.len, &io.mem());
                                io.device_notify(rx, 1, fx);
                                return Ok(Next::Again);
                            }
                        }
                    }
                    Err(v) if v.breaks_ring() => {
                        self.ring_fault(io, fx, v)?;
                        return Ok(Next::Idle);
                    }
                    Err(v) => {
                        Self::violation(&mut self.stats, v);
                        return Ok(Next::Again);
                    }
                }
            }
        };
        io.platform.cache_invalidate(base + buf, HEADER_LEN);
        let mut hb = [0u8; HEADER_LEN];
        io.region.copy_out(buf, &mut hb)?;
        let hdr = RpmsgRepr::from_bytes(&hb);
        let room = cap - HEADER_LEN as u32;
        if u32::from(hdr.len) > room {
            Self::violation(
                &mut self.stats,
                Violation::LengthTooLarge {
                    len: u32::from(hdr.len),
                    cap: room,
                },
            );
            self.stats.rx_malformed = self.stats.rx_malformed.wrapping_add(1);
            self.return_rx(io, fx, id, ret_len)?;
            return Ok(Next::Again);
        }
        let payload = buf + HEADER_LEN;
        io.platform
            .cache_invalidate(base + payload, usize::from(hdr.len));
        if hdr.dst == RPMSG_NS_ADDR && self.ns {
            let mut nb = [0u8; NS_MSG_LEN];
            let n = usize::from(hdr.len).min(NS_MSG_LEN);
            let parsed = match nb.get_mut(..n) {
                Some(dst) if usize::from(hdr.len) == NS_MSG_LEN => {
                    io.region.copy_out(payload, dst)?;
                    NsRepr::parse(&nb).ok()
                }
                _ => None,
            };
            self.return_rx(io, fx, id, ret_len)?;
            let Some(ns) = parsed else {
                self.stats.ns_malformed = self.stats.ns_malformed.wrapping_add(1);
                return Ok(Next::Again);
            };
            self.stats.ns_received = self.stats.ns_received.wrapping_add(1);
            self.stats.rx_messages = self.stats.rx_messages.wrapping_add(1);
            return Ok(self.on_ns(ns));
        }
        let Some(slot) = self
            .slots
            .iter()
            .position(|s| s.in_use && s.addr == hdr.dst)
        else {
            self.stats.rx_unknown_dst = self.stats.rx_unknown_dst.wrapping_add(1);
            self.return_rx(io, fx, id, ret_len)?;
            return Ok(Next::Again);
        };
        self.stats.rx_messages = self.stats.rx_messages.wrapping_add(1);
        let info = RxInfo {
            id,
            epoch: self.epoch,
            offset: payload,
            len: hdr.len,
            src: hdr.src,
            dst: hdr.dst,
        };
        if let Some(m) = self.rx_meta.get_mut(usize::from(id)) {
            *m = RxMeta {
                state: RxState::Held,
                next: NIL,
                offset: payload,
                len: hdr.len,
                src: hdr.src,
                dst: hdr.dst,
                ret_len,
            };
        }
        self.stats.held = self.stats.held.wrapping_add(1);
        let s = &mut self.slots[slot];
        // OpenAMP's address learning: an endpoint without a destination adopts the sender.
        if s.dst == RPMSG_ADDR_ANY && hdr.src != RPMSG_ADDR_ANY {
            s.dst = hdr.src;
        }
        match s.mode {
            RxMode::Callback(h) => Ok(Next::Callback(h, info)),
            RxMode::Queue(_) => {
                if let Some(m) = self.rx_meta.get_mut(usize::from(id)) {
                    m.state = RxState::Parked;
                }
                self.parked = id;
                if self.unpark(io, fx) {
                    Ok(Next::Again)
                } else {
                    self.stats.backpressure = self.stats.backpressure.wrapping_add(1);
                    Ok(Next::Idle)
                }
            }
        }
    }

    /// Moves the parked message into its endpoint's queue if there is room. `true` when the
    /// park is empty afterwards.
    pub(crate) fn unpark<P: Platform>(&mut self, io: &Io<'_, 'r, P>, fx: &mut Effects) -> bool {
        let id = self.parked;
        let Some(m) = self.rx_meta.get(usize::from(id)).copied() else {
            self.parked = NIL;
            return true;
        };
        let Some(slot) = self.slots.iter().position(|s| s.in_use && s.addr == m.dst) else {
            // Its endpoint went away meanwhile.
            self.parked = NIL;
            self.stats.rx_unknown_dst = self.stats.rx_unknown_dst.wrapping_add(1);
            self.stats.rx_messages = self.stats.rx_messages.wrapping_sub(1);
            self.stats.held = self.stats.held.saturating_sub(1);
            let _ = self.return_rx(io, fx, id, m.ret_len);
            return true;
        };
        let s = &mut self.slots[slot];
        let depth = match s.mode {
            RxMode::Queue(d) => d.max(1),
            RxMode::Callback(_) => 0,
        };
        if s.q_len >= depth {
            return false;
        }
        if s.q_tail == NIL {
            s.q_head = id;
        } else if let Some(t) = self.rx_meta.get_mut(usize::from(s.q_tail)) {
            t.next = id;
        }
        s.q_tail = id;
        s.q_len += 1;
        if let Some(m) = self.rx_meta.get_mut(usize::from(id)) {
            m.state = RxState::Queued;
            m.next = NIL;
        }
        self.parked = NIL;
        fx.wake = true;
        true
    }

    pub(crate) fn on_ns(&mut self, ns: NsRepr) -> Next<'r> {
        let kind = if ns.flags.is_destroy() {
            NsKind::Destroy
        } else {
            NsKind::Create
        };
        let mut bound = None;
        for s in self
            .slots
            .iter_mut()
            .filter(|s| s.in_use && s.name == ns.name && !s.name.is_empty())
        {
            match kind {
                NsKind::Create if s.dst == RPMSG_ADDR_ANY => {
                    s.dst = ns.addr;
                    bound = bound.or(Some(s.addr));
                }
                NsKind::Destroy if s.dst == ns.addr => {
                    s.dst = RPMSG_ADDR_ANY;
                    bound = bound.or(Some(s.addr));
                }
                _ => {}
            }
        }
        // Remember what the peer offers, so an endpoint created later with the same name (and
        // no destination) binds at once instead of missing an announcement that came first.
        match kind {
            NsKind::Create => {
                let at = self
                    .seen
                    .iter()
                    .position(|e| e.is_some_and(|(n, _)| n == ns.name))
                    .or_else(|| self.seen.iter().position(Option::is_none));
                let at = at.unwrap_or_else(|| {
                    // Full: forget the oldest in turn.
                    self.seen_next = (self.seen_next + 1) % EPTS.max(1);
                    self.seen_next
                });
                if let Some(e) = self.seen.get_mut(at) {
                    *e = Some((ns.name, ns.addr));
                }
            }
            NsKind::Destroy => {
                for e in self.seen.iter_mut() {
                    if *e == Some((ns.name, ns.addr)) {
                        *e = None;
                    }
                }
            }
        }
        let a = Announcement {
            name: ns.name,
            addr: ns.addr,
            kind,
        };
        match (self.ns_handler, bound) {
            (Some(h), None) => Next::Ns(h, a),
            (Some(h), Some(local)) => Next::NsBound(h, a, local),
            (None, _) => Next::Again,
        }
    }
    /// Gives a receive buffer back to the peer.
    #[cfg_attr(not(feature = "role-device"), allow(unused_variables))]
    pub(crate) fn return_rx<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        fx: &mut Effects,
        id: u16,
        ret_len: u32,
    ) -> Result<(), Error> {
        if let Some(m) = self.rx_meta.get_mut(usize::from(id)) {
            m.state = RxState::Free;
        }
        match &mut self.queues {
            Queues::None => Ok(()),
            #[cfg(feature = "role-driver")]
            Queues::Driver { rx, rx_pool, .. } => {
                let addr = io
                    .platform
                    .address_map()
                    .to_addr(rx_pool.buffer(id))
                    .ok_or(Error::Config("buffer has no peer address"))?;
                // Rewrite the whole descriptor: the device could have scribbled on it.
                rx.ring()
                    .write_desc(&io.region, id, addr, rx_pool.size, VRING_DESC_F_WRITE)?;
                rx.publish_with(&io.region, id, &io.mem())?;
                if rx.needs_notify_with(&io.region, &io.mem())? {
                    fx.notify[0] = true;
                }
                Ok(())
            }
            #[cfg(feature = "role-device")]
            Queues::Device { rx, .. } => {
                // used.len = desc.len satisfies every reader (wire.md 4.5).
                rx.push_used_with(&io.region, id, ret_len, &io.mem())?;
                io.device_notify(rx, 1, fx);
                Ok(())
            }
        }
    }

    /// Takes the head of an endpoint's queue, if any (under the lock).
    pub(crate) fn recv_locked<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        fx: &mut Effects,
        slot: u8,
        generation: u16,
        max_len: usize,
    ) -> Result<Option<RxInfo>, Error> {
        let i = self.slot_check(slot, generation)?;
        if matches!(self.slots[i].mode, RxMode::Callback(_)) {
            return Err(Error::NotQueued);
        }
        let head = self.slots[i].q_head;
        let Some(m) = self
            .rx_meta
            .get(usize::from(head))
            .copied()
            .filter(|_| head != NIL)
        else {
            return match self.phase {
                Phase::Down | Phase::Broken(_) | Phase::Reset => Err(phase_error(self.phase)),
                Phase::Idle | Phase::Waiting | Phase::Up => Ok(None),
            };
        };
        if usize::from(m.len) > max_len {
            return Err(Error::BufferTooSmall {
                need: usize::from(m.len),
                have: max_len,
            });
        }
        let s = &mut self.slots[i];
        s.q_head = m.next;
        if s.q_head == NIL {
            s.q_tail = NIL;
        }
        s.q_len -= 1;
        self.rx_meta[usize::from(head)].state = RxState::Held;
        if self.parked != NIL {
            self.unpark(io, fx);
        }
        Ok(Some(RxInfo {
            id: head,
            epoch: self.epoch,
            offset: m.offset,
            len: m.len,
            src: m.src,
            dst: m.dst,
        }))
    }

    pub(crate) fn slot_check(&self, slot: u8, generation: u16) -> Result<usize, Error> {
        let i = usize::from(slot);
        match self.slots.get(i) {
            Some(s) if s.in_use && s.generation == generation => Ok(i),
            _ => Err(Error::EndpointDestroyed),
        }
    }

    /// The application is done with a received buffer: give it back to the peer (nothing
    /// for a buffer of an earlier session, or one not held).
    pub(crate) fn release<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        fx: &mut Effects,
        info: RxInfo,
    ) {
        let held = self.epoch == info.epoch
            && self
                .rx_meta
                .get(usize::from(info.id))
                .is_some_and(|m| m.state == RxState::Held);
        if !held {
            return;
        }
        self.stats.held = self.stats.held.saturating_sub(1);
        let ret = self.rx_meta[usize::from(info.id)].ret_len;
        if matches!(self.phase, Phase::Up) {
            let _ = self.return_rx(io, fx, info.id, ret);
        } else {
            // The link is down or broken: nobody takes the buffer back any more.
            self.rx_meta[usize::from(info.id)].state = RxState::Free;
        }
    }

    /// Destroys the endpoint in `slot`: its queued messages go back to the peer. Returns
    /// whether its CREATE was announced (the shell then announces the DESTROY), its address
    /// and name.
    pub(crate) fn destroy_endpoint<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        fx: &mut Effects,
        slot: u8,
        generation: u16,
    ) -> Result<(bool, u32, Name), Error> {
        let i = self.slot_check(slot, generation)?;
        // Give queued messages back to the peer.
        let mut id = self.slots[i].q_head;
        let mut guard = 0;
        while id != NIL && guard <= N {
            let m = self
                .rx_meta
                .get(usize::from(id))
                .copied()
                .unwrap_or(RxMeta::EMPTY);
            self.stats.held = self.stats.held.saturating_sub(1);
            let _ = self.return_rx(io, fx, id, m.ret_len);
            id = m.next;
            guard += 1;
        }
        let s = &mut self.slots[i];
        let out = (
            s.announced && matches!(self.phase, Phase::Up),
            s.addr,
            s.name,
        );
        *s = Slot {
            generation: s.generation,
            ..Slot::EMPTY
        };
        if self.parked != NIL {
            self.unpark(io, fx);
        }
        Ok(out)
    }

    /// Takes the head of an endpoint's queue, copies its payload into `buf` and gives the
    /// buffer back: a whole receive in one step. `Ok(None)` when the queue is empty.
    pub(crate) fn recv_into<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        fx: &mut Effects,
        slot: u8,
        generation: u16,
        buf: &mut [u8],
    ) -> Result<Option<(usize, u32)>, Error> {
        let Some(info) = self.recv_locked(io, fx, slot, generation, buf.len())? else {
            return Ok(None);
        };
        let n = usize::from(info.len);
        // recv_locked refused a message longer than `buf`.
        let r = match buf.get_mut(..n) {
            Some(dst) => io.region.copy_out(info.offset, dst).map_err(Error::from),
            None => Err(Error::BufferTooSmall {
                need: n,
                have: buf.len(),
            }),
        };
        self.release(io, fx, info);
        r.map(|()| Some((n, info.src)))
    }
}
