//! Results are bit-identical at any thread count, and workspaces are safely reusable.

mod common;

use common::Case;
use recur_kernels::{CellKind, RnnDesc};

fn run_with(threads: usize, case: &Case) -> Vec<Vec<u32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let (infer, train, grads) = pool.install(|| case.optimized());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let mut all = vec![
        bits(&infer.output),
        bits(&infer.h_n),
        bits(&infer.c_n),
        bits(&train.output),
        bits(&train.h_n),
        bits(&grads.input),
        bits(&grads.h0),
        bits(&grads.c0),
    ];
    all.extend(grads.params.layers.iter().flat_map(|lp| {
        [
            bits(&lp.w_ih),
            bits(&lp.w_hh),
            bits(&lp.b_ih),
            bits(&lp.b_hh),
        ]
    }));
    all
}

#[test]
fn bit_identical_at_1_2_3_4_threads() {
    let cells = [
        CellKind::RnnTanh,
        CellKind::RnnRelu,
        CellKind::Lstm,
        CellKind::Gru,
    ];
    for (n, cell) in cells.into_iter().enumerate() {
        // Batches and sizes that split unevenly across threads; one direction, so that every
        // thread joins the step's team; few rows, so that the few-rows kernels run.
        for (batch, bidirectional) in [(13, true), (13, false), (1, false), (3, false)] {
            let desc = RnnDesc::new(cell, 19, 37)
                .layers(2)
                .bidirectional(bidirectional);
            let case = Case::new(desc, 11, batch, 40 + n as u64, true, true, true);
            let one = run_with(1, &case);
            for threads in [2, 3, 4] {
                assert!(
                    run_with(threads, &case) == one,
                    "{cell:?} batch {batch}: results differ at {threads} threads"
                );
            }
        }
    }
}
