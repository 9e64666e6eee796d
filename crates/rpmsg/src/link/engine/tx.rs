//! The transmit half of the engine: take a free buffer from the peer (device) or the pool
//! (driver), publish a written message.

use super::{Effects, Io, Phase, Queues, State, phase_error};
use crate::buffer::TxInfo;
use crate::error::Error;
use crate::port::AddressMap;
use crate::port::Platform;
use crate::virtqueue::{Coherence, Violation};
use crate::wire::rpmsg::{HEADER_LEN, RpmsgRepr};
use crate::wire::vring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT};

impl<'r, const N: usize, const EPTS: usize> State<'r, N, EPTS> {
    /// Takes a free transmit buffer, if one is there now.
    pub(crate) fn try_alloc<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        fx: &mut Effects,
    ) -> Result<Option<TxInfo>, Error> {
        if !matches!(self.phase, Phase::Up) {
            return Err(phase_error(self.phase));
        }
        let epoch = self.epoch;
        #[cfg(feature = "role-device")]
        let rings = match &self.queues {
            Queues::Device { rx, tx } => [rx.ring(), tx.ring()].map(|r| (r.base, r.layout.size)),
            _ => [(0, 0); 2],
        };
        // Bounded: each round consumes at least one ring entry, and a ring holds at most N.
        for _ in 0..=N {
            match &mut self.queues {
                Queues::None => return Err(Error::NotReady),
                #[cfg(feature = "role-driver")]
                Queues::Driver { tx, tx_pool, .. } => {
                    let pool = *tx_pool;
                    if self.nfree > 0 {
                        self.nfree -= 1;
                        let id = self.free[self.nfree];
                        let cap = pool.size as usize - HEADER_LEN;
                        return Ok(Some(TxInfo {
                            id,
                            epoch,
                            offset: pool.buffer(id),
                            cap,
                            desc_len: pool.size,
                        }));
                    }
                    // Reclaim every returned buffer in one pass (one read of used.idx).
                    let (free, nfree) = (&mut self.free, &mut self.nfree);
                    let reclaimed = tx.pop_used_all_with(&io.region, &io.mem(), |id, _| {
                        // Outstanding but not a pool buffer cannot happen: we only post pool ids.
                        if id < pool.count {
                            if let Some(f) = free.get_mut(*nfree) {
                                *f = id;
                                *nfree += 1;
                            }
                        }
                    });
                    match reclaimed {
                        Ok(0) => return Ok(None),
                        Ok(_) => {}
                        Err(v) if v.breaks_ring() => {
                            return Err(self.fatal(fx, v));
                        }
                        Err(v) => Self::violation(&mut self.stats, v),
                    }
                }
                #[cfg(feature = "role-device")]
                Queues::Device { tx, .. } => {
                    if self.nfree > 0 {
                        self.nfree -= 1;
                        let id = self.free[self.nfree];
                        let len = self.tx_desc_len.get(usize::from(id)).copied().unwrap_or(0);
                        io.mem().invalidate(tx.ring().desc(id), 16);
                        let (addr, _, _) = tx.ring().read_desc(&io.region, id)?;
                        match io.checked_buffer(addr, len, rings) {
                            Ok(off) => {
                                let cap = len as usize - HEADER_LEN;
                                return Ok(Some(TxInfo {
                                    id,
                                    epoch,
                                    offset: off,
                                    cap,
                                    desc_len: len,
                                }));
                            }
                            // The driver moved a descriptor we hold: keep it (see below).
                            Err(v) => Self::violation(&mut self.stats, v),
                        }
                        continue;
                    }
                    match tx.pop_avail_with(&io.region, &io.mem()) {
                        Ok(None) => return Ok(None),
                        Ok(Some(p)) => {
                            let checked = io.checked_buffer(p.addr, p.len, rings);
                            if let Ok(off) = checked {
                                if p.flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT) == 0 {
                                    let cap = p.len as usize - HEADER_LEN;
                                    if let Some(d) = self.tx_desc_len.get_mut(usize::from(p.id)) {
                                        *d = p.len;
                                    }
                                    return Ok(Some(TxInfo {
                                        id: p.id,
                                        epoch,
                                        offset: off,
                                        cap,
                                        desc_len: p.len,
                                    }));
                                }
                            }
                            // Kept, never returned: handed back, the buffer would still hold
                            // the message it carried last, and every driver reads that header
                            // again (Linux's `used.len - 16` check wraps for a length below
                            // 16; OpenAMP and RPMsg-Lite do not check): a ghost message. We
                            // cannot write an empty one there instead, since the buffer failed
                            // our checks. The driver loses a buffer it spoiled.
                            let v = match checked {
                                Ok(_) => Violation::Chained {
                                    id: p.id,
                                    flags: p.flags,
                                },
                                Err(v) => v,
                            };
                            Self::violation(&mut self.stats, v);
                        }
                        Err(v) if v.breaks_ring() => {
                            self.ring_fault(io, fx, v)?;
                            return Err(phase_error(self.phase));
                        }
                        Err(v) => Self::violation(&mut self.stats, v),
                    }
                }
            }
        }
        Ok(None)
    }

    /// A sender starts waiting for a buffer: the driver asks the device to interrupt when it
    /// returns one (clear, full fence, re-check: a buffer returned before is seen by the
    /// sender's next attempt, a later one is announced).
    #[cfg_attr(not(feature = "role-driver"), allow(unused_variables))]
    pub(crate) fn tx_wait_begin<P: Platform>(&mut self, io: &Io<'_, 'r, P>) {
        self.tx_waiters += 1;
        #[cfg(feature = "role-driver")]
        if let Queues::Driver { tx, .. } = &self.queues {
            let _ = tx.enable_interrupt_with(&io.region, &io.mem());
        }
    }

    /// A sender stopped waiting for a buffer: with none left waiting, the driver asks the
    /// device not to interrupt for returned buffers again.
    #[cfg_attr(not(feature = "role-driver"), allow(unused_variables))]
    pub(crate) fn tx_wait_end<P: Platform>(&mut self, io: &Io<'_, 'r, P>) {
        self.tx_waiters = self.tx_waiters.saturating_sub(1);
        #[cfg(feature = "role-driver")]
        if self.tx_waiters == 0 {
            if let Queues::Driver { tx, .. } = &self.queues {
                let _ = tx.set_no_interrupt_with(&io.region, true, &io.mem());
            }
        }
    }

    /// A buffer of an earlier session, or of a link that is no longer up, must not be
    /// written: its memory may be the driver's again.
    pub(crate) fn tx_current(&self, t: &TxInfo) -> Result<(), Error> {
        if !matches!(self.phase, Phase::Up) || self.epoch != t.epoch {
            return Err(phase_error(if matches!(self.phase, Phase::Up) {
                Phase::Down
            } else {
                self.phase
            }));
        }
        Ok(())
    }

    /// Driver: asks the device to interrupt when it returns a transmit buffer, and tells
    /// whether one came back meanwhile (clear, full fence, re-check, as `alloc_blocking`
    /// does): a buffer returned before the flag was cleared is seen now, a later one is
    /// announced. A device has nothing to ask for.
    #[cfg_attr(not(feature = "role-driver"), allow(unused_variables))]
    pub(crate) fn ask_tx_interrupt<P: Platform>(&self, io: &Io<'_, 'r, P>) -> bool {
        match &self.queues {
            #[cfg(feature = "role-driver")]
            Queues::Driver { tx, .. } => {
                matches!(tx.enable_interrupt_with(&io.region, &io.mem()), Ok(true))
            }
            _ => false,
        }
    }

    /// Writes the header of `t` (its payload is written), publishes it, asks for the doorbell.
    /// Checks the buffer's session first: nothing is written into a buffer of an old one.
    pub(crate) fn publish<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        fx: &mut Effects,
        t: &TxInfo,
        hdr: &RpmsgRepr,
    ) -> Result<(), Error> {
        // Checked before anything is written: no write for a buffer of an old session.
        self.tx_current(t)?;
        io.region.copy_in(t.offset, &hdr.to_bytes())?;
        io.platform.cache_clean(
            io.region.base_addr() + t.offset,
            HEADER_LEN + usize::from(hdr.len),
        );
        match &mut self.queues {
            Queues::None => return Err(Error::LinkDown),
            #[cfg(feature = "role-driver")]
            Queues::Driver { tx, tx_pool, .. } => {
                let addr = io
                    .platform
                    .address_map()
                    .to_addr(tx_pool.buffer(t.id))
                    .ok_or(Error::Config("buffer has no peer address"))?;
                // Linux's rule: len = header + payload, flags 0 (wire.md 14, driver rule 3).
                tx.ring().write_desc(
                    &io.region,
                    t.id,
                    addr,
                    (HEADER_LEN + usize::from(hdr.len)) as u32,
                    0,
                )?;
                tx.publish_with(&io.region, t.id, &io.mem())?;
                if tx.needs_notify_with(&io.region, &io.mem())? {
                    fx.notify[1] = true;
                }
            }
            #[cfg(feature = "role-device")]
            Queues::Device { tx, .. } => {
                tx.push_used_with(&io.region, t.id, t.desc_len, &io.mem())?;
                io.device_notify(tx, 0, fx);
            }
        }
        self.stats.tx_messages = self.stats.tx_messages.wrapping_add(1);
        Ok(())
    }

    /// A whole send in one step: takes a free buffer and sends `data` in it (`send_in`).
    /// `Ok(false)` when no buffer is free now.
    pub(crate) fn send<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        fx: &mut Effects,
        hdr: &RpmsgRepr,
        data: &[u8],
    ) -> Result<bool, Error> {
        let Some(t) = self.try_alloc(io, fx)? else {
            return Ok(false);
        };
        self.send_in(io, fx, t, hdr, data).map(|()| true)
    }

    /// Writes `data` and `hdr` into the buffer `t` we took and publishes it. On an error the
    /// buffer stays ours (free for the next send); a buffer of an earlier session is not
    /// written at all.
    pub(crate) fn send_in<P: Platform>(
        &mut self,
        io: &Io<'_, 'r, P>,
        fx: &mut Effects,
        t: TxInfo,
        hdr: &RpmsgRepr,
        data: &[u8],
    ) -> Result<(), Error> {
        self.tx_current(&t)?;
        let r = if data.len() > t.cap {
            Err(Error::PayloadTooLarge {
                len: data.len(),
                max: t.cap,
            })
        } else {
            io.region
                .copy_in(t.offset + HEADER_LEN, data)
                .map_err(Error::from)
                .and_then(|()| self.publish(io, fx, &t, hdr))
        };
        if r.is_err() {
            self.free_tx(&t);
        }
        r
    }

    /// A transmit buffer taken and not sent goes back to the free list (not one of an
    /// earlier session: that buffer went with it).
    pub(crate) fn free_tx(&mut self, t: &TxInfo) {
        if self.epoch == t.epoch && self.nfree < N {
            self.free[self.nfree] = t.id;
            self.nfree += 1;
        }
    }
}
