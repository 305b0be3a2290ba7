"""Fits the piecewise polynomials of recur-kernels' tanh (kernels/src/activation/mod.rs) and
prints them as Rust constants, with the f32 error they reach.

    python kernels/tools/fit_tanh.py        # numpy; never needed to build or test

tanh(|x|) on [0, 9.5] is cut into 14 intervals: [0, 1/8) and then half binades ([1/8, 3/16),
[3/16, 1/4), ..., [8, 12), the last one clamped at 9.5), so that an interval's index is the
float's exponent and first mantissa bit (`bits >> 22`, less a constant). On each one a degree-6
polynomial in d = |x| - center, the center a float chosen so that d is exact (Sterbenz), is
fitted to minimize the relative error (least squares on Chebyshev nodes, reweighted towards
minimax, Lawson). On [0, 1/8) the center is 0 and the constant term is 0, so tanh keeps its
relative accuracy near 0.
"""
import numpy as np

F32 = np.float32
DEG = 6
CLAMP = 9.5
TABLE = 16  # entries: one AVX-512 register (a permute picks a lane); 14 are used


def intervals():
    edges, e = [0.0, 0.125], 0.125
    while e < 8:
        edges += [e * 1.5, e * 2]
        e *= 2
    edges.append(CLAMP)
    return list(zip(edges[:-1], edges[1:]))


def fit(n, lo, hi):
    center = 0.0 if n == 0 else float(F32((lo + hi) / 2)) if hi == CLAMP else lo * 1.25
    lo = max(lo, 1e-3)  # tanh(x) / x near 0 is the n == 0 fit's own basis
    d = np.cos(np.linspace(0, np.pi, 4000)) * (hi - lo) / 2 + (hi + lo) / 2 - center
    t = np.tanh(d + center)
    powers = np.arange(1 if n == 0 else 0, DEG + 1)
    a = d[:, None] ** powers / t[:, None]
    w = np.ones_like(d)
    for _ in range(40):
        sol, *_ = np.linalg.lstsq(a * np.sqrt(w)[:, None], np.sqrt(w), rcond=None)
        err = np.abs(a @ sol - 1)
        w = w * (err + 1e-3 * err.max())
        w /= w.sum()
    coef = np.zeros(DEG + 1)
    coef[powers] = sol
    return center, coef


def tanh32(x, centers, coefs):
    """The kernels' algorithm in f32, each FMA rounded once (through f64)."""
    a = np.minimum(np.abs(x), F32(CLAMP)).astype(F32)
    idx = np.maximum((a.view(np.int32) >> 22) - 247, 0)
    d = (a - centers[idx]).astype(F32)
    p = coefs[DEG][idx]
    for k in range(DEG - 1, -1, -1):
        p = (p.astype(np.float64) * d + coefs[k][idx]).astype(F32)
    return np.copysign(p, x).astype(F32)


def main():
    ivs = intervals()
    fits = [fit(n, lo, hi) for n, (lo, hi) in enumerate(ivs)]
    pad = TABLE - len(fits)
    centers = np.array([c for c, _ in fits] + [0.0] * pad, dtype=F32)
    coefs = np.array([[f[1][k] for f in fits] + [0.0] * pad for k in range(DEG + 1)], dtype=F32)
    x = np.concatenate(
        [np.arange(-400_000, 400_001) * 5e-5]
        + [np.array([2.0**e, -(2.0**e), 1.37 * 2.0**e]) for e in range(-40, 7)]
        + [np.random.default_rng(1).uniform(-12, 12, 4_000_000)]
    ).astype(F32)
    y = tanh32(x, centers, coefs)
    exact = np.tanh(x.astype(np.float64))
    err = np.abs(y - exact)
    ulp = np.spacing(np.abs(exact).astype(F32)).astype(np.float64)
    print(f"// max abs error {err.max():.2e}, rel {(err / np.maximum(np.abs(exact), 1e-30)).max():.2e},"
          f" {(err / ulp).max():.2f} ulp; tanh({CLAMP}) = {tanh32(np.array([CLAMP], F32), centers, coefs)[0]!r}")
    def rows(v, indent):
        """Shortest decimals that read back as the same f32, four to a line."""
        vals = [np.format_float_scientific(c, unique=True, exp_digits=1).replace("e+0", "")
                .replace(".e", ".0e") for c in v]
        vals = [x + "0" if x.endswith(".") else x for x in vals]
        pad = " " * (indent + 4)
        return "[\n" + "".join(pad + ", ".join(vals[i:i + 4]) + ",\n" for i in range(0, len(vals), 4)) \
            + " " * indent + "]"
    print(f"pub(crate) const TANH_CENTER: [f32; {TABLE}] = {rows(centers, 0)};")
    print(f"pub(crate) const TANH_COEF: [[f32; {TABLE}]; {DEG + 1}] = [")
    for k in range(DEG + 1):
        print(f"    {rows(coefs[k], 4)},")
    print("];")
    for n, (lo, hi) in enumerate(ivs):
        print(f"// {n}: [{lo}, {hi})")


if __name__ == "__main__":
    main()
