//! Criterion bench of the whole-sequence inference forward on the reference cases.
//!
//! Weights, workspace and outputs are made once outside the timed closure, so only the
//! forward pass is measured. Threads: RAYON_NUM_THREADS (default: all cores).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use recur::bench::reference_cases;
use recur_kernels::{
    forward_inference, Mode, Outputs, PackedWeights, Params, SeqBatch, SplitMix64, Workspace,
};

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward_inference");
    group.sample_size(10);
    for case in reference_cases() {
        let desc = case.desc;
        let (t, b) = (case.seq, case.batch);
        let weights = PackedWeights::new(&Params::random(&desc, 1)).unwrap();
        let mut x = vec![0.0f32; t * b * desc.input_size];
        SplitMix64(2).fill_uniform(&mut x, 1.0);
        let mut ws = Workspace::new(&desc, t, b, Mode::Inference).unwrap();
        let mut out = Outputs::zeros(&desc, t, b);
        let input = SeqBatch::new(t, b, &x);
        let id = format!(
            "{}/T{}_B{}_I{}_H{}",
            desc.cell.name(),
            t,
            b,
            desc.input_size,
            desc.hidden_size
        );
        // Elements = FLOPs, so criterion's throughput reads as FLOP/s.
        group.throughput(Throughput::Elements(desc.forward_flops(t, b) as u64));
        group.bench_function(BenchmarkId::from_parameter(id), |bench| {
            bench.iter(|| forward_inference(&weights, &mut ws, &input, &mut out).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
