//! Baselines for the benchmark, in the same shared file as the link: what the hardware and the
//! kernel allow without rpmsg.
//!
//! * [`RawPingPong`]: one atomic `u64` each way, on its own cache line in the host block; the
//!   driver writes a sequence number, the device echoes it, both busy-poll. Its round trip is
//!   the floor for any message round trip between the two processes.
//! * [`RawRing`]: a single-producer, single-consumer ring of `buffers` slots laid over the
//!   region's buffer pool (the very bytes rpmsg's buffers use), head and tail on their own
//!   lines in the host block; the driver `memcpy`s each message into a slot, the device
//!   `memcpy`s it out. Its rate is the ceiling for a one-way flood.
//!
//! Both sides meet through a control word: the driver [`reset`](RawPingPong::reset)s it before
//! starting the device, the device reports ready, the driver says stop at the end. Every spin
//! is bounded by a timeout, so a dead peer cannot hang either side.

use crate::doorbell::Side;
use crate::error::HostError;
use crate::file::{SharedFile, field};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const IDLE: u32 = 0;
const READY: u32 = 1;
const STOP: u32 = 2;

/// Spins until `done` holds or `timeout` passes (looking at the clock every 1024 spins).
fn spin_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let mut t0: Option<Instant> = None;
    loop {
        for _ in 0..1024 {
            if done() {
                return true;
            }
            core::hint::spin_loop();
        }
        let start = *t0.get_or_insert_with(Instant::now);
        if start.elapsed() >= timeout {
            return false;
        }
    }
}

fn silent(side: Side, timeout: Duration) -> HostError {
    HostError::PeerSilent {
        side,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    }
}

/// The control word both baselines share.
#[derive(Debug, Clone, Copy)]
struct Control<'f>(&'f AtomicU32);

impl Control<'_> {
    fn reset(self) {
        self.0.store(IDLE, Ordering::Release);
    }

    fn wait_ready(self, timeout: Duration) -> Result<(), HostError> {
        if spin_until(timeout, || self.0.load(Ordering::Acquire) == READY) {
            Ok(())
        } else {
            Err(silent(Side::Device, timeout))
        }
    }

    fn ready(self) {
        self.0.store(READY, Ordering::Release);
    }

    fn stop(self) {
        self.0.store(STOP, Ordering::Release);
    }

    fn stopped(self) -> bool {
        self.0.load(Ordering::Acquire) == STOP
    }
}

/// One cache line each way, busy-polled.
#[derive(Debug)]
pub struct RawPingPong<'f> {
    ping: &'f AtomicU64,
    pong: &'f AtomicU64,
    control: Control<'f>,
}

impl<'f> RawPingPong<'f> {
    /// The ping-pong words of `file`.
    pub fn new(file: &'f SharedFile) -> Self {
        Self {
            ping: file.word64(field::RAW_PINGPONG[0]),
            pong: file.word64(field::RAW_PINGPONG[1]),
            control: Control(file.word(field::RAW_CONTROL)),
        }
    }

    /// Driver: zeroes the words and the control word, before the device starts.
    pub fn reset(&self) {
        self.ping.store(0, Ordering::Relaxed);
        self.pong.store(0, Ordering::Relaxed);
        self.control.reset();
    }

    /// Driver: waits for the device to be spinning.
    ///
    /// # Errors
    ///
    /// [`HostError::PeerSilent`] after `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), HostError> {
        self.control.wait_ready(timeout)
    }

    /// Driver: one round trip with sequence number `seq` (non-zero, increasing).
    ///
    /// # Errors
    ///
    /// [`HostError::PeerSilent`] when no echo comes within `timeout`.
    #[inline]
    pub fn round_trip(&self, seq: u64, timeout: Duration) -> Result<(), HostError> {
        // Release/Acquire: the echo is a plain value, but keep the orderings a message needs.
        self.ping.store(seq, Ordering::Release);
        if spin_until(timeout, || self.pong.load(Ordering::Acquire) == seq) {
            Ok(())
        } else {
            Err(silent(Side::Device, timeout))
        }
    }

    /// Driver: tells the device to stop.
    pub fn stop(&self) {
        self.control.stop();
    }

    /// Device: echoes every sequence number until told to stop; returns how many.
    ///
    /// # Errors
    ///
    /// [`HostError::PeerSilent`] when nothing happens for `idle`.
    pub fn serve(&self, idle: Duration) -> Result<u64, HostError> {
        self.control.ready();
        let mut last = 0;
        let mut n = 0;
        loop {
            let mut seen = last;
            let ok = spin_until(idle, || {
                seen = self.ping.load(Ordering::Acquire);
                seen != last || self.control.stopped()
            });
            if !ok {
                return Err(silent(Side::Driver, idle));
            }
            if seen != last {
                self.pong.store(seen, Ordering::Release);
                last = seen;
                n += 1;
            } else {
                return Ok(n);
            }
        }
    }
}

/// A single-producer ring of fixed slots over the buffer pool.
#[derive(Debug)]
pub struct RawRing<'f> {
    file: &'f SharedFile,
    head: &'f AtomicU64,
    tail: &'f AtomicU64,
    control: Control<'f>,
    base: usize,
    slots: u64,
    stride: usize,
    /// Producer: our head and the last tail we read; consumer: our tail and the last head.
    mine: u64,
    theirs: u64,
}

impl<'f> RawRing<'f> {
    /// The ring over `file`'s buffer pool: `buffers` slots of `buffer_size` bytes.
    ///
    /// # Errors
    ///
    /// [`HostError::Geometry`].
    pub fn new(file: &'f SharedFile) -> Result<Self, HostError> {
        let g = file.geometry();
        Ok(Self {
            file,
            head: file.word64(field::RAW_RING[0]),
            tail: file.word64(field::RAW_RING[1]),
            control: Control(file.word(field::RAW_CONTROL)),
            base: g.pool_offset()?,
            slots: u64::from(g.buffers),
            stride: g.buffer_size as usize,
            mine: 0,
            theirs: 0,
        })
    }

    /// Bytes a slot holds.
    pub fn slot_len(&self) -> usize {
        self.stride
    }

    /// Driver: zeroes the indices and the control word, before the device starts.
    pub fn reset(&mut self) {
        self.head.store(0, Ordering::Relaxed);
        self.tail.store(0, Ordering::Relaxed);
        self.control.reset();
        self.mine = 0;
        self.theirs = 0;
    }

    /// Driver: waits for the device to be spinning.
    ///
    /// # Errors
    ///
    /// [`HostError::PeerSilent`] after `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), HostError> {
        self.control.wait_ready(timeout)
    }

    fn slot(&self, index: u64) -> usize {
        // index % slots < 256 and stride <= 64 KiB: no overflow.
        self.base + (index % self.slots) as usize * self.stride
    }

    /// Producer: copies `msg` into the next slot, waiting up to `timeout` for one.
    ///
    /// # Errors
    ///
    /// [`HostError::PeerSilent`] when the consumer frees no slot in time;
    /// [`HostError::Geometry`] when `msg` is longer than a slot.
    #[inline]
    pub fn push(&mut self, msg: &[u8], timeout: Duration) -> Result<(), HostError> {
        if msg.len() > self.stride {
            return Err(HostError::Geometry(format!(
                "{}-byte message in a {}-byte slot",
                msg.len(),
                self.stride
            )));
        }
        if self.mine - self.theirs >= self.slots {
            // Acquire pairs with the consumer's Release of the tail: the slot is free.
            let ok = spin_until(timeout, || {
                self.theirs = self.tail.load(Ordering::Acquire);
                self.mine - self.theirs < self.slots
            });
            if !ok {
                return Err(silent(Side::Device, timeout));
            }
        }
        let at = self.slot(self.mine);
        self.file
            .mapping()
            .copy_in_raw(at, msg)
            .ok_or_else(|| HostError::Geometry("ring slot outside the file".into()))?;
        self.mine += 1;
        // Release: the slot's bytes before the new head (pairs with the consumer's Acquire).
        self.head.store(self.mine, Ordering::Release);
        Ok(())
    }

    /// Producer: waits until the consumer has taken everything, then tells it to stop.
    ///
    /// # Errors
    ///
    /// [`HostError::PeerSilent`] after `timeout`.
    pub fn drain_and_stop(&mut self, timeout: Duration) -> Result<(), HostError> {
        let mine = self.mine;
        let ok = spin_until(timeout, || self.tail.load(Ordering::Acquire) == mine);
        self.control.stop();
        if ok {
            Ok(())
        } else {
            Err(silent(Side::Device, timeout))
        }
    }

    /// Waits until the consumer has taken everything pushed so far.
    ///
    /// # Errors
    ///
    /// [`HostError::PeerSilent`] after `timeout`.
    pub fn drain(&mut self, timeout: Duration) -> Result<(), HostError> {
        let mine = self.mine;
        if spin_until(timeout, || self.tail.load(Ordering::Acquire) == mine) {
            self.theirs = mine;
            Ok(())
        } else {
            Err(silent(Side::Device, timeout))
        }
    }

    /// Consumer: copies every message (`buf.len()` bytes of each slot) out until told to stop;
    /// returns how many.
    ///
    /// # Errors
    ///
    /// [`HostError::PeerSilent`] when nothing happens for `idle`.
    pub fn consume(&mut self, buf: &mut [u8], idle: Duration) -> Result<u64, HostError> {
        let len = buf.len().min(self.stride);
        let buf = &mut buf[..len];
        self.control.ready();
        let mut n = 0;
        loop {
            if self.theirs == self.mine {
                let ok = spin_until(idle, || {
                    // Acquire pairs with the producer's Release of the head.
                    self.theirs = self.head.load(Ordering::Acquire);
                    self.theirs != self.mine || self.control.stopped()
                });
                if !ok {
                    return Err(silent(Side::Driver, idle));
                }
                if self.theirs == self.mine {
                    return Ok(n);
                }
            }
            let at = self.slot(self.mine);
            self.file
                .mapping()
                .copy_out_raw(at, buf)
                .ok_or_else(|| HostError::Geometry("ring slot outside the file".into()))?;
            std::hint::black_box(&buf);
            self.mine += 1;
            n += 1;
            // Release: we are done reading the slot before the producer may reuse it.
            self.tail.store(self.mine, Ordering::Release);
        }
    }
}
