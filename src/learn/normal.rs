//! Standard normal draws in bulk, bit for bit the values `rand_distr::StandardNormal` gives
//! one call at a time, and leaving the stream where those calls would leave it.
//!
//! Why: synthetic features are normal, and drawing them one `sample` call at a time was about
//! a fifth of W1's run. Each call goes through the block RNG's index checks and an out-of-line
//! ziggurat. Here ChaCha fills a chunk of words at once and the ziggurat's fast path (about
//! 99% of draws: one multiply, one compare) runs inline over the chunk, a register of words at
//! a time (eight in AVX-512, four in AVX2 or portably, with the same operations), in streaks
//! written straight to the output up to a group's first slow draw. The rare slow draw is
//! handed to `StandardNormal` itself, reading the same words, so the two can never disagree.
//! Generated data, and so every golden trace, is unchanged.
//!
//! The invariant that keeps the stream position exact: a chunk never holds more words than
//! draws are still to come, and every draw reads at least one word. So no fetched word is ever
//! left unread, and a slow draw that runs past the chunk reads straight from the stream.
//!
//! Large fills read the stream's words through a [`Keystream`] where the CPU has AVX-512: the
//! same words, made sixteen blocks at a time.

use rand::RngCore;
use rand_distr::{Distribution, StandardNormal};

use super::chacha::Keystream;
#[cfg(target_arch = "x86_64")]
use crate::fastpath::Isa;
use crate::rng::{fill_bytes_from_u64, Stream};

/// Words fetched from the stream at a time.
const CHUNK: usize = 256;

/// Fewest draws worth a [`Keystream`]: starting one and moving the stream past it after cost
/// about what 256 draws save.
const KEYSTREAM_MIN: usize = 256;

/// Fills `out` with standard normal draws from `rng`: the same values, and the same stream
/// position after, as `out.len()` calls of `rng.sample(StandardNormal)`.
pub(crate) fn fill(rng: &mut Stream, out: &mut [f64]) {
    if crate::fastpath::reference_only() {
        // The reference path: rand_distr itself, one call at a time.
        use rand::Rng;
        return out.iter_mut().for_each(|x| *x = rng.sample(StandardNormal));
    }
    if out.len() >= KEYSTREAM_MIN {
        if let Some(mut words) = Keystream::at(rng) {
            fill_from(&mut Source::Keystream(&mut words), out);
            return words.finish(rng);
        }
    }
    fill_from(&mut Source::Stream(rng), out)
}

/// [`fill`] from either source of the stream's words.
fn fill_from(src: &mut Source, out: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    match crate::fastpath::isa() {
        // SAFETY: `isa` reports AVX-512F only where the CPU has it.
        Isa::Avx512 => return unsafe { avx512::fill(src, out) },
        // SAFETY: `isa` reports AVX2 only where the CPU has it.
        Isa::Avx2 => return unsafe { avx2::fill(src, out) },
        Isa::Portable => {}
    }
    fill_with(src, out, fast_streak)
}

/// Where a fill reads the stream's words: the [`Stream`] itself, or a [`Keystream`] standing
/// where it stands. Both give the same words. (An enum rather than a type parameter: more
/// copies of the fill loop were enough for the compiler to stop inlining the AVX2 fast path.)
enum Source<'a> {
    Stream(&'a mut Stream),
    Keystream(&'a mut Keystream),
}

impl Source<'_> {
    /// The next `out.len()` words. From a plain stream they are the stream's bytes read as
    /// little-endian words, as rand's slice fill gives them; on a little-endian machine the
    /// bytes are filled in place: that fill's own pass turning each word from little-endian
    /// (nothing to do here) costs a call per word whenever the compiler does not inline it,
    /// which depends on how the crate happens to be split into codegen units.
    #[inline(always)]
    fn words(&mut self, out: &mut [u64]) {
        match self {
            #[cfg(target_endian = "little")]
            Source::Stream(s) => {
                let len = std::mem::size_of_val(out);
                // SAFETY: the bytes of a `[u64]` are valid `u8`s at any alignment, and the
                // slice borrows `out` mutably for as long as it lives.
                let bytes = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast(), len) };
                s.fill_bytes(bytes);
            }
            #[cfg(not(target_endian = "little"))]
            Source::Stream(s) => rand::Rng::fill(&mut **s, out),
            Source::Keystream(k) => k.words(out),
        }
    }
}

impl RngCore for Source<'_> {
    fn next_u64(&mut self) -> u64 {
        match self {
            Source::Stream(s) => s.next_u64(),
            Source::Keystream(k) => k.next_u64(),
        }
    }

    fn next_u32(&mut self) -> u32 {
        match self {
            Source::Stream(s) => s.next_u32(),
            Source::Keystream(k) => k.next_u32(),
        }
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        match self {
            Source::Stream(s) => s.fill_bytes(dst),
            Source::Keystream(k) => k.fill_bytes(dst),
        }
    }
}

/// [`fill`], taking the fast path four words at a time with `streak` (a version of
/// [`fast_streak`]) and one word at a time where a group of four has a slow draw.
#[inline(always)]
fn fill_with<F>(rng: &mut Source, out: &mut [f64], streak: F)
where
    F: Fn(&[f64; 257], &[u64], &mut [f64]) -> usize,
{
    let edges = layer_edges();
    let mut words = [0u64; CHUNK];
    let mut done = 0;
    while done < out.len() {
        let want = (out.len() - done).min(CHUNK);
        rng.words(&mut words[..want]);
        let mut read = 0;
        while read < want {
            // Four at once while all four take the fast path (about 96% of the time).
            let k = streak(edges, &words[read..want], &mut out[done..]);
            (read, done) = (read + k, done + k);
            if read == want {
                break;
            }
            out[done] = match fast_path(edges, words[read]) {
                Some(z) => {
                    read += 1;
                    z
                }
                None => {
                    let mut src = Words {
                        words: &words[read..want],
                        read: 0,
                        rng: &mut *rng,
                    };
                    let z = StandardNormal.sample(&mut src);
                    read += src.read;
                    z
                }
            };
            done += 1;
        }
    }
}

/// Draws from whole groups of four `words` into `out` while all four of a group take the fast
/// path; returns how many words that took (a multiple of four). `out` has room for as many
/// draws as there are words.
#[inline(always)]
fn fast_streak(edges: &[f64; 257], words: &[u64], out: &mut [f64]) -> usize {
    let mut k = 0;
    while k + 4 <= words.len() {
        let Some(z) = fast_path4(edges, &words[k..k + 4]) else {
            break;
        };
        out[k..k + 4].copy_from_slice(&z);
        k += 4;
    }
    k
}

/// The ziggurat's first try on one word, exactly as `rand_distr` makes it: the low 8 bits pick
/// the layer, the top 52 a value in [-1, 1); `None` when the value falls outside the layer's
/// rectangle and the full algorithm must decide.
#[inline(always)]
fn fast_path(edges: &[f64; 257], bits: u64) -> Option<f64> {
    let i = (bits & 0xff) as usize;
    let u = f64::from_bits((bits >> 12) | (1024u64 << 52)) - 3.0;
    let x = u * edges[i];
    (x.abs() < edges[i + 1]).then_some(x)
}

/// [`fast_path`] on four words, `None` unless all four succeed.
#[inline(always)]
fn fast_path4(edges: &[f64; 257], words: &[u64]) -> Option<[f64; 4]> {
    let z = [0, 1, 2, 3].map(|l| fast_path(edges, words[l]));
    z.iter()
        .all(Option::is_some)
        .then(|| z.map(|v| v.unwrap_or(0.0)))
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256d, _mm256_and_pd, _mm256_castpd128_pd256, _mm256_castsi256_pd, _mm256_cmp_pd,
        _mm256_insertf128_pd, _mm256_loadu_si256, _mm256_movemask_pd, _mm256_mul_pd,
        _mm256_or_si256, _mm256_set1_epi64x, _mm256_set1_pd, _mm256_srli_epi64, _mm256_storeu_pd,
        _mm256_sub_pd, _mm256_unpackhi_pd, _mm256_unpacklo_pd, _mm_loadu_pd, _CMP_LT_OQ,
    };

    use super::Source;

    /// [`super::fill_from`] with [`fast_streak`] in AVX2 registers.
    #[target_feature(enable = "avx2")]
    pub(super) fn fill(src: &mut Source, out: &mut [f64]) {
        // A closure, which takes on this function's target features, so it may call the
        // AVX2 functions below.
        super::fill_with(src, out, |edges, words, out| fast_streak(edges, words, out))
    }

    /// [`super::fast_streak`]: the same draws, the same bits, written straight to `out`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn fast_streak(edges: &[f64; 257], words: &[u64], out: &mut [f64]) -> usize {
        assert!(out.len() >= words.len());
        let mut k = 0;
        while k + 4 <= words.len() {
            match fast_path4(edges, &words[k..k + 4]) {
                // SAFETY: `k + 4 <= words.len() <= out.len()` (asserted): four draws fit.
                Some(x) => unsafe { _mm256_storeu_pd(out.as_mut_ptr().wrapping_add(k), x) },
                None => break,
            }
            k += 4;
        }
        k
    }

    /// [`super::fast_path4`] on four lanes: the same operations, the same bits.
    ///
    /// Each lane's two edges, `x[i]` and `x[i + 1]`, are adjacent, so one 16-byte load fetches
    /// both; four such loads and two shuffles replace two gathers, which are microcoded and
    /// slow on CPUs with the Gather Data Sampling mitigation. Draws 0 and 2 share a register,
    /// 1 and 3 the other, so the in-lane unpacks leave the lanes in order (pairing 0 with 1
    /// instead took a lane-crossing permute of the words before and of the results after).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn fast_path4(edges: &[f64; 257], words: &[u64]) -> Option<__m256d> {
        assert!(words.len() >= 4);
        let pair = |k: usize| {
            let i = (words[k] & 0xff) as usize;
            // SAFETY: `i` is at most 255, so `edges[i]` and `edges[i + 1]` are in bounds.
            unsafe { _mm_loadu_pd(edges.as_ptr().wrapping_add(i)) }
        };
        {
            let (p0, p1, p2, p3) = (pair(0), pair(1), pair(2), pair(3));
            // [lo0 hi0 lo2 hi2] and [lo1 hi1 lo3 hi3]: the in-lane unpacks give
            // [lo0 lo1 lo2 lo3] and [hi0 hi1 hi2 hi3].
            let a = _mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(p0), p2);
            let b = _mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(p1), p3);
            let lo = _mm256_unpacklo_pd(a, b);
            let hi = _mm256_unpackhi_pd(a, b);
            // SAFETY: `words` holds at least four u64s (asserted).
            let w = unsafe { _mm256_loadu_si256(words.as_ptr().cast()) };
            let bits = _mm256_or_si256(_mm256_srli_epi64::<12>(w), _mm256_set1_epi64x(1024 << 52));
            let u = _mm256_sub_pd(_mm256_castsi256_pd(bits), _mm256_set1_pd(3.0));
            let x = _mm256_mul_pd(u, lo);
            let abs = _mm256_and_pd(x, _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX)));
            if _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_LT_OQ>(abs, hi)) != 0b1111 {
                return None;
            }
            Some(x)
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512d, _mm256_castpd128_pd256, _mm256_insertf128_pd, _mm512_abs_pd,
        _mm512_castpd256_pd512, _mm512_castsi512_pd, _mm512_cmp_pd_mask, _mm512_insertf64x4,
        _mm512_loadu_si512, _mm512_mul_pd, _mm512_or_si512, _mm512_set1_epi64, _mm512_set1_pd,
        _mm512_srli_epi64, _mm512_storeu_pd, _mm512_sub_pd, _mm512_unpackhi_pd, _mm512_unpacklo_pd,
        _mm_loadu_pd, _CMP_LT_OQ,
    };

    use super::Source;

    /// [`super::fill_from`] with [`fast_streak`] eight words at a time.
    #[target_feature(enable = "avx512f")]
    pub(super) fn fill(src: &mut Source, out: &mut [f64]) {
        // A closure, which takes on this function's target features, so it may call the
        // AVX-512 functions below.
        super::fill_with(src, out, |edges, words, out| fast_streak(edges, words, out))
    }

    /// [`super::fast_streak`]: the same draws, the same bits, written straight to `out`. A
    /// group of eight with a slow draw still gives the fast draws before it (about one group
    /// in nine has a slow draw, and starting over after it would redo up to seven).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn fast_streak(edges: &[f64; 257], words: &[u64], out: &mut [f64]) -> usize {
        assert!(out.len() >= words.len());
        let mut k = 0;
        while k + 8 <= words.len() {
            let (x, fast) = fast_path8(edges, &words[k..k + 8]);
            // SAFETY: `k + 8 <= words.len() <= out.len()` (asserted), so eight draws fit.
            unsafe { _mm512_storeu_pd(out.as_mut_ptr().wrapping_add(k), x) };
            if fast != 0xff {
                return k + fast.trailing_ones() as usize;
            }
            k += 8;
        }
        k
    }

    /// [`super::fast_path`] on eight lanes, the same operations and bits, and the mask of the
    /// lanes that succeed. As in the AVX2 version, each lane's two edges come in one 16-byte
    /// load; draws 0, 2, 4 and 6 share a register and 1, 3, 5 and 7 the other, so the in-lane
    /// unpacks leave the lanes in order.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn fast_path8(edges: &[f64; 257], words: &[u64]) -> (__m512d, u8) {
        assert!(words.len() >= 8);
        {
            let pair = |k: usize| {
                let i = (words[k] & 0xff) as usize;
                // SAFETY: `i` is at most 255, so `edges[i]` and `edges[i + 1]` are in bounds.
                unsafe { _mm_loadu_pd(edges.as_ptr().wrapping_add(i)) }
            };
            let half = |a: usize, b: usize| {
                _mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(pair(a)), pair(b))
            };
            let even = _mm512_insertf64x4::<1>(_mm512_castpd256_pd512(half(0, 2)), half(4, 6));
            let odd = _mm512_insertf64x4::<1>(_mm512_castpd256_pd512(half(1, 3)), half(5, 7));
            let lo = _mm512_unpacklo_pd(even, odd);
            let hi = _mm512_unpackhi_pd(even, odd);
            // SAFETY: `words` holds at least eight u64s (asserted).
            let w = unsafe { _mm512_loadu_si512(words.as_ptr().cast()) };
            let bits = _mm512_or_si512(_mm512_srli_epi64::<12>(w), _mm512_set1_epi64(1024 << 52));
            let u = _mm512_sub_pd(_mm512_castsi512_pd(bits), _mm512_set1_pd(3.0));
            let x = _mm512_mul_pd(u, lo);
            (x, _mm512_cmp_pd_mask::<_CMP_LT_OQ>(_mm512_abs_pd(x), hi))
        }
    }
}

/// The chunk's words, then the stream itself: what the slow path reads as its RNG.
struct Words<'a, 'b> {
    words: &'a [u64],
    read: usize,
    rng: &'a mut Source<'b>,
}

impl RngCore for Words<'_, '_> {
    fn next_u64(&mut self) -> u64 {
        match self.words.get(self.read) {
            Some(&w) => {
                self.read += 1;
                w
            }
            None => self.rng.next_u64(),
        }
    }

    /// `StandardNormal` reads whole u64s only; a u32 would take a whole word here, which is
    /// not what the plain stream does, so nothing calls this on the hot path.
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        fill_bytes_from_u64(self, dst);
    }
}

/// The ziggurat's layer edges, fedsim's own copy (see [`super::ziggurat`]).
fn layer_edges() -> &'static [f64; 257] {
    &super::ziggurat::EDGES
}

/// The layer edges `x[0..=256]` as rand_distr's `StandardNormal` has them, read out of it: a
/// word for layer `i` whose value bits make `u = -2⁻²⁰` comes back from the fast path as
/// exactly `-x[i]·2⁻²⁰` (a power-of-two scaling loses nothing). Layer 255's rectangle test
/// always fails (`x[256] = 0`), so its second word, all ones, makes the slow path accept.
#[cfg(test)]
fn rand_distr_edges() -> [f64; 257] {
    // 2·(1 + f/2⁵²) = 3 − 2⁻²⁰ in the ziggurat's [2, 4) float, less 3, is −2⁻²⁰.
    const VALUE_BITS: u64 = ((1 << 51) - (1 << 31)) << 12;
    const SCALE: f64 = (1u64 << 20) as f64;
    let mut x = [0.0; 257];
    for (i, edge) in x.iter_mut().enumerate().take(256) {
        let mut script = Script([VALUE_BITS | i as u64, u64::MAX], 0);
        let z: f64 = StandardNormal.sample(&mut script);
        *edge = -z * SCALE;
    }
    x
}

/// Plays a fixed list of words, then words that the fast path accepts at once (`u = 0`), so a
/// changed `rand_distr` gives wrong edges (which the tests catch) rather than a hang.
#[cfg(test)]
struct Script([u64; 2], usize);

#[cfg(test)]
impl RngCore for Script {
    fn next_u64(&mut self) -> u64 {
        self.1 += 1;
        self.0.get(self.1 - 1).copied().unwrap_or(1 << 63)
    }

    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        fill_bytes_from_u64(self, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{stream, NONE};
    use rand::Rng;

    /// Draws `n` normals both ways from the same stream, in `fill` calls of the given sizes.
    fn both_ways(seed: u64, sizes: &[usize]) {
        let mut bulk = stream(seed, "normal-test", NONE, NONE);
        let mut single = bulk.clone();
        for (turn, &n) in sizes.iter().enumerate() {
            let mut got = vec![0.0; n];
            // The dispatched path (AVX-512 or AVX2 where the CPU has them), the portable one
            // and the AVX2 one, in turn.
            match turn % 3 {
                0 => fill(&mut bulk, &mut got),
                #[cfg(target_arch = "x86_64")]
                2 if std::arch::is_x86_feature_detected!("avx2") => {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    unsafe { avx2::fill(&mut Source::Stream(&mut bulk), &mut got) }
                }
                _ => fill_with(&mut Source::Stream(&mut bulk), &mut got, fast_streak),
            }
            for (k, g) in got.iter().enumerate() {
                let want: f64 = single.sample(StandardNormal);
                assert_eq!(g.to_bits(), want.to_bits(), "draw {k} of {n}, seed {seed}");
            }
            assert_eq!(
                bulk.get_word_pos(),
                single.get_word_pos(),
                "after {n} draws"
            );
        }
        assert_eq!(bulk.next_u64(), single.next_u64());
    }

    #[test]
    fn bulk_draws_are_the_single_draws_bit_for_bit() {
        // 800k draws meet the slow path thousands of times and the tail (i = 0) about two
        // hundred times; chunk sizes around CHUNK test the hand-over to the stream.
        for seed in 0..4 {
            both_ways(
                seed,
                &[100_000, 100_000, 100_000, 1, 63, 64, 65, 127, 0, 3840, 5, 9],
            );
        }
    }

    #[test]
    fn our_edges_are_rand_distrs_bit_for_bit() {
        let ours = layer_edges().map(f64::to_bits);
        assert_eq!(ours, rand_distr_edges().map(f64::to_bits));
        let x = layer_edges();
        // rand_distr's ZIG_NORM_R, the start of the tail, and the top layer's zero.
        assert_eq!(x[1], 3.654_152_885_361_009);
        assert!(x.windows(2).all(|w| w[0] > w[1]), "edges decrease");
        assert_eq!(x[256], 0.0);
    }

    #[test]
    fn the_slow_paths_are_exercised() {
        let mut r = stream(9, "normal-test", NONE, NONE);
        let (mut slow, mut tail) = (0, 0);
        for _ in 0..200_000 {
            let bits = r.next_u64();
            if fast_path(layer_edges(), bits).is_none() {
                slow += 1;
                tail += usize::from(bits & 0xff == 0);
            }
        }
        assert!(slow > 1000 && tail > 10, "slow {slow}, tail {tail}");
    }
}
