//! The words of a [`Stream`] (rand_chacha's `ChaCha8Rng`), sixteen ChaCha blocks at a time in
//! AVX-512 registers, for bulk readers such as the normal sampler.
//!
//! Why: generating W1's features is mostly generating ChaCha words. rand_chacha makes four
//! blocks per call, two to an AVX2 register, and hands them out through a 256-byte buffer; on
//! a CPU with AVX-512, one register holds the same word of sixteen blocks, each rotation is a
//! single instruction, and the words go straight to their reader. This is the same function on
//! the same key, counter and nonce, so the words are the stream's own, bit for bit (a test
//! compares them): a [`Keystream`] starts where its `Stream` stands and, when done, moves the
//! `Stream` past every word it handed out. Where the CPU lacks AVX-512, readers use the
//! `Stream` itself.

use rand::RngCore;

use crate::rng::{fill_bytes_from_u64, Stream};

/// u64 words per refill: sixteen blocks of sixteen u32 words.
const WORDS: usize = 128;

/// ChaCha's four constant words, "expand 32-byte k".
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// A [`Stream`]'s words from its current position on, read as u64s; see the module docs.
pub(crate) struct Keystream {
    /// Constants, key, block counter (words 12 and 13) and nonce, as ChaCha's input block.
    input: [u32; 16],
    /// The block the buffer starts at.
    block: u64,
    buf: [u64; WORDS],
    /// The next unread word of `buf`.
    next: usize,
    /// The stream's position when this began, in u32 words.
    start: u128,
    /// u64 words handed out.
    used: u128,
}

impl Keystream {
    /// The words of `rng` from where it stands, or `None` when this CPU lacks AVX-512 (or the
    /// reference paths are asked for, see [`crate::fastpath`]) or the stream stands mid-u64
    /// (a u32 was drawn last); then read `rng` itself.
    pub fn at(rng: &Stream) -> Option<Keystream> {
        #[cfg(target_arch = "x86_64")]
        if crate::fastpath::isa() == crate::fastpath::Isa::Avx512 {
            let start = rng.get_word_pos();
            if start % 2 == 1 {
                return None;
            }
            let seed = rng.get_seed();
            let stream = rng.get_stream();
            let mut input = [0u32; 16];
            input[..4].copy_from_slice(&SIGMA);
            for (w, b) in input[4..12].iter_mut().zip(seed.chunks_exact(4)) {
                *w = u32::from_le_bytes(b.try_into().expect("four bytes"));
            }
            input[14] = stream as u32;
            input[15] = (stream >> 32) as u32;
            let mut ks = Keystream {
                input,
                block: (start / 16) as u64,
                buf: [0; WORDS],
                next: (start % 16 / 2) as usize,
                start,
                used: 0,
            };
            ks.refill();
            return Some(ks);
        }
        let _ = rng;
        None
    }

    /// Moves `rng` past every word this keystream handed out, as if it had handed them out.
    pub fn finish(self, rng: &mut Stream) {
        rng.set_word_pos(self.start + 2 * self.used);
    }

    /// Fills `out` with the next words. (Not `fill`: `rand::Rng::fill` would shadow it on
    /// `&mut Keystream`.)
    pub fn words(&mut self, out: &mut [u64]) {
        let mut done = 0;
        while done < out.len() {
            if self.next == WORDS {
                self.block = self.block.wrapping_add(16);
                self.next = 0;
                // Sixteen whole blocks wanted: made where they go, not copied from `buf`
                // (the copy was ~1% of a two-thread W1 run).
                if let Some(whole) = out[done..].first_chunk_mut::<WORDS>() {
                    blocks(&self.input, self.block, whole);
                    self.next = WORDS;
                    done += WORDS;
                    continue;
                }
                self.refill();
            }
            let n = (out.len() - done).min(WORDS - self.next);
            out[done..done + n].copy_from_slice(&self.buf[self.next..self.next + n]);
            self.next += n;
            done += n;
        }
        self.used += out.len() as u128;
    }

    /// Sixteen blocks from `self.block` into `buf`.
    fn refill(&mut self) {
        blocks(&self.input, self.block, &mut self.buf);
    }
}

/// Sixteen blocks from `first` with `input`'s key and nonce into `out`. Only a [`Keystream`]
/// calls this, and one exists only where the CPU has AVX-512F (see [`Keystream::at`]).
fn blocks(input: &[u32; 16], first: u64, out: &mut [u64; WORDS]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as above, the CPU has AVX-512F.
    unsafe {
        avx512::blocks16(input, first, out)
    }
}

impl RngCore for Keystream {
    fn next_u64(&mut self) -> u64 {
        let mut w = [0];
        self.words(&mut w);
        w[0]
    }

    /// Takes a whole u64, which a `Stream` would not: nothing that reads a keystream draws
    /// u32s (the normal sampler reads whole words only).
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        fill_bytes_from_u64(self, dst);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi32, _mm512_cmplt_epu32_mask, _mm512_mask_add_epi32,
        _mm512_rol_epi32, _mm512_set1_epi32, _mm512_setr_epi32, _mm512_shuffle_i32x4,
        _mm512_storeu_si512, _mm512_unpackhi_epi32, _mm512_unpackhi_epi64, _mm512_unpacklo_epi32,
        _mm512_unpacklo_epi64, _mm512_xor_si512,
    };

    /// ChaCha's quarter round on four registers of sixteen lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn quarter(s: &mut [__m512i; 16], a: usize, b: usize, c: usize, d: usize) {
        {
            s[a] = _mm512_add_epi32(s[a], s[b]);
            s[d] = _mm512_rol_epi32::<16>(_mm512_xor_si512(s[d], s[a]));
            s[c] = _mm512_add_epi32(s[c], s[d]);
            s[b] = _mm512_rol_epi32::<12>(_mm512_xor_si512(s[b], s[c]));
            s[a] = _mm512_add_epi32(s[a], s[b]);
            s[d] = _mm512_rol_epi32::<8>(_mm512_xor_si512(s[d], s[a]));
            s[c] = _mm512_add_epi32(s[c], s[d]);
            s[b] = _mm512_rol_epi32::<7>(_mm512_xor_si512(s[b], s[c]));
        }
    }

    /// Blocks `first .. first + 16` of the ChaCha8 keystream with `input`'s key and nonce,
    /// in order, into `out`.
    #[target_feature(enable = "avx512f")]
    pub(super) fn blocks16(input: &[u32; 16], first: u64, out: &mut [u64; super::WORDS]) {
        let mut s: [__m512i; 16] = std::array::from_fn(|i| _mm512_set1_epi32(input[i] as i32));
        // Lane l is block first + l: its 64-bit counter, low word then high with the carry.
        let lo = _mm512_set1_epi32(first as u32 as i32);
        let counters = _mm512_add_epi32(
            lo,
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        );
        let carried = _mm512_cmplt_epu32_mask(counters, lo);
        let hi = _mm512_set1_epi32((first >> 32) as u32 as i32);
        s[12] = counters;
        s[13] = _mm512_mask_add_epi32(hi, carried, hi, _mm512_set1_epi32(1));
        let init = s;
        // ChaCha8: four double rounds, columns then diagonals.
        for _ in 0..4 {
            quarter(&mut s, 0, 4, 8, 12);
            quarter(&mut s, 1, 5, 9, 13);
            quarter(&mut s, 2, 6, 10, 14);
            quarter(&mut s, 3, 7, 11, 15);
            quarter(&mut s, 0, 5, 10, 15);
            quarter(&mut s, 1, 6, 11, 12);
            quarter(&mut s, 2, 7, 8, 13);
            quarter(&mut s, 3, 4, 9, 14);
        }
        for (v, i) in s.iter_mut().zip(init) {
            *v = _mm512_add_epi32(*v, i);
        }
        // Register j of the transpose is block j's sixteen words: eight u64s, low word first.
        for (j, block) in transpose16(s).iter().enumerate() {
            let words: &mut [u64; 8] = (&mut out[8 * j..8 * j + 8])
                .try_into()
                .expect("eight words");
            // SAFETY: an unaligned store of 64 bytes into the 8 u64s of `words`.
            unsafe { _mm512_storeu_si512(words.as_mut_ptr().cast(), *block) };
        }
    }

    /// A 16×16 transpose of u32 lanes: lane `j` of register `i` becomes lane `i` of register
    /// `j`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
        {
            // a[2k], a[2k + 1]: rows 2k and 2k + 1 interleaved, by lanes 0-1 and 2-3 of each
            // 128-bit quarter.
            let a: [__m512i; 16] = std::array::from_fn(|i| {
                let (x, y) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
                if i % 2 == 0 {
                    _mm512_unpacklo_epi32(x, y)
                } else {
                    _mm512_unpackhi_epi32(x, y)
                }
            });
            // b[4k + e]: quarter q holds words 4k .. 4k + 4 of block 4q + e.
            let b: [__m512i; 16] = std::array::from_fn(|i| {
                let (k, e) = (i / 4, i % 4);
                let (x, y) = (a[4 * k + e / 2], a[4 * k + 2 + e / 2]);
                if e % 2 == 0 {
                    _mm512_unpacklo_epi64(x, y)
                } else {
                    _mm512_unpackhi_epi64(x, y)
                }
            });
            // Block 4q + e is quarter q of b[e], b[4 + e], b[8 + e], b[12 + e]: a 4×4 transpose
            // of quarters.
            let mut out = r;
            for e in 0..4 {
                let c0 = _mm512_shuffle_i32x4::<0x44>(b[e], b[4 + e]);
                let c1 = _mm512_shuffle_i32x4::<0xEE>(b[e], b[4 + e]);
                let c2 = _mm512_shuffle_i32x4::<0x44>(b[8 + e], b[12 + e]);
                let c3 = _mm512_shuffle_i32x4::<0xEE>(b[8 + e], b[12 + e]);
                out[e] = _mm512_shuffle_i32x4::<0x88>(c0, c2);
                out[4 + e] = _mm512_shuffle_i32x4::<0xDD>(c0, c2);
                out[8 + e] = _mm512_shuffle_i32x4::<0x88>(c1, c3);
                out[12 + e] = _mm512_shuffle_i32x4::<0xDD>(c1, c3);
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Reads `n` u64s both ways, from position `skip` (in u64s) of a stream.
    fn both_ways(mut rng: Stream, skip: usize, n: usize) {
        for _ in 0..skip {
            rng.next_u64();
        }
        let mut plain = rng.clone();
        let ks = Keystream::at(&rng);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            ks.is_some(),
            crate::fastpath::isa() == crate::fastpath::Isa::Avx512
        );
        let Some(mut ks) = ks else {
            // No AVX-512 here: readers take the stream itself, which needs no test.
            return;
        };
        let mut got = vec![0u64; n];
        ks.words(&mut got[..n / 3]);
        ks.words(&mut got[n / 3..]);
        ks.finish(&mut rng);
        for (k, g) in got.iter().enumerate() {
            assert_eq!(*g, plain.next_u64(), "word {k} after {skip}");
        }
        assert_eq!(rng.get_word_pos(), plain.get_word_pos());
        assert_eq!(rng.next_u64(), plain.next_u64());
    }

    #[test]
    fn the_words_are_the_streams_bit_for_bit() {
        for seed in 0..3 {
            let rng = crate::rng::stream(seed, "chacha-test", 5, crate::rng::NONE);
            for (skip, n) in [(0, 1000), (3, 129), (64, 128), (127, 300), (1001, 7)] {
                both_ways(rng.clone(), skip, n);
            }
        }
        // Another nonce, and a block counter about to carry into its high word.
        let mut rng = Stream::from_seed([7; 32]);
        rng.set_stream(0x0123_4567_89ab_cdef);
        rng.set_word_pos((u128::from(u32::MAX) - 5) * 16);
        both_ways(rng, 0, 600);
    }

    #[test]
    fn a_stream_standing_mid_word_is_left_to_itself() {
        let mut rng = crate::rng::stream(1, "chacha-test", 0, 0);
        rng.next_u32();
        assert!(Keystream::at(&rng).is_none());
    }
}
