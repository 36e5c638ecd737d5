//! The one switch between fedsim's fast paths and their reference paths.
//!
//! Several hot spots have a hand-written fast path beside a reference one that must give the
//! same bytes: the AVX2 and AVX-512 kernels beside portable loops, the bulk normal sampler
//! and the AVX-512 ChaCha blocks beside `rand`, the hand-walked protobuf views beside prost,
//! and `npy_fast` beside ndarray-npy. Unit tests compare each pair on chosen inputs; setting
//! the environment variable `FEDSIM_KERNELS=portable` makes whole runs take the reference
//! side everywhere, so that CI can check every example and golden trace both ways.
//!
//! The choice is read once per process. Both sides give the same results, so it can never
//! change a run's output, only its speed.

use std::sync::OnceLock;

/// The instruction set the fast kernels may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Isa {
    /// Plain Rust loops: the reference kernels.
    Portable,
    /// AVX2 and FMA.
    Avx2,
    /// AVX-512F and DQ, besides AVX2 and FMA.
    Avx512,
}

/// Whether `FEDSIM_KERNELS=portable` asks for the reference paths.
pub fn reference_only() -> bool {
    static REFERENCE: OnceLock<bool> = OnceLock::new();
    *REFERENCE.get_or_init(|| std::env::var("FEDSIM_KERNELS").is_ok_and(|v| v == "portable"))
}

/// What the kernels may use: the best this CPU has, or [`Isa::Portable`] under
/// `FEDSIM_KERNELS=portable`.
pub(crate) fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        if reference_only() {
            Isa::Portable
        } else {
            detect()
        }
    })
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    use std::arch::is_x86_feature_detected as has;
    if !(has!("avx2") && has!("fma")) {
        Isa::Portable
    } else if has!("avx512f") && has!("avx512dq") {
        Isa::Avx512
    } else {
        Isa::Avx2
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Portable
}
