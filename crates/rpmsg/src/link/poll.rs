//! The async building blocks of the shell: each is one critical section that either finds
//! what it waits for or registers the task's waker.

use super::Link;
use super::engine::{Effects, Phase, State, phase_error};
use crate::buffer::{RxInfo, TxInfo};
use crate::error::Error;
use crate::port::{Environment, Platform};
use core::task::{Context, Poll};

impl<'r, P: Platform, E: Environment, const N: usize, const EPTS: usize> Link<'r, P, E, N, EPTS> {
    /// Async building block: is the link up? Registers `cx`'s waker when not yet.
    ///
    /// # Errors
    ///
    /// [`Error::LinkDown`] or [`Error::PeerViolation`] when the link went down.
    pub fn poll_link_up(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Err(e) = self.poll() {
            return Poll::Ready(Err(e));
        }
        match self.with(|st, fx| {
            st.check_device_up(&self.io(), fx)?;
            match st.phase {
                Phase::Up => Ok(true),
                Phase::Down | Phase::Broken(_) => Err(phase_error(st.phase)),
                Phase::Idle | Phase::Waiting | Phase::Reset => {
                    st.wakers.register(cx.waker());
                    Ok(false)
                }
            }
        }) {
            Ok(Ok(true)) => Poll::Ready(Ok(())),
            Ok(Ok(false)) => Poll::Pending,
            Ok(Err(e)) | Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Async building block: a free transmit buffer, or `cx`'s waker registered. `waiting`
    /// belongs to the future: set while it counts as a sender waiting for a buffer, which
    /// (driver) asks the device to interrupt when it returns one, as a blocking sender does;
    /// the future calls [`LinkCore::tx_wait_cancel`] if it is dropped while set.
    pub(crate) fn poll_alloc(
        &self,
        cx: &mut Context<'_>,
        waiting: &mut bool,
    ) -> Poll<Result<TxInfo, Error>> {
        self.poll_locked(cx, |st, fx| {
            // Twice at most: once, and again if buffers came back while we asked for the
            // interrupt (after that, the interrupt is on and announces the next one).
            for _ in 0..2 {
                let r = st.try_alloc(&self.io(), fx);
                if !matches!(r, Ok(None)) {
                    if core::mem::take(waiting) {
                        st.tx_wait_end(&self.io());
                    }
                    return r;
                }
                if !*waiting {
                    *waiting = true;
                    st.tx_waiters += 1;
                }
                if !st.ask_tx_interrupt(&self.io()) {
                    break;
                }
            }
            Ok(None)
        })
    }

    /// Async building block: the head of an endpoint's queue, or `cx`'s waker registered.
    pub(crate) fn poll_recv(
        &self,
        slot: u8,
        generation: u16,
        max_len: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<RxInfo, Error>> {
        if let Err(e) = self.poll() {
            return Poll::Ready(Err(e));
        }
        self.poll_locked(cx, |st, fx| {
            st.recv_locked(&self.io(), fx, slot, generation, max_len)
        })
    }

    /// Runs `attempt` under the lock and registers `cx`'s waker in the same critical section
    /// when it finds nothing, so no wake-up can fall between the look and the registration.
    pub(super) fn poll_locked<T>(
        &self,
        cx: &mut Context<'_>,
        attempt: impl FnOnce(&mut State<'r, N, EPTS>, &mut Effects) -> Result<Option<T>, Error>,
    ) -> Poll<Result<T, Error>> {
        match self.with(|st, fx| {
            let r = attempt(st, fx);
            if matches!(r, Ok(None)) {
                st.wakers.register(cx.waker());
            }
            r
        }) {
            Ok(Ok(Some(t))) => Poll::Ready(Ok(t)),
            Ok(Ok(None)) => Poll::Pending,
            Ok(Err(e)) | Err(e) => Poll::Ready(Err(e)),
        }
    }
}
