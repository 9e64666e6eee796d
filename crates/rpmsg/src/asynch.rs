//! The async API: `recv`, `recv_zero_copy`, `send` and link-up as futures, built on wakers,
//! usable from embassy, tokio or any executor; the core depends on none of them.
//!
//! Every future is **cancel-safe**: it takes a message or a buffer only in the poll that
//! completes it, and does everything after that without another `.await`. Dropping it while it
//! waits (a `select!`, a timeout from the executor's timer) loses no message and leaks no
//! buffer, so timeouts are the executor's business: wrap the future in
//! `embassy_time::with_timeout` or `tokio::time::timeout`.
//!
//! Waiters are woken whenever the link may have something for them: a message queued, the
//! link coming up or going down, and every doorbell ([`Link::handle_notify`]). An environment
//! without doorbell interrupts must call [`Link::handle_notify`] (or [`Link::poll`] followed by
//! it) from somewhere periodically, as the blocking API does while it waits.
//!
//! ```
//! # use rpmsg::testing::pair;
//! # pair(|dev_ep, drv_ep| {
//! # let run = async {
//! dev_ep.send_async(b"ping").await?;
//! let mut buf = [0u8; 496];
//! let (n, src) = drv_ep.recv_async(&mut buf).await?;
//! assert_eq!((&buf[..n], src), (&b"ping"[..], 30));
//! # Ok::<(), rpmsg::Error>(()) };
//! # rpmsg::testing::block_on(run)
//! # });
//! ```

use crate::buffer::{RxBuffer, TxBuffer, TxInfo};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::link::Link;
use crate::port::{Environment, Platform};
use crate::wire::rpmsg::RPMSG_ADDR_ANY;
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::{Context, Poll};

impl<'l> Endpoint<'l> {
    /// Waits for a free transmit buffer (the async [`Endpoint::alloc_tx`]).
    ///
    /// # Errors
    ///
    /// [`Error::NotReady`], [`Error::LinkDown`], [`Error::EndpointDestroyed`].
    pub async fn alloc_tx_async(&self) -> Result<TxBuffer<'l>, Error> {
        let info = AllocTx {
            ep: self,
            waiting: false,
        }
        .await?;
        let dst = self
            .link
            .ep_dst(self.slot, self.generation)
            .unwrap_or(RPMSG_ADDR_ANY);
        Ok(TxBuffer::new(self.link, info, self.addr, dst))
    }

    /// Sends `data` to `dst`, waiting for a free buffer as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Error::PayloadTooLarge`], [`Error::InvalidAddress`], [`Error::NotReady`],
    /// [`Error::LinkDown`], [`Error::EndpointDestroyed`].
    pub async fn send_to_async(&self, dst: u32, data: &[u8]) -> Result<(), Error> {
        if dst == RPMSG_ADDR_ANY {
            return Err(Error::InvalidAddress(dst));
        }
        let mut tx = self.alloc_tx_async().await?;
        // No `.await` from here on: the buffer is written and sent, or dropped back.
        tx.write(0, data)?;
        tx.send_to(dst, data.len()).map_err(|e| e.error)
    }

    /// Sends `data` to the default destination, waiting for a free buffer.
    ///
    /// # Errors
    ///
    /// As [`Endpoint::send_to_async`].
    pub async fn send_async(&self, data: &[u8]) -> Result<(), Error> {
        let dst = self.dst()?.ok_or(Error::InvalidAddress(RPMSG_ADDR_ANY))?;
        self.send_to_async(dst, data).await
    }

    /// Waits for the next queued message and returns it in place.
    ///
    /// # Errors
    ///
    /// [`Error::NotQueued`], [`Error::LinkDown`], [`Error::EndpointDestroyed`].
    pub async fn recv_zero_copy_async(&self) -> Result<RxBuffer<'l>, Error> {
        let info = poll_fn(|cx| {
            self.link
                .ep_poll_recv(self.slot, self.generation, usize::MAX, cx)
        })
        .await?;
        Ok(RxBuffer::new(self.link, info))
    }

    /// Waits for the next queued message and copies it into `buf`: `(len, src)`. A message
    /// longer than `buf` stays queued and the call fails with [`Error::BufferTooSmall`].
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`], and as [`Endpoint::recv_zero_copy_async`].
    pub async fn recv_async(&self, buf: &mut [u8]) -> Result<(usize, u32), Error> {
        let max = buf.len();
        let info =
            poll_fn(|cx| self.link.ep_poll_recv(self.slot, self.generation, max, cx)).await?;
        let msg = RxBuffer::new(self.link, info);
        let n = msg.len();
        let dst = buf
            .get_mut(..n)
            .ok_or(Error::BufferTooSmall { need: n, have: max })?;
        msg.read(0, dst)?;
        Ok((n, msg.src()))
    }
}

/// The future of [`Endpoint::alloc_tx_async`]. While it waits it counts as a sender waiting
/// for a buffer, which on the driver side asks the device for an interrupt when it returns
/// one (vring 1's `VRING_AVAIL_F_NO_INTERRUPT` cleared, as Linux does for a blocked sender);
/// completed or dropped, it stops counting, and with no sender left the flag is set again.
struct AllocTx<'a, 'l> {
    ep: &'a Endpoint<'l>,
    waiting: bool,
}

impl Future for AllocTx<'_, '_> {
    type Output = Result<TxInfo, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.ep
            .link
            .ep_poll_alloc(this.ep.slot, this.ep.generation, cx, &mut this.waiting)
    }
}

impl Drop for AllocTx<'_, '_> {
    fn drop(&mut self) {
        if self.waiting {
            self.ep.link.tx_wait_cancel();
        }
    }
}

impl<P: Platform, E: Environment, const N: usize, const EPTS: usize> Link<'_, P, E, N, EPTS> {
    /// Waits until the link is up (the async [`Link::wait_link_up`]).
    ///
    /// # Errors
    ///
    /// [`Error::LinkDown`], [`Error::PeerViolation`].
    pub async fn wait_link_up_async(&self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_link_up(cx)).await
    }
}
