//! A non-coherent memory system for two cores in one process: each core reads and writes its
//! own copy of the region (its data cache, [`CacheModel::view`]); memory proper (RAM) changes
//! only when a core cleans a line, and a core sees the other's writes only after invalidating
//! the line. The link's `Platform::cache_clean` and `cache_invalidate` drive it (through
//! [`Loopback::non_coherent`](super::Loopback::non_coherent)).
//!
//! Besides being wrong in the same way as real hardware (a write that is never cleaned never
//! arrives; a line never invalidated keeps showing old bytes), it fails the test, with a panic
//! that names the line, when:
//!
//! * a core cleans a ring line ([`CacheModel::watch_ring`]) it wrote while the other core
//!   changed other bytes of the same line in RAM since (the write-back would undo them: two
//!   writers in one line, e.g. an avail ring and a used ring closer than a cache line). In a
//!   buffer this is allowed: its owner may write back stale bytes around its message, which
//!   nobody reads;
//! * a core invalidates a line holding writes of its own that it never cleaned (they would be
//!   lost);
//! * a core publishes a ring index ([`CacheModel::watch_ring`]) while a line of that ring's
//!   descriptors or slots (available ring) or elements (used ring) that it wrote is not
//!   cleaned yet: the index would reach the other core before what it publishes;
//! * in [`Stale::Poison`] mode, a core reads a line the other core wrote back since it last
//!   invalidated it: the line reads as `0xA5` bytes, which the link refuses as a peer fault
//!   (the tests assert none) or which shows up in the payload.
//!
//! Poison is exact for tests that run both sides in one thread (every step of one core
//! happens between steps of the other). With threads a core may invalidate a line, the other
//! write it back, and the first read it, all legitimately; those tests use [`Stale::Keep`]
//! (the old bytes, as hardware shows them).

extern crate std;

use crate::shm::SharedRegion;
use crate::wire::vring::{VringLayout, avail, used};
use core::sync::atomic::AtomicU8;
use std::format;
use std::string::String;
use std::sync::Mutex;
use std::vec::Vec;

/// What a core's stale copy of a line reads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// `0xA5` bytes: a read without invalidation fails loudly (single-threaded tests).
    Poison,
    /// The bytes it held, as hardware keeps them (tests with a thread per core).
    Keep,
}

/// Counters of what the model saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lines written back (cleans of dirty lines).
    pub written_back: u64,
    /// Lines discarded and loaded again from RAM.
    pub invalidated: u64,
    /// Index publications checked against their ring's lines.
    pub publications_checked: u64,
}

#[derive(Debug)]
struct Watch {
    /// Region offset of the index (2 bytes).
    index: usize,
    /// Ranges whose lines must be clean when the index is written back.
    guards: [(usize, usize); 2],
}

#[derive(Debug)]
struct Inner {
    ram: Vec<u8>,
    /// What each core's copy held when last loaded or written back: a byte that differs in
    /// the view was written by that core since (the line is dirty).
    snap: [Vec<u8>; 2],
    watches: Vec<Watch>,
    /// Ring spans (offset, length): lines where a stale write-back is a fault.
    rings: Vec<(usize, usize)>,
    stats: CacheStats,
}

/// Two cores' caches over one region. See the [module docs](self).
#[derive(Debug)]
pub struct CacheModel {
    line: usize,
    len: usize,
    stale: Stale,
    /// Each core's copy.
    views: [AlignedBytes; 2],
    inner: Mutex<Inner>,
}

/// Zeroed bytes with an 8-aligned run of `len` in them, for a region (no `unsafe`, no leak).
#[derive(Debug)]
pub struct AlignedBytes {
    cells: Vec<AtomicU8>,
    start: usize,
    len: usize,
}

impl AlignedBytes {
    /// `len` zero bytes.
    pub fn new(len: usize) -> Self {
        let cells: Vec<AtomicU8> = (0..len + 8).map(|_| AtomicU8::new(0)).collect();
        let start = cells.as_ptr().align_offset(8);
        Self { cells, start, len }
    }

    /// The region over them.
    ///
    /// # Panics
    ///
    /// Never: the run is 8-aligned.
    pub fn region(&self) -> SharedRegion<'_> {
        SharedRegion::from_atomics(&self.cells[self.start..self.start + self.len])
            .unwrap_or_else(|_| unreachable!("8-aligned"))
    }
}

const POISON: u8 = 0xA5;

impl CacheModel {
    /// Two cores with `line`-byte cache lines over a `len`-byte region of zeroes.
    ///
    /// # Panics
    ///
    /// When `line` is not a power of two.
    pub fn new(len: usize, line: usize, stale: Stale) -> std::sync::Arc<Self> {
        assert!(line.is_power_of_two());
        std::sync::Arc::new(Self {
            line,
            len,
            stale,
            views: [AlignedBytes::new(len), AlignedBytes::new(len)],
            inner: Mutex::new(Inner {
                ram: std::vec![0; len],
                snap: [std::vec![0; len], std::vec![0; len]],
                watches: Vec::new(),
                rings: Vec::new(),
                stats: CacheStats::default(),
            }),
        })
    }

    /// Core `side`'s view of the region (0 and 1): what its link is built on.
    pub fn view(&self, side: usize) -> SharedRegion<'_> {
        self.views[side].region()
    }

    /// Makes what core `side` wrote into its view before the links started (a resource table,
    /// say) the content of RAM and of the other view, every line clean.
    ///
    /// # Panics
    ///
    /// On a region access error (never for the model's own views).
    pub fn settle_from(&self, side: usize) {
        let mut g = self.lock();
        let mut bytes = std::vec![0u8; self.len];
        self.view(side).copy_out(0, &mut bytes).unwrap();
        self.view(1 - side).copy_in(0, &bytes).unwrap();
        g.snap = [bytes.clone(), bytes.clone()];
        g.ram = bytes;
    }

    /// Checks the publish order of a vring at region offset `base`: whenever a core writes
    /// back `avail.idx`, none of the descriptor table's or available ring's lines it wrote
    /// may still be dirty; whenever it writes back `used.idx`, none of the used ring's.
    pub fn watch_ring(&self, base: usize, l: VringLayout) {
        let mut g = self.lock();
        g.rings.push((base, l.size));
        g.watches.push(Watch {
            index: base + l.avail + avail::IDX,
            guards: [
                (base, 16 * usize::from(l.num)),
                (base + l.avail, 4 + 2 * usize::from(l.num)),
            ],
        });
        g.watches.push(Watch {
            index: base + l.used + used::IDX,
            guards: [(base + l.used + 4, 8 * usize::from(l.num)), (0, 0)],
        });
    }

    /// What the model saw so far.
    pub fn stats(&self) -> CacheStats {
        self.lock().stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lines(&self, offset: usize, len: usize) -> impl Iterator<Item = (usize, usize)> + use<> {
        let line = self.line;
        let total = self.len;
        let first = offset & !(line - 1);
        let end = offset.saturating_add(len).min(total);
        (first..end)
            .step_by(line)
            .map(move |s| (s, (s + line).min(total)))
    }

    fn read(&self, side: usize, s: usize, e: usize) -> Vec<u8> {
        let mut b = std::vec![0u8; e - s];
        self.view(side).copy_out(s, &mut b).unwrap();
        b
    }

    fn dirty(&self, g: &Inner, side: usize, s: usize, e: usize) -> bool {
        self.read(side, s, e) != g.snap[side][s..e]
    }

    fn fail(what: String) -> ! {
        panic!("non-coherent cache model: {what}");
    }

    /// Core `side` cleans `len` bytes at region offset `offset`.
    pub fn clean(&self, side: usize, offset: usize, len: usize) {
        let mut g = self.lock();
        for (s, e) in self.lines(offset, len) {
            let view = self.read(side, s, e);
            if view == g.snap[side][s..e] {
                continue;
            }
            let in_ring = g.rings.iter().any(|&(b, l)| s < b + l && b < e);
            for i in (s..e).filter(|_| in_ring) {
                let (v, old, ram) = (view[i - s], g.snap[side][i], g.ram[i]);
                if v == old && ram != old {
                    Self::fail(format!(
                        "core {side} writes back line {s:#x} over byte {i:#x} that the other \
                         core changed since (two writers in one line)"
                    ));
                }
            }
            let published: Vec<[(usize, usize); 2]> = g
                .watches
                .iter()
                .filter(|w| {
                    (s..e).contains(&w.index)
                        && view[w.index - s..w.index - s + 2] != g.ram[w.index..w.index + 2]
                })
                .map(|w| w.guards)
                .collect();
            for guards in published {
                g.stats.publications_checked += 1;
                for (gs, gl) in guards {
                    for (ls, le) in self.lines(gs, gl) {
                        if ls != s && self.dirty(&g, side, ls, le) {
                            Self::fail(format!(
                                "core {side} publishes the index in line {s:#x} while line \
                                 {ls:#x}, which it publishes, is not cleaned yet"
                            ));
                        }
                    }
                }
            }
            g.ram[s..e].copy_from_slice(&view);
            g.snap[side][s..e].copy_from_slice(&view);
            g.stats.written_back += 1;
            let other = 1 - side;
            if in_ring && self.dirty(&g, other, s, e) {
                Self::fail(format!(
                    "cores {side} and {other} both hold writes in line {s:#x} (two writers in \
                     one line)"
                ));
            }
            // A buffer line the other core wrote too (allowed above) keeps its writes.
            if self.stale == Stale::Poison && !self.dirty(&g, other, s, e) {
                let p = std::vec![POISON; e - s];
                self.view(other).copy_in(s, &p).unwrap();
                g.snap[other][s..e].copy_from_slice(&p);
            }
        }
    }

    /// Core `side` invalidates `len` bytes at region offset `offset`.
    pub fn invalidate(&self, side: usize, offset: usize, len: usize) {
        let mut g = self.lock();
        for (s, e) in self.lines(offset, len) {
            if self.dirty(&g, side, s, e) {
                Self::fail(format!(
                    "core {side} invalidates line {s:#x} holding writes of its own it never \
                     cleaned (they are lost)"
                ));
            }
            let fresh = g.ram[s..e].to_vec();
            self.view(side).copy_in(s, &fresh).unwrap();
            g.snap[side][s..e].copy_from_slice(&fresh);
            g.stats.invalidated += 1;
        }
    }
}
