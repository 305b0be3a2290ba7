//! Criterion benches of the contrast `recur bench --contrast` prints: an LSTM layer's inference
//! forward beside causal self-attention of the same width (512, 8 heads) over the same steps,
//! batch 8, at T = 64, 256 and 1024, and one generated step of each (attention's over a KV
//! cache of the steps before). Threads: RAYON_NUM_THREADS (default: all cores); kernels:
//! RECUR_ISA (default: the best available). The whole sequences' throughput is in FLOPs.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use recur::bench::{BenchCase, BenchMode, Prepared};
use recur::contrast::{PreparedAttention, PreparedDecode, PreparedRnnStep};
use recur_kernels::{CellKind, RnnDesc};

const WIDTH: usize = 512;
const HEADS: usize = 8;
const BATCH: usize = 8;

fn rnn_vs_attention(c: &mut Criterion) {
    let mut group = c.benchmark_group("rnn_vs_attention");
    group.sample_size(10);
    for seq in [64, 256, 1024] {
        let case = BenchCase {
            desc: RnnDesc::new(CellKind::Lstm, WIDTH, WIDTH),
            seq,
            batch: BATCH,
        };
        let mut rnn = Prepared::new(case, BenchMode::Infer).unwrap();
        group.throughput(Throughput::Elements(rnn.flops() as u64));
        group.bench_function(BenchmarkId::new("lstm", format!("T{seq}")), |b| {
            b.iter(|| rnn.run().unwrap())
        });
        drop(rnn);
        let mut att = PreparedAttention::new(WIDTH, HEADS, seq, BATCH).unwrap();
        group.throughput(Throughput::Elements(att.flops() as u64));
        group.bench_function(BenchmarkId::new("attention", format!("T{seq}")), |b| {
            b.iter(|| att.run().unwrap())
        });
    }
    group.finish();
}

/// One generated step: the LSTM's from its state (the same at any T), attention's step T over
/// a KV cache of the T - 1 before it.
fn generated_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("generated_step");
    group.sample_size(10);
    let mut rnn = PreparedRnnStep::new(CellKind::Lstm, WIDTH, BATCH).unwrap();
    group.bench_function("lstm", |b| b.iter(|| rnn.run().unwrap()));
    for seq in [64, 256, 1024] {
        let mut gen = PreparedDecode::new(WIDTH, HEADS, seq, BATCH).unwrap();
        group.bench_function(BenchmarkId::new("attention", format!("T{seq}")), |b| {
            b.iter(|| gen.run().unwrap())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = rnn_vs_attention, generated_step
}
criterion_main!(benches);
