//! Memory with guard areas on both sides of the region: a byte of them that changes is an access
//! outside the region.
//!
//! The harnesses check the guards after every step, so the check is one `memcmp` per guard
//! against a constant pattern (a byte loop compiled with the fuzzer's comparison hooks cost
//! half of every execution), and [`Guarded::reuse`] keeps one allocation per process and zeroes
//! only the region between inputs.

use rpmsg::SharedRegion;
use std::cell::RefCell;

/// Bytes of guard on each side.
const GUARD: usize = 4096;
/// What the guards hold.
const GUARD_BYTE: u8 = 0xA5;
/// The guards' expected content.
static PATTERN: [u8; GUARD] = [GUARD_BYTE; GUARD];

/// A region of `len` bytes between two guards, 8-aligned.
#[derive(Debug)]
pub struct Guarded {
    words: Vec<u64>,
    len: usize,
}

thread_local! {
    /// One guarded allocation per process (per fuzzing thread), grown when needed.
    static SPARE: RefCell<Option<Guarded>> = const { RefCell::new(None) };
}

impl Guarded {
    /// Zeroed region, guards filled.
    pub fn new(len: usize) -> Self {
        let mut words = vec![0u64; (2 * GUARD + len).div_ceil(8) + 1];
        let bytes: &mut [u8] = zerocopy::IntoBytes::as_mut_bytes(words.as_mut_slice());
        bytes[..GUARD].fill(GUARD_BYTE);
        bytes[GUARD + len..].fill(GUARD_BYTE);
        Self { words, len }
    }

    /// Runs `f` over a zeroed region of `len` bytes between filled guards, reusing this
    /// thread's allocation from the previous input when it is large enough: only the region
    /// and the bytes after it are rewritten (guards that changed have already failed a check).
    pub fn reuse<R>(len: usize, f: impl FnOnce(&mut Guarded) -> R) -> R {
        let spare = SPARE.with(|s| s.borrow_mut().take());
        let mut g = match spare {
            Some(mut g) if g.words.len() > (2 * GUARD + len).div_ceil(8) => {
                let bytes: &mut [u8] = zerocopy::IntoBytes::as_mut_bytes(g.words.as_mut_slice());
                bytes[..GUARD].fill(GUARD_BYTE);
                bytes[GUARD..GUARD + len].fill(0);
                bytes[GUARD + len..].fill(GUARD_BYTE);
                g.len = len;
                g
            }
            _ => Guarded::new(len),
        };
        let r = f(&mut g);
        SPARE.with(|s| *s.borrow_mut() = Some(g));
        r
    }

    /// The region and its guards.
    pub fn split(&mut self) -> (SharedRegion<'_>, Guards<'_>) {
        let bytes: &mut [u8] = zerocopy::IntoBytes::as_mut_bytes(self.words.as_mut_slice());
        let (lo, rest) = bytes.split_at_mut(GUARD);
        let (mid, hi) = rest.split_at_mut(self.len);
        let region = SharedRegion::from_slice(mid).expect("8-aligned");
        (region, Guards { lo, hi })
    }
}

/// The guard areas.
#[derive(Debug)]
pub struct Guards<'a> {
    lo: &'a [u8],
    hi: &'a [u8],
}

impl Guards<'_> {
    /// Panics when a guard byte changed.
    pub fn check(&self) {
        // black_box: the compiler must read the bytes again each time. The comparison is a
        // `memcmp`; only a failing check looks for the byte.
        let lo = std::hint::black_box(self.lo);
        let hi = std::hint::black_box(self.hi);
        if lo != &PATTERN[..] {
            let i = lo.iter().rposition(|&b| b != GUARD_BYTE).unwrap_or(0);
            panic!("byte {} before the region changed", GUARD - i);
        }
        for chunk in hi.chunks(GUARD) {
            if chunk != &PATTERN[..chunk.len()] {
                let i = hi.iter().position(|&b| b != GUARD_BYTE).unwrap_or(0);
                panic!("byte {i} after the region's end changed");
            }
        }
    }
}
