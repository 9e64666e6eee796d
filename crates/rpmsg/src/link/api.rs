//! The blocking half of the shell: waiting, sending, endpoints, announcements, held buffers,
//! shutdown. Each call is one or a few critical sections around engine steps.

use super::Link;
use super::Role;
use super::engine::{Phase, Queues, RxState, Slot, State, phase_error};
use crate::buffer::{HeldError, HeldRx, RxBuffer, RxInfo, TxInfo};
use crate::endpoint::{Endpoint, EndpointConfig};
use crate::error::Error;
use crate::layout::LayoutConfig;
use crate::ns::NsKind;
use crate::port::{Environment, Platform, Timeout};
use crate::wire::ns::{Name, NsFlags, NsRepr};
use crate::wire::rpmsg::{RPMSG_ADDR_ANY, RPMSG_NS_ADDR, RPMSG_RESERVED_ADDRESSES, RpmsgRepr};
use crate::wire::rsc::vdev_field;
use core::sync::atomic::Ordering;

impl<'r, P: Platform, E: Environment, const N: usize, const EPTS: usize> Link<'r, P, E, N, EPTS> {
    /// Waits up to `timeout` for `attempt` to produce something, polling the rings meanwhile.
    pub(super) fn wait_for<T>(
        &self,
        timeout: Timeout,
        empty: Error,
        poll_rx: bool,
        mut attempt: impl FnMut() -> Result<Option<T>, Error>,
    ) -> Result<T, Error> {
        // The fast path reads no clock: most calls succeed at once.
        if let Some(t) = attempt()? {
            return Ok(t);
        }
        if timeout == Timeout::NoWait {
            return Err(empty);
        }
        let deadline = timeout.deadline(self.env.now());
        // Counted before the next attempt, so whoever makes progress after that attempt sees
        // a waiter and wakes it (SeqCst on both sides: the count and the attempt cannot pass
        // each other).
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let r = loop {
            match attempt() {
                Ok(Some(t)) => break Ok(t),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            let now = self.env.now();
            if deadline.is_some_and(|d| now >= d) {
                break Err(Error::Timeout);
            }
            let nap = now.saturating_add(self.cfg.poll_interval);
            self.env.wait(Some(deadline.map_or(nap, |d| d.min(nap))));
            let polled = if poll_rx {
                self.poll().map(|_| ())
            } else {
                // A device still waiting for the driver needs someone to notice it coming up.
                self.with(|st, fx| st.check_device_up(&self.io(), fx))
                    .and_then(|r| r)
            };
            if let Err(e) = polled {
                break Err(e);
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        r
    }

    pub(super) fn alloc_blocking(
        &self,
        timeout: Timeout,
        ep: Option<(u8, u16)>,
    ) -> Result<TxInfo, Error> {
        let attempt = || {
            self.with(|st, fx| {
                if let Some((slot, generation)) = ep {
                    st.slot_check(slot, generation)?;
                }
                st.try_alloc(&self.io(), fx)
            })?
        };
        if let Some(t) = attempt()? {
            return Ok(t);
        }
        if timeout == Timeout::NoWait {
            return Err(Error::NoBuffer);
        }
        // Ask for tx-complete interrupts while we wait (Linux toggles vring 1's flag likewise).
        self.with(|st, _| st.tx_wait_begin(&self.io()))?;
        // A sender inside a callback does not poll (that would nest dispatch); buffers still
        // come back through `try_alloc`, which takes them from the ring itself.
        let r = self.wait_for(timeout, Error::NoBuffer, !self.in_callback(), attempt);
        self.with(|st, _| st.tx_wait_end(&self.io()))?;
        r
    }

    /// Writes the header, publishes the buffer, notifies.
    pub(super) fn publish_tx(
        &self,
        t: TxInfo,
        src: u32,
        dst: u32,
        len: usize,
    ) -> Result<(), Error> {
        if src == RPMSG_ADDR_ANY || dst == RPMSG_ADDR_ANY {
            return Err(Error::InvalidAddress(RPMSG_ADDR_ANY));
        }
        if len > t.cap {
            return Err(Error::PayloadTooLarge { len, max: t.cap });
        }
        // len <= cap < 2^16: buffers are at most 64 KiB (desc.len is checked below).
        let len16 = u16::try_from(len).map_err(|_| Error::PayloadTooLarge {
            len,
            max: usize::from(u16::MAX),
        })?;
        let hdr = RpmsgRepr {
            src,
            dst,
            len: len16,
            flags: 0,
        };
        self.with(|st, fx| st.publish(&self.io(), fx, &t, &hdr))?
    }

    pub(super) fn send_raw(
        &self,
        src: u32,
        dst: u32,
        data: &[u8],
        timeout: Timeout,
        ep: Option<(u8, u16)>,
    ) -> Result<(), Error> {
        if src == RPMSG_ADDR_ANY || dst == RPMSG_ADDR_ANY {
            return Err(Error::InvalidAddress(RPMSG_ADDR_ANY));
        }
        let mtu = self.mtu();
        if data.len() > mtu {
            return Err(Error::PayloadTooLarge {
                len: data.len(),
                max: mtu,
            });
        }
        // mtu <= 65,535: the header counts the payload in 16 bits.
        let len = u16::try_from(data.len()).map_err(|_| Error::PayloadTooLarge {
            len: data.len(),
            max: usize::from(u16::MAX),
        })?;
        let hdr = RpmsgRepr {
            src,
            dst,
            len,
            flags: 0,
        };
        // The fast path, a buffer free now: take it, write, publish, in one critical section.
        let sent = self.with(|st, fx| {
            if let Some((slot, generation)) = ep {
                st.slot_check(slot, generation)?;
            }
            st.send(&self.io(), fx, &hdr, data)
        })??;
        if sent {
            return Ok(());
        }
        if timeout == Timeout::NoWait {
            return Err(Error::NoBuffer);
        }
        // Wait for a buffer, then write and publish it in one critical section.
        let t = self.alloc_blocking(timeout, ep)?;
        self.with(|st, fx| st.send_in(&self.io(), fx, t, &hdr, data))?
    }

    /// Sends from `src` to `dst` without an endpoint of ours at `src` (`rpmsg_send_offchannel`
    /// on the device level), waiting up to `timeout` for a buffer.
    ///
    /// # Errors
    ///
    /// As [`Endpoint::send_to_timeout`].
    pub fn send_offchannel(
        &self,
        src: u32,
        dst: u32,
        data: &[u8],
        timeout: Timeout,
    ) -> Result<(), Error> {
        self.send_raw(src, dst, data, timeout, None)
    }

    /// Creates an endpoint (`rpmsg_create_ept`, `rpmsg_lite_create_ept`).
    ///
    /// # Errors
    ///
    /// [`Error::AddressInUse`], [`Error::InvalidAddress`] for `RPMSG_ADDR_ANY`,
    /// [`Error::TooManyEndpoints`], [`Error::NsUnavailable`] when asked to announce on a link
    /// that is up without the name service, [`Error::LinkDown`].
    pub fn create_endpoint(&self, cfg: EndpointConfig<'r>) -> Result<Endpoint<'_>, Error> {
        let (slot, generation, addr) = self.with(|st, _| -> Result<(u8, u16, u32), Error> {
            if matches!(st.phase, Phase::Down | Phase::Broken(_)) {
                return Err(phase_error(st.phase));
            }
            if cfg.announce && matches!(st.phase, Phase::Up) && !st.ns {
                return Err(Error::NsUnavailable);
            }
            let taken = |st: &State<'r, N, EPTS>, a: u32| {
                st.slots.iter().any(|s| s.in_use && s.addr == a)
                    || (a == RPMSG_NS_ADDR && self.cfg.name_service)
            };
            let addr = match cfg.addr {
                Some(RPMSG_ADDR_ANY) => return Err(Error::InvalidAddress(RPMSG_ADDR_ANY)),
                Some(a) if taken(st, a) => return Err(Error::AddressInUse(a)),
                Some(a) => a,
                None => {
                    let mut a = RPMSG_RESERVED_ADDRESSES;
                    while taken(st, a) {
                        a += 1;
                    }
                    a
                }
            };
            let idx = st
                .slots
                .iter()
                .position(|s| !s.in_use)
                .ok_or(Error::TooManyEndpoints { capacity: EPTS })?;
            let s = &mut st.slots[idx];
            let generation = s.generation.wrapping_add(1);
            *s = Slot {
                in_use: true,
                generation,
                addr,
                dst: if cfg.dst == RPMSG_ADDR_ANY && !cfg.name.is_empty() {
                    // Bind by name to a service the peer announced before we got here.
                    st.seen
                        .iter()
                        .flatten()
                        .find(|(n, _)| *n == cfg.name)
                        .map_or(RPMSG_ADDR_ANY, |&(_, a)| a)
                } else {
                    cfg.dst
                },
                name: cfg.name,
                announce: cfg.announce && !cfg.name.is_empty(),
                announced: false,
                mode: cfg.mode,
                ..Slot::EMPTY
            };
            // idx < EPTS <= 255, checked in `new`.
            Ok((idx as u8, generation, addr))
        })??;
        self.flush_announcements();
        Ok(Endpoint {
            link: self,
            slot,
            generation,
            addr,
        })
    }

    /// A handle to the endpoint at local address `addr` (RPMsg-Lite identifies endpoints by
    /// address; this is how to get one back).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownEndpoint`] when no endpoint of this link has that address.
    pub fn endpoint(&self, addr: u32) -> Result<Endpoint<'_>, Error> {
        let found = self.with(|st, _| {
            st.slots
                .iter()
                .enumerate()
                .find(|(_, s)| s.in_use && s.addr == addr)
                .map(|(i, s)| (i as u8, s.generation))
        })?;
        let (slot, generation) = found.ok_or(Error::UnknownEndpoint(addr))?;
        Ok(Endpoint {
            link: self,
            slot,
            generation,
            addr,
        })
    }

    /// Sends the CREATE announcements still owed, if the link is up.
    pub(super) fn flush_announcements(&self) {
        self.announce_owed.store(false, Ordering::Relaxed);
        for i in 0..EPTS {
            let owed = self
                .with(|st, _| {
                    let s = st.slots.get(i)?;
                    (matches!(st.phase, Phase::Up)
                        && st.ns
                        && s.in_use
                        && s.announce
                        && !s.announced)
                        .then_some((s.addr, s.name, s.generation))
                })
                .ok()
                .flatten();
            let Some((addr, name, generation)) = owed else {
                continue;
            };
            if self
                .announce(addr, name, NsFlags::Create, Timeout::NoWait)
                .is_err()
            {
                self.announce_owed.store(true, Ordering::Relaxed);
            } else {
                let _ = self.with(|st, _| {
                    if let Some(s) = st.slots.get_mut(i).filter(|s| s.generation == generation) {
                        s.announced = true;
                    }
                });
            }
        }
    }

    pub(super) fn announce(
        &self,
        addr: u32,
        name: Name,
        flags: NsFlags,
        timeout: Timeout,
    ) -> Result<(), Error> {
        let msg = NsRepr { name, addr, flags }.to_bytes();
        self.send_raw(addr, RPMSG_NS_ADDR, &msg, timeout, None)
    }

    /// Announces a service by hand (`rpmsg_ns_announce`, RPMsg-Lite style), from `addr`.
    ///
    /// # Errors
    ///
    /// [`Error::NsUnavailable`], [`Error::InvalidName`], and as [`Endpoint::send_to_timeout`].
    pub fn ns_announce(
        &self,
        name: &str,
        addr: u32,
        kind: NsKind,
        timeout: Timeout,
    ) -> Result<(), Error> {
        if !self.name_service() {
            return Err(Error::NsUnavailable);
        }
        let name = Name::new(name).map_err(|_| Error::InvalidName { len: name.len() })?;
        let flags = match kind {
            NsKind::Create => NsFlags::Create,
            NsKind::Destroy => NsFlags::Destroy,
        };
        self.announce(addr, name, flags, timeout)
    }

    /// Blocks until the link is up (`rpmsg_lite_wait_for_link_up`), polling the rings.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], [`Error::NotReady`] with [`Timeout::NoWait`], [`Error::LinkDown`].
    pub fn wait_link_up(&self, timeout: Timeout) -> Result<(), Error> {
        // Look first, so a peer that is already there is seen without waiting (and with
        // `NoWait`), as `poll_link_up` does.
        self.poll()?;
        self.wait_for(timeout, Error::NotReady, true, || {
            self.with(|st, _| match st.phase {
                Phase::Up => Ok(Some(())),
                Phase::Down | Phase::Broken(_) => Err(phase_error(st.phase)),
                Phase::Idle | Phase::Waiting | Phase::Reset => Ok(None),
            })?
        })
    }

    /// Gives back a buffer kept with [`RxBuffer::into_held`]
    /// (`rpmsg_release_rx_buffer`, `rpmsg_lite_release_rx_buffer`).
    ///
    /// # Errors
    ///
    /// [`HeldError`] with [`Error::ForeignBuffer`] and the token back, for a token of another
    /// link. A token of an earlier session of this link is accepted and does nothing (its
    /// buffer went with that session).
    pub fn release_held(&self, held: HeldRx) -> Result<(), HeldError> {
        if let Some(rx) = self.resume_held(held)? {
            drop(rx);
        }
        Ok(())
    }

    /// Turns a held token back into an [`RxBuffer`] to read it; `None` when the token is from
    /// an earlier session of this link (the peer reset since).
    ///
    /// # Errors
    ///
    /// [`HeldError`] with [`Error::ForeignBuffer`] and the token back, for a token of another
    /// link.
    pub fn resume_held(&self, held: HeldRx) -> Result<Option<RxBuffer<'_>>, HeldError> {
        if held.key != self.key() {
            return Err(HeldError {
                error: Error::ForeignBuffer,
                held,
            });
        }
        let info = self.with(|st, _| {
            let m = st.rx_meta.get(usize::from(held.info.id))?;
            (st.epoch == held.info.epoch && m.state == RxState::Held).then_some(RxInfo {
                id: held.info.id,
                epoch: held.info.epoch,
                offset: m.offset,
                len: m.len,
                src: m.src,
                dst: m.dst,
            })
        });
        match info {
            Ok(info) => Ok(info.map(|i| RxBuffer::new(self, i))),
            Err(error) => Err(HeldError { error, held }),
        }
    }

    /// Shuts the link down, telling the peer: a DESTROY for each endpoint we announced, then
    /// (driver, resource table) the status byte reset to 0, once the device has taken the
    /// DESTROYs or 100 poll intervals have passed. Afterwards every call is
    /// [`Error::LinkDown`] and blocked callers wake with it.
    ///
    /// # Errors
    ///
    /// [`Error::LinkDown`] if it was already down.
    pub fn shutdown(&self) -> Result<(), Error> {
        if self.with(|st, _| matches!(st.phase, Phase::Down))? {
            return Err(Error::LinkDown);
        }
        let mut destroyed = false;
        for i in 0..EPTS {
            let owed = self
                .with(|st, _| {
                    let s = st.slots.get(i)?;
                    (matches!(st.phase, Phase::Up) && s.in_use && s.announced)
                        .then_some((s.addr, s.name))
                })
                .ok()
                .flatten();
            if let Some((addr, name)) = owed {
                destroyed |= self
                    .announce(
                        addr,
                        name,
                        NsFlags::Destroy,
                        Timeout::After(self.cfg.poll_interval * 100),
                    )
                    .is_ok();
            }
        }
        // Driver, resource table: give the device time to take the DESTROYs before the reset.
        #[cfg(all(feature = "role-driver", feature = "layout-rsc-table"))]
        if destroyed
            && self.cfg.role == Role::Driver
            && matches!(self.cfg.layout, LayoutConfig::RscTable(_))
        {
            let taken = || {
                self.with(|st, _| match &st.queues {
                    Queues::Driver { tx, .. } => {
                        let r = tx.ring();
                        self.platform
                            .cache_invalidate(self.region.base_addr() + r.used_idx_at(), 2);
                        (r.used_idx(&self.region).ok() == r.avail_idx(&self.region).ok())
                            .then_some(())
                    }
                    _ => Some(()),
                })
            };
            let _ = self.wait_for(
                Timeout::After(self.cfg.poll_interval * 100),
                Error::Timeout,
                false,
                taken,
            );
        }
        #[cfg(not(all(feature = "role-driver", feature = "layout-rsc-table")))]
        let _ = destroyed;
        self.with(|st, fx| {
            #[cfg(all(feature = "role-driver", feature = "layout-rsc-table"))]
            if let (Role::Driver, LayoutConfig::RscTable(r), Some(v)) =
                (self.cfg.role, self.cfg.layout, st.vdev)
            {
                let status = r.vdev_field(&v, vdev_field::STATUS);
                let _ = self.table.write_u8(status, 0);
                self.platform
                    .cache_clean(self.table.base_addr() + status, 1);
            }
            st.phase = Phase::Down;
            fx.wake = true;
        })
    }
}
