//! Criterion bench of training on the reference cases: the training forward plus the full
//! backward (grad_input, grad_h0 / grad_c0 and every weight gradient), saving the gate
//! activations (group `forward_backward`) or recomputing them in the backward
//! (`forward_backward_recompute`, `Mode::TrainingRecompute`).
//!
//! Each case is `recur bench`'s own ([`recur::bench::Prepared`]): weights, workspace and
//! gradient buffers made once outside the timed closure.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use recur::bench::{reference_cases, BenchMode, Prepared};

fn train(c: &mut Criterion) {
    for (name, mode) in [
        ("forward_backward", BenchMode::Train),
        ("forward_backward_recompute", BenchMode::Recompute),
    ] {
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        for case in reference_cases() {
            let mut prepared = Prepared::new(case, mode).unwrap();
            // Elements = FLOPs, so criterion's throughput reads as FLOP/s.
            group.throughput(Throughput::Elements(prepared.flops() as u64));
            group.bench_function(BenchmarkId::from_parameter(case.id()), |bench| {
                bench.iter(|| prepared.run().unwrap())
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = train
}
criterion_main!(benches);
