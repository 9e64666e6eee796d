//! `LinkCore`: what buffers and endpoint handles need from their link, independent of its
//! type parameters (they hold `&dyn LinkCore`).

use super::Link;
use crate::buffer::{HeldRx, RxInfo, RxInfoKey, TxInfo};
use crate::error::Error;
use crate::port::{Environment, Platform, Timeout};
use crate::shm::SharedRegion;
use crate::wire::ns::NsFlags;
use crate::wire::rpmsg::HEADER_LEN;
use core::sync::atomic::Ordering;
use core::task::{Context, Poll};

/// What buffers and endpoint handles need from their link, independent of its type parameters.
pub(crate) trait LinkCore: Sync {
    fn region(&self) -> SharedRegion<'_>;
    fn release_rx(&self, info: RxInfo);
    fn hold_rx(&self, info: RxInfo) -> HeldRx;
    fn send_tx(&self, info: TxInfo, src: u32, dst: u32, len: usize) -> Result<(), Error>;
    fn write_tx(&self, info: TxInfo, offset: usize, data: &[u8]) -> Result<(), Error>;
    fn drop_tx(&self, info: TxInfo);
    fn tx_wait_cancel(&self);
    fn ep_send(
        &self,
        slot: u8,
        generation: u16,
        src: u32,
        dst: u32,
        data: &[u8],
        timeout: Option<Timeout>,
    ) -> Result<(), Error>;
    fn ep_alloc(&self, slot: u8, generation: u16, timeout: Timeout) -> Result<TxInfo, Error>;
    fn ep_recv(
        &self,
        slot: u8,
        generation: u16,
        max_len: usize,
        timeout: Timeout,
    ) -> Result<RxInfo, Error>;
    /// Takes the head of the endpoint's queue, copies it into `buf` and gives the buffer
    /// back, in one critical section: (length, source).
    fn ep_recv_into(
        &self,
        slot: u8,
        generation: u16,
        buf: &mut [u8],
        timeout: Timeout,
    ) -> Result<(usize, u32), Error>;
    fn ep_pending(&self, slot: u8, generation: u16) -> Result<usize, Error>;
    fn ep_dst(&self, slot: u8, generation: u16) -> Result<u32, Error>;
    fn ep_set_dst(&self, slot: u8, generation: u16, dst: u32) -> Result<(), Error>;
    fn ep_destroy(&self, slot: u8, generation: u16) -> Result<(), Error>;
    fn ep_poll_alloc(
        &self,
        slot: u8,
        generation: u16,
        cx: &mut Context<'_>,
        waiting: &mut bool,
    ) -> Poll<Result<TxInfo, Error>>;
    fn ep_poll_recv(
        &self,
        slot: u8,
        generation: u16,
        max_len: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<RxInfo, Error>>;
}

impl<P: Platform, E: Environment, const N: usize, const EPTS: usize> LinkCore
    for Link<'_, P, E, N, EPTS>
{
    fn region(&self) -> SharedRegion<'_> {
        self.region
    }

    fn release_rx(&self, info: RxInfo) {
        let _ = self.with(|st, fx| st.release(&self.io(), fx, info));
    }

    fn hold_rx(&self, info: RxInfo) -> HeldRx {
        HeldRx {
            key: self.key(),
            info: RxInfoKey {
                id: info.id,
                epoch: info.epoch,
            },
        }
    }

    fn send_tx(&self, info: TxInfo, src: u32, dst: u32, len: usize) -> Result<(), Error> {
        self.publish_tx(info, src, dst, len)
    }

    fn write_tx(&self, info: TxInfo, offset: usize, data: &[u8]) -> Result<(), Error> {
        // Under the lock, so that no reset can come between the check and the write.
        self.with(|st, _| {
            st.tx_current(&info)?;
            self.region
                .copy_in(info.offset + HEADER_LEN + offset, data)
                .map_err(Error::from)
        })?
    }

    fn tx_wait_cancel(&self) {
        let _ = self.with(|st, _| st.tx_wait_end(&self.io()));
    }

    fn drop_tx(&self, info: TxInfo) {
        let _ = self.with(|st, _| st.free_tx(&info));
    }

    fn ep_send(
        &self,
        slot: u8,
        generation: u16,
        src: u32,
        dst: u32,
        data: &[u8],
        timeout: Option<Timeout>,
    ) -> Result<(), Error> {
        let timeout = timeout.unwrap_or(Timeout::After(self.cfg.send_timeout));
        self.send_raw(src, dst, data, timeout, Some((slot, generation)))
    }

    fn ep_alloc(&self, slot: u8, generation: u16, timeout: Timeout) -> Result<TxInfo, Error> {
        self.alloc_blocking(timeout, Some((slot, generation)))
    }

    fn ep_recv(
        &self,
        slot: u8,
        generation: u16,
        max_len: usize,
        timeout: Timeout,
    ) -> Result<RxInfo, Error> {
        let attempt =
            || self.with(|st, fx| st.recv_locked(&self.io(), fx, slot, generation, max_len))?;
        self.poll()?;
        self.wait_for(timeout, Error::NoBuffer, true, attempt)
    }

    fn ep_recv_into(
        &self,
        slot: u8,
        generation: u16,
        buf: &mut [u8],
        timeout: Timeout,
    ) -> Result<(usize, u32), Error> {
        // Every look is a poll whose last critical section (the one that finds the rings
        // drained) also takes our message: one section per look, waiting or not.
        let mut deadline = None;
        let mut counted = false;
        let r = loop {
            let mut got = None;
            let polled = self.poll_rings(
                None,
                Some(&mut |st, fx| {
                    got = Some(st.recv_into(&self.io(), fx, slot, generation, buf));
                }),
            );
            let got = match (polled, got) {
                (Err(e), _) => break Err(e),
                (Ok(_), Some(got)) => got,
                // The poll ended without draining the rings (its budget): look by itself.
                (Ok(_), None) => self
                    .with(|st, fx| st.recv_into(&self.io(), fx, slot, generation, buf))
                    .and_then(|r| r),
            };
            match got {
                Ok(Some(got)) => break Ok(got),
                Err(e) => break Err(e),
                Ok(None) => {}
            }
            if timeout == Timeout::NoWait {
                break Err(Error::NoBuffer);
            }
            let now = self.env.now();
            let deadline = *deadline.get_or_insert_with(|| timeout.deadline(now));
            if !counted {
                // Counted before the next look, so whoever makes progress after that look
                // sees a waiter and wakes it (as `wait_for`).
                counted = true;
                self.waiters.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            if deadline.is_some_and(|d| now >= d) {
                break Err(Error::Timeout);
            }
            let nap = now.saturating_add(self.cfg.poll_interval);
            self.env.wait(Some(deadline.map_or(nap, |d| d.min(nap))));
        };
        if counted {
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }
        r
    }

    fn ep_poll_alloc(
        &self,
        slot: u8,
        generation: u16,
        cx: &mut Context<'_>,
        waiting: &mut bool,
    ) -> Poll<Result<TxInfo, Error>> {
        if let Err(e) = self
            .with(|st, _| st.slot_check(slot, generation))
            .and_then(|r| r)
        {
            if core::mem::take(waiting) {
                self.tx_wait_cancel();
            }
            return Poll::Ready(Err(e));
        }
        self.poll_alloc(cx, waiting)
    }

    fn ep_poll_recv(
        &self,
        slot: u8,
        generation: u16,
        max_len: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<RxInfo, Error>> {
        self.poll_recv(slot, generation, max_len, cx)
    }

    fn ep_pending(&self, slot: u8, generation: u16) -> Result<usize, Error> {
        self.with(|st, _| {
            st.slot_check(slot, generation)
                .map(|i| usize::from(st.slots[i].q_len))
        })?
    }

    fn ep_dst(&self, slot: u8, generation: u16) -> Result<u32, Error> {
        self.with(|st, _| st.slot_check(slot, generation).map(|i| st.slots[i].dst))?
    }

    fn ep_set_dst(&self, slot: u8, generation: u16, dst: u32) -> Result<(), Error> {
        self.with(|st, _| {
            st.slot_check(slot, generation)
                .map(|i| st.slots[i].dst = dst)
        })?
    }

    fn ep_destroy(&self, slot: u8, generation: u16) -> Result<(), Error> {
        let (announced, addr, name) =
            self.with(|st, fx| st.destroy_endpoint(&self.io(), fx, slot, generation))??;
        if announced {
            let _ = self.announce(
                addr,
                name,
                NsFlags::Destroy,
                Timeout::After(self.cfg.send_timeout),
            );
        }
        Ok(())
    }
}
