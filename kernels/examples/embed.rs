//! Embeds `recur-kernels` alone: a 2-layer bidirectional GRU, forward and backward, on a
//! 2-thread rayon pool, with variable-length sequences.
//!
//! cargo run --release -p recur-kernels --example embed

use recur_kernels::*;

fn main() -> Result<()> {
    let desc = RnnDesc::new(CellKind::Gru, 32, 64)
        .layers(2)
        .bidirectional(true);
    let params = Params::<f32>::random(&desc, 7);
    let weights = PackedWeights::new(&params)?;

    let (t, b) = (20, 4);
    let mut x = vec![0.0f32; t * b * desc.input_size];
    SplitMix64(1).fill_uniform(&mut x, 1.0);
    let lengths = [20, 7, 13, 1];
    let input = SeqBatch::new(t, b, &x).with_lengths(&lengths);

    // Sized once; reuse them for every batch of this shape.
    let mut ws = Workspace::new(&desc, t, b, Mode::Training)?;
    let mut out = Outputs::zeros(&desc, t, b);
    let mut grads = Gradients::zeros(&desc, t, b);
    let grad_output = vec![1.0f32; out.output.len()];

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a 2-thread pool");
    pool.install(|| -> Result<()> {
        forward_training(&weights, &mut ws, &input, &mut out)?;
        backward(
            &weights,
            &mut ws,
            &input,
            &OutputGrads::new(&grad_output),
            &mut grads,
        )
    })?;

    let norm: f32 = grads.params.iter().map(|g| g * g).sum::<f32>().sqrt();
    println!(
        "output {} values, h_n {}, |grad params| = {norm:.4}, workspace {} KiB",
        out.output.len(),
        out.h_n.len(),
        ws.bytes() / 1024
    );
    Ok(())
}
