//! The reference's hand-written BPTT against central finite differences of its forward, in
//! f64, on every gradient entry: input, h0, c0 and every parameter.

mod common;

use common::Case;
use recur_kernels::{reference, CellKind, Params, RnnDesc, SeqBatch};

const EPS: f64 = 1e-6;
/// On |analytic - numeric| / max(1, |analytic|).
const TOL: f64 = 1e-6;

/// What one loss evaluation perturbs.
#[derive(Clone)]
struct Point {
    params: Params<f64>,
    x: Vec<f64>,
    h0: Option<Vec<f64>>,
    c0: Option<Vec<f64>>,
}

/// L = Σ output·go + Σ h_n·gh + Σ c_n·gc. Padded outputs are zero, so their `go` adds nothing:
/// the sum is over valid positions only, as the backward's loss.
fn loss(case: &Case, p: &Point) -> f64 {
    let mut input = SeqBatch::new(case.seq_len, case.batch, &p.x[..]);
    input.lengths = case.lengths.as_deref();
    input.h0 = p.h0.as_deref();
    input.c0 = p.c0.as_deref();
    let out = reference::forward(&p.params, &input).unwrap();
    let dot = |a: &[f64], b: Option<&Vec<f64>>| -> f64 {
        b.map_or(0.0, |b| a.iter().zip(b).map(|(x, y)| x * y).sum())
    };
    dot(&out.output, Some(&case.grad_output))
        + dot(&out.h_n, case.grad_h_n.as_ref())
        + dot(&out.c_n, case.grad_c_n.as_ref())
}

/// Checks `analytic[i]` against (L(v + eps) - L(v - eps)) / 2 eps, where `entry(point, i)` is
/// the value moved. `nonzero`: the group must have a gradient of some size (not vacuous).
fn check(
    case: &Case,
    what: &str,
    analytic: &[f64],
    nonzero: bool,
    entry: impl Fn(&mut Point, usize) -> &mut f64,
) {
    let base = Point {
        params: case.params.clone(),
        x: case.x.clone(),
        h0: case.h0.clone(),
        c0: case.c0.clone(),
    };
    let at = |i: usize, delta: f64| {
        let mut p = base.clone();
        *entry(&mut p, i) += delta;
        loss(case, &p)
    };
    for (i, &a) in analytic.iter().enumerate() {
        let numeric = (at(i, EPS) - at(i, -EPS)) / (2.0 * EPS);
        let err = (a - numeric).abs() / a.abs().max(1.0);
        assert!(
            err < TOL,
            "{:?} {what}[{i}]: analytic {a:.9e}, finite difference {numeric:.9e}",
            case.desc
        );
    }
    if nonzero {
        let max = analytic.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(
            max > 1e-3,
            "{:?} {what}: largest gradient {max:e}",
            case.desc
        );
    }
}

fn check_case(case: &Case) {
    let (_, g) = case.reference();
    check(case, "grad input", &g.input, true, |p, i| &mut p.x[i]);
    if case.h0.is_some() {
        check(case, "grad h0", &g.h0, true, |p, i| {
            &mut p.h0.as_mut().unwrap()[i]
        });
    }
    if case.c0.is_some() {
        check(case, "grad c0", &g.c0, true, |p, i| {
            &mut p.c0.as_mut().unwrap()[i]
        });
    }
    // Every weight and bias, in Params::iter order (bias gradients are zero without bias).
    let analytic: Vec<f64> = g.params.iter().copied().collect();
    check(case, "grad params", &analytic, true, |p, i| {
        p.params.iter_mut().nth(i).unwrap()
    });
    if !case.desc.bias {
        for lp in &g.params.layers {
            assert!(lp.b_ih.iter().chain(&lp.b_hh).all(|&v| v == 0.0));
        }
    }
}

/// Padded length 4, batch 3, variable lengths in no order (one sequence at T, one at 1).
fn varlen(desc: RnnDesc, seed: u64, lengths: [usize; 3]) -> Case {
    let mut case = Case::new(desc, 4, 3, seed, false, true, true);
    case.lengths = Some(lengths.to_vec());
    case
}

fn every_config(cell: CellKind) {
    // 1 and 2 layers, uni- and bidirectional, with bias, h0 / c0 and grad h_n / c_n given.
    for (n, (layers, bidir)) in [(1, false), (1, true), (2, false), (2, true)]
        .into_iter()
        .enumerate()
    {
        let desc = RnnDesc::new(cell, 3, 2).layers(layers).bidirectional(bidir);
        let lengths = if n % 2 == 0 { [3, 1, 4] } else { [2, 4, 1] };
        check_case(&varlen(desc, 10 + n as u64, lengths));
    }
    // No bias, with initial states and variable lengths.
    let desc = RnnDesc::new(cell, 2, 3)
        .layers(2)
        .bidirectional(true)
        .bias(false);
    check_case(&varlen(desc, 50, [3, 1, 4]));
    // No bias, no initial state, no grad h_n / c_n, all lengths equal.
    check_case(&Case::new(desc, 3, 2, 77, false, false, false));
}

#[test]
fn rnn_tanh() {
    every_config(CellKind::RnnTanh);
}

#[test]
fn rnn_relu() {
    every_config(CellKind::RnnRelu);
}

#[test]
fn lstm() {
    every_config(CellKind::Lstm);
}

#[test]
fn gru() {
    every_config(CellKind::Gru);
}
