//! Criterion benches of the forward on the reference cases: the hoisted input GEMM, the
//! per-step recurrent GEMM, one whole step, and the whole-sequence inference forward; and two
//! stacks of small layers (run as a wavefront at 2 threads or more).
//!
//! Weights, workspaces and outputs are made once outside the timed closures (the forward cases
//! are `recur bench`'s own, [`Prepared`]). Threads:
//! RAYON_NUM_THREADS (default: all cores). Kernels: RECUR_ISA (default: the best available).

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use recur::bench::{reference_cases, BenchCase, BenchMode, Prepared};
use recur_kernels::{Isa, SplitMix64, WeightGemm};

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0.0f32; n];
    SplitMix64(seed).fill_uniform(&mut v, 1.0);
    v
}

/// The GEMMs alone: the hoisted projection (T*B rows) and one step's (B rows).
fn gemms(c: &mut Criterion) {
    let isa = Isa::detect().expect("a usable ISA");
    let mut group = c.benchmark_group("gemm");
    group.sample_size(10);
    for case in reference_cases() {
        let d = case.desc;
        let (t, b) = (case.seq, case.batch);
        let g = d.gates() * d.hidden_size;
        let w_ih = random(g * d.input_size, 1);
        let w_hh = random(g * d.hidden_size, 2);
        let hoisted = WeightGemm::new(isa, &w_ih, g, d.input_size, None).unwrap();
        let step = WeightGemm::new(isa, &w_hh, g, d.hidden_size, None).unwrap();
        let x = random(t * b * d.input_size, 3);
        let mut out = vec![0.0f32; t * b * g];
        let flops = |m: usize, k: usize| Throughput::Elements((2 * m * k * g) as u64);
        group.throughput(flops(t * b, d.input_size));
        group.bench_function(BenchmarkId::new("hoisted", case.id()), |bench| {
            bench.iter(|| hoisted.run(t * b, &x, &mut out).unwrap())
        });
        let h = random(b * d.hidden_size, 4);
        group.throughput(flops(b, d.hidden_size));
        group.bench_function(BenchmarkId::new("step", case.id()), |bench| {
            bench.iter(|| step.run(b, &h, &mut out[..b * g]).unwrap())
        });
    }
    group.finish();
}

/// The inference forward of `cases`, as `recur bench` runs it ([`Prepared`]).
fn forward_of(c: &mut Criterion, name: &str, cases: impl IntoIterator<Item = (BenchCase, String)>) {
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    for (case, id) in cases {
        let mut prepared = Prepared::new(case, BenchMode::Infer).unwrap();
        // Elements = FLOPs, so criterion's throughput reads as FLOP/s.
        group.throughput(Throughput::Elements(prepared.flops() as u64));
        group.bench_function(BenchmarkId::from_parameter(id), |bench| {
            bench.iter(|| prepared.run().unwrap())
        });
    }
    group.finish();
}

/// The inference forward over `seq` steps (1: a single step with its own projection).
fn forward_with(c: &mut Criterion, name: &str, steps: Option<usize>) {
    let cases = reference_cases().into_iter().map(|case| {
        let case = BenchCase {
            seq: steps.unwrap_or(case.seq),
            ..case
        };
        (case, case.id())
    });
    forward_of(c, name, cases);
}

/// Stacks of one-direction layers with a small W_hh, whose layers run at once at 2 threads or
/// more (`forward::wavefront` in the kernels crate).
fn stacked(c: &mut Criterion) {
    let cases = [
        (recur_kernels::CellKind::Lstm, 400, 8, 128, 2),
        (recur_kernels::CellKind::Gru, 100, 16, 256, 2),
    ]
    .map(|(cell, seq, batch, h, layers)| {
        let desc = recur_kernels::RnnDesc::new(cell, h, h).layers(layers);
        let case = BenchCase { desc, seq, batch };
        (case, format!("{}_L{layers}", case.id()))
    });
    forward_of(c, "forward_stacked", cases);
}

fn one_step(c: &mut Criterion) {
    forward_with(c, "forward_one_step", Some(1));
}

fn sequence(c: &mut Criterion) {
    forward_with(c, "forward_inference", None);
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = gemms, one_step, sequence, stacked
}
criterion_main!(benches);
