//! What every criterion bench here shares.

use criterion::Criterion;
use pprof::criterion::{Output, PProfProfiler};

/// Criterion with pprof: with `-- --profile-time SECONDS`, each bench is sampled and a
/// flamegraph written to target/criterion/<group>/<case>/profile/flamegraph.svg (see
/// profiles/README.md).
pub fn config() -> Criterion {
    Criterion::default().with_profiler(PProfProfiler::new(250, Output::Flamegraph(None)))
}
