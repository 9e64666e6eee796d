//! Memory with guard areas on both sides of the region: a byte of them that changes is an access
//! outside the region.

use rpmsg::SharedRegion;

/// Bytes of guard on each side.
const GUARD: usize = 4096;
/// What the guards hold.
const GUARD_BYTE: u8 = 0xA5;

/// A region of `len` bytes between two guards, 8-aligned.
#[derive(Debug)]
pub struct Guarded {
    words: Vec<u64>,
    len: usize,
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
        // black_box: the compiler must read the bytes again each time.
        let lo = std::hint::black_box(self.lo);
        let hi = std::hint::black_box(self.hi);
        if let Some(i) = lo.iter().rposition(|&b| b != GUARD_BYTE) {
            panic!("byte {} before the region changed", GUARD - i);
        }
        if let Some(i) = hi.iter().position(|&b| b != GUARD_BYTE) {
            panic!("byte {i} after the region's end changed");
        }
    }
}
