//! Results are bit-identical at any thread count, and workspaces are safely reusable.

mod common;

use common::Case;
use recur_kernels::{CellKind, Isa, RnnDesc};

fn run_with(threads: usize, case: &Case, isa: Isa) -> Vec<Vec<u32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let (infer, train, grads) = pool.install(|| case.optimized_with(isa));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    // Recomputing training: its weight gradients (summed chunk by chunk) are its own.
    let (re_out, re_grads) = pool.install(|| case.recompute_with(isa));
    let mut all = vec![
        bits(&infer.output),
        bits(&infer.h_n),
        bits(&infer.c_n),
        bits(&train.output),
        bits(&train.h_n),
        bits(&train.c_n),
        bits(&grads.input),
        bits(&grads.h0),
        bits(&grads.c0),
        bits(&re_out.output),
        bits(&re_out.h_n),
        bits(&re_out.c_n),
        bits(&re_grads.input),
        bits(&re_grads.h0),
        bits(&re_grads.c0),
    ];
    for g in [&grads, &re_grads] {
        all.extend(g.params.layers.iter().flat_map(|lp| {
            [
                bits(&lp.w_ih),
                bits(&lp.w_hh),
                bits(&lp.b_ih),
                bits(&lp.b_hh),
            ]
        }));
    }
    all
}

/// `case` gives the same bits at each of `threads` as at 1 thread, on every ISA path.
fn assert_bit_identical(case: &Case, threads: &[usize], what: &str) {
    for isa in Isa::available() {
        let one = run_with(1, case, isa);
        for &n in threads {
            assert!(
                run_with(n, case, isa) == one,
                "{what} {isa:?}: results differ at {n} threads"
            );
        }
    }
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
        // Batches and sizes that split unevenly across threads: the steps are cut by blocks of
        // 16 or 32 hidden units, so H = 100 or 70 gives 3 to 7 blocks, the last one partial;
        // one direction, so that every thread joins the step's team; few rows, so that the
        // few-rows kernels run; batch 40, so that the input projection runs in chunks of 7 steps.
        let hidden = [100, 70, 100, 70][n];
        // One direction and several layers run as a wavefront at 2 threads or more: over 11
        // steps in chunks of 1 step; 4 layers (more than the threads) with a batch of 5 over 37
        // steps, chunks of 3 steps and a last one of 1 (`forward::wave_chunk_steps`). One layer
        // with a batch of 2 rows a thread or more, or of 3 at 2 threads (`forward::few_rows_pay`):
        // its steps are cut by rows, not units, in chunks of 3 to 5 steps whose projection is
        // shared by claims (`forward::pipe_steps`; B = 260: of 1 step); with 8 rows a thread
        // (16 and 17 at 2 threads), each thread projects its own rows, then takes the others'
        // (`forward::own_rows`), in inference in one round where the rows cut evenly (16).
        for (batch, bidirectional, layers, steps) in [
            (13, false, 1, 11),
            (5, false, 1, 11),
            (3, false, 1, 11),
            (16, false, 1, 11),
            (17, false, 1, 11),
            (260, false, 1, 5),
            (13, true, 2, 11),
            (13, false, 2, 11),
            (1, false, 2, 11),
            (3, false, 2, 11),
            (40, false, 2, 11),
            (5, false, 4, 37),
        ] {
            let desc = RnnDesc::new(cell, 19, hidden)
                .layers(layers)
                .bidirectional(bidirectional);
            let case = Case::new(desc, steps, batch, 40 + n as u64, true, true, true);
            let what = format!("{cell:?} batch {batch} layers {layers}");
            assert_bit_identical(&case, &[2, 3, 4], &what);
        }
        // Batch 1 over 27 steps: each chunk of 8 steps projects the next one in its steps'
        // GEMMs (`forward::rides_steps`, AVX-512), every slice its own units.
        for bidirectional in [false, true] {
            let desc = RnnDesc::new(cell, 45, hidden).bidirectional(bidirectional);
            let case = Case::new(desc, 27, 1, 50 + n as u64, true, true, true);
            let what = format!("{cell:?} batch 1 over 27 steps, bidirectional {bidirectional}");
            assert_bit_identical(&case, &[2, 3, 4], &what);
        }
    }
}

#[test]
fn bit_identical_cut_by_units_over_several_chunks() {
    // A W_hh past the core's L2: the steps are cut by units (each slice projecting its units'
    // columns of every chunk), but on Zen 4 by rows all the same for 4 rows a thread or more
    // (see `cache::rows_past_l2`). Past 2 MiB (LSTM 370, GRU 430, RNN 750) on the CPUs this
    // crate is tuned on (1 MiB of L2 on Zen 4 and Zen 5, 2 MiB on the Intel Xeon); between 1
    // and 2 MiB (LSTM 300, GRU 300, RNN 520) by units on Zen 5, by rows on the Xeon. Batch 40:
    // chunks of 7 steps, so 23 steps are 4 chunks (by rows on Zen 4); batch 15: 2 chunks (on
    // Zen 4 by rows at 2 and 3 threads); batch 7 over 40 steps: 2 chunks, by units at 2 and 3
    // threads on every CPU; batch 3: one chunk.
    for (cell, hidden) in [
        (CellKind::Lstm, 300),
        (CellKind::Gru, 300),
        (CellKind::RnnTanh, 520),
        (CellKind::Lstm, 370),
        (CellKind::Gru, 430),
        (CellKind::RnnTanh, 750),
    ] {
        for (batch, steps) in [(40, 23), (15, 23), (7, 40), (3, 23)] {
            let desc = RnnDesc::new(cell, 33, hidden);
            let case = Case::new(desc, steps, batch, 7, true, true, true);
            let what = format!("{cell:?} batch {batch}");
            assert_bit_identical(&case, &[2, 3], &what);
            // And right, not only alike (the W_hh past L2 that the tests hold to the
            // reference; at batch 3 to keep the reference cheap).
            if batch == 3 {
                common::compare_all(&case, Isa::available()[0], 2e-5)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            }
        }
    }
}

#[test]
fn gate_tails_of_several_panels_match_reference_at_any_thread_count() {
    // H = 44, 76 and 108: whole panels and a tail of every gate's last units (packed::GateLayout)
    // of 1.5 to 4 panels, ending in a half-width one on AVX-512; H = 17: a tail alone. Batch 13
    // over 45 steps: three chunks of the projection, the last partial, the steps cut by rows
    // (W_hh in L2) and the projection then by rows too; batch 1 and 7: the few-rows kernels.
    for (n, cell) in [CellKind::Lstm, CellKind::Gru, CellKind::RnnTanh]
        .into_iter()
        .enumerate()
    {
        for hidden in [44, 76, 108, 17] {
            for (t, batch, bidirectional) in [
                (45, 13, false),
                (45, 13, true),
                (5, 1, false),
                (3, 7, false),
            ] {
                let desc = RnnDesc::new(cell, 19, hidden).bidirectional(bidirectional);
                let case = Case::new(desc, t, batch, 60 + n as u64, true, true, true);
                let what = format!("{cell:?} H {hidden} T {t} batch {batch} bidir {bidirectional}");
                for isa in Isa::available() {
                    common::compare_all(&case, isa, 2e-5)
                        .unwrap_or_else(|e| panic!("{what} {isa:?}: {e}"));
                }
                assert_bit_identical(&case, &[2, 3, 4], &what);
            }
        }
    }
}
