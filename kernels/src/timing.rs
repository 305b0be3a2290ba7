//! Helpers of the ignored timing tests (`cargo test --release -p recur-kernels --lib timing --
//! --ignored --nocapture`): measurements printed for the reader, never asserted.

use crate::isa::Isa;

/// The paths to time: every one this CPU has, or only the one `RECUR_TIMING_ISA` names.
pub(crate) fn isas() -> Vec<Isa> {
    let only = std::env::var("RECUR_TIMING_ISA").ok();
    Isa::available()
        .into_iter()
        .filter(|isa| {
            only.as_ref()
                .is_none_or(|o| format!("{isa:?}").eq_ignore_ascii_case(o))
        })
        .collect()
}

/// Whether a timing loop runs shape `m`x`n`x`k`: all of them, or only the one
/// `RECUR_TIMING_SHAPE` names (`6400x2048x512`, say, for a profiler).
pub(crate) fn wants(m: usize, n: usize, k: usize) -> bool {
    std::env::var("RECUR_TIMING_SHAPE").map_or(true, |s| s == format!("{m}x{n}x{k}"))
}

/// Seconds per call of `f`: the median of 5 runs of `reps` calls on a one-thread pool (the
/// machine is shared and noisy).
pub(crate) fn median_secs(reps: usize, mut f: impl FnMut() + Send) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            pool.install(|| (0..reps).for_each(|_| f()));
            t.elapsed().as_secs_f64() / reps as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}
