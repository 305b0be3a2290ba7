//! Criterion bench of training on the reference cases: the training forward plus the full
//! backward (grad_input, grad_h0 / grad_c0 and every weight gradient), saving the gate
//! activations (group `forward_backward`) or recomputing them in the backward
//! (`forward_backward_recompute`, `Mode::TrainingRecompute`).
//!
//! Weights, workspace and gradient buffers are made once outside the timed closure.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pprof::criterion::{Output, PProfProfiler};
use recur::bench::reference_cases;
use recur_kernels::{
    backward, forward_training, Gradients, Mode, OutputGrads, Outputs, PackedWeights, Params,
    SeqBatch, SplitMix64, Workspace,
};

fn train(c: &mut Criterion) {
    for (name, mode) in [
        ("forward_backward", Mode::Training),
        ("forward_backward_recompute", Mode::TrainingRecompute),
    ] {
        train_in(c, name, mode);
    }
}

fn train_in(c: &mut Criterion, name: &str, mode: Mode) {
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    for case in reference_cases() {
        let desc = case.desc;
        let (t, b) = (case.seq, case.batch);
        let weights = PackedWeights::new(&Params::random(&desc, 1)).unwrap();
        let mut rng = SplitMix64(2);
        let mut x = vec![0.0f32; t * b * desc.input_size];
        let mut go = vec![0.0f32; t * b * desc.output_size()];
        rng.fill_uniform(&mut x, 1.0);
        rng.fill_uniform(&mut go, 1.0);
        let mut ws = Workspace::new(&desc, t, b, mode).unwrap();
        let mut out = Outputs::zeros(&desc, t, b);
        let mut grads = Gradients::zeros(&desc, t, b);
        let input = SeqBatch::new(t, b, &x);
        let id = format!(
            "{}/T{t}_B{b}_I{}_H{}",
            desc.cell.name(),
            desc.input_size,
            desc.hidden_size
        );
        group.throughput(Throughput::Elements(3 * desc.forward_flops(t, b) as u64));
        group.bench_function(BenchmarkId::from_parameter(id), |bench| {
            bench.iter(|| {
                forward_training(&weights, &mut ws, &input, &mut out).unwrap();
                backward(
                    &weights,
                    &mut ws,
                    &input,
                    &OutputGrads::new(&go),
                    &mut grads,
                )
                .unwrap();
            })
        });
    }
    group.finish();
}

/// With `-- --profile-time SECONDS`, pprof samples each bench and writes a flamegraph to
/// target/criterion/<group>/<case>/profile/flamegraph.svg (see profiles/README.md).
fn config() -> Criterion {
    Criterion::default().with_profiler(PProfProfiler::new(250, Output::Flamegraph(None)))
}

criterion_group! {
    name = benches;
    config = config();
    targets = train
}
criterion_main!(benches);
