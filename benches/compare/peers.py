"""PyTorch and ONNX Runtime timings on any list of RNN shapes, as a fragment of run.sh's log.

Usage: python peers.py THREADS [--cases extra|sweep|reference|CELL:T:B:I:H[:L][:bi],...] [--tool torch|ort|both]
       python peers.py --list [--cases ...]     -> the cases, one "cell T B I H L D" a line (for run.sh)

Prints "== torch THREADS" then the PyTorch lines (fwd-infer under torch.inference_mode, and fwd+bwd
of y.sum()), then "== ort THREADS" and the ONNX Runtime lines (fwd-infer), in the formats of
../shared/anchors/torch_rnn.py and ort_rnn.py, which table.py parses (with " L=n" after H for a stack of n layers). Each tool runs in its own
process (this script again), as the anchors do, so that one's idle thread pool never spins
while the other is timed.

Timing as in the anchors: one warm-up call, then the best of 3 loops of the anchors' repetitions
(5 inference, 3 training), raised for fast cases until a loop lasts at least --min-loop seconds
(default 0.1; 0 gives exactly the anchors' repetitions). Models built as in the anchors: torch.nn
defaults after torch.manual_seed(0); the ONNX model a single LSTM/GRU/RNN node, opset 14, weights
N(0, 0.05^2) from numpy's default_rng(0), zero bias (a stack of L layers: L nodes, each output squeezed
into the next one's input). FLOPs counted as the anchors do (GEMM work): forward 2*T*B*(I_l+H)*G*H summed
over the layers, fwd+bwd 3x that. Times print with 3 decimals (the anchors use 2), which
table.py reads the same way, so that the speed-ups of sub-millisecond cases keep their digits."""
import argparse, math, os, subprocess, sys, time

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
CASES = {  # cell, T, B, I, H[, layers]
    "reference": [("lstm", 100, 1, 256, 256), ("lstm", 100, 16, 512, 512), ("lstm", 100, 64, 512, 512),
                  ("lstm", 50, 64, 1024, 1024), ("gru", 100, 16, 512, 512), ("gru", 100, 64, 512, 512),
                  ("rnn", 100, 64, 512, 512)],
    # shapes outside the reference table: odd sizes, I != H, long T, small H
    "extra": [("lstm", 37, 5, 300, 200), ("lstm", 400, 8, 128, 128), ("gru", 61, 3, 100, 383),
              ("rnn", 100, 32, 1000, 250), ("lstm", 100, 1, 64, 64), ("gru", 50, 24, 512, 1000),
              # batch 1 with a W_hh larger than L2 (4 and 6.75 MiB), streamed from L3 every step
              ("lstm", 100, 1, 512, 512), ("gru", 100, 1, 768, 768),
              # stacks of one direction, whose layers recur runs as a wavefront
              ("lstm", 400, 8, 128, 128, 2), ("gru", 100, 16, 256, 256, 2)],
    # shapes picked on 2026-12-02 to probe for weak spots, then left as they are (never tuned
    # to): batches of 1 to 256, H of 32 to 1024 (odd ones, small ones), I far from H, long T
    "sweep": [("lstm", 50, 2, 40, 700), ("lstm", 200, 3, 96, 96), ("gru", 100, 7, 333, 129),
              ("rnn", 500, 4, 64, 32), ("lstm", 64, 33, 256, 300), ("gru", 30, 128, 256, 256),
              ("lstm", 20, 256, 128, 512), ("gru", 100, 1, 128, 1024), ("lstm", 1000, 16, 32, 64),
              ("rnn", 100, 2, 1024, 1024), ("lstm", 100, 9, 512, 257), ("gru", 10, 50, 50, 50),
              ("lstm", 100, 16, 100, 100), ("lstm", 200, 4, 50, 50), ("gru", 100, 8, 64, 100),
              ("lstm", 50, 32, 300, 200)],
}


def parse_cases(spec):
    """The cases as (cell, T, B, I, H, L, D): L layers (default 1), D = 2 for bidirectional."""
    if spec in CASES:
        return [tuple(c) + (1, 1)[len(c) - 5:] for c in CASES[spec]]
    out = []
    for item in spec.split(","):
        f = item.strip().split(":")
        bi = f[-1] == "bi"
        f = f[:-1] if bi else f
        if len(f) not in (5, 6) or f[0] not in GATES:
            sys.exit(f"peers.py: bad case {item!r}: want extra, sweep, reference or CELL:T:B:I:H[:L][:bi],... with CELL lstm|gru|rnn")
        out.append((f[0],) + tuple(int(v) for v in f[1:]) + ((1,) if len(f) == 5 else ()) + (2 if bi else 1,))
    return out


def forward_flops(cell, T, B, I, H, L, D=1):
    return sum(2 * D * T * B * ((I if l == 0 else D * H) + H) * GATES[cell] * H for l in range(L))


def name(cell, T, B, I, H, L, D=1):
    return f"{cell} T={T} B={B} I={I} H={H}" + (f" L={L}" if L > 1 else "") + (" D=2" if D == 2 else "")


def timeit(fn, reps, min_loop):
    t = time.perf_counter(); fn(); first = time.perf_counter() - t  # warm-up
    if min_loop > 0 and first > 0:
        reps = max(reps, min(1000, math.ceil(min_loop / first)))
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps): fn()
        best = min(best, (time.perf_counter() - t) / reps)
    return best


def run_torch(threads, cases, min_loop):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    for cell, T, B, I, H, L, D in cases:
        mod = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](I, H, num_layers=L, bidirectional=D == 2)
        x = torch.randn(T, B, I)
        flops = forward_flops(cell, T, B, I, H, L, D)
        with torch.inference_mode():
            s = timeit(lambda: mod(x), 5, min_loop)
        print(f"{name(cell, T, B, I, H, L, D)} fwd-infer {s*1e3:.3f} ms {flops/s/1e9:.1f} GFLOP/s", flush=True)
        xg = x.clone().requires_grad_(True)
        def step():
            out, _ = mod(xg)
            out.sum().backward()
        s = timeit(step, 3, min_loop)
        print(f"{name(cell, T, B, I, H, L, D)} fwd+bwd {s*1e3:.3f} ms {3*flops/s/1e9:.1f} GFLOP/s", flush=True)


def run_ort(threads, cases, min_loop):
    import numpy as np, onnx, onnxruntime as ort
    from onnx import helper, TensorProto
    rng = np.random.default_rng(0)
    for cell, T, B, I, H, L, D in cases:
        op, G = cell.upper(), GATES[cell]
        nodes, inits = [], []
        direction = {"direction": "bidirectional"} if D == 2 else {}
        for l in range(L):
            W = (rng.standard_normal((D, G * H, I if l == 0 else D * H)) * 0.05).astype(np.float32)
            R = (rng.standard_normal((D, G * H, H)) * 0.05).astype(np.float32)
            Bb = np.zeros((D, 2 * G * H), np.float32)
            inits += [onnx.numpy_helper.from_array(a, f"{n}{l}") for a, n in ((W, "W"), (R, "R"), (Bb, "B"))]
            x_in = "X" if l == 0 else f"X{l}"
            y = "Y" if l == L - 1 else f"Y{l}"
            nodes.append(helper.make_node(op, [x_in, f"W{l}", f"R{l}", f"B{l}"], [y], hidden_size=H, **direction))
            if l < L - 1 and D == 1:  # (T, 1, B, H) -> (T, B, H)
                nodes.append(helper.make_node("Squeeze", [y, "axis1"], [f"X{l + 1}"]))
            elif l < L - 1:  # (T, 2, B, H) -> (T, B, 2, H) -> (T, B, 2H)
                nodes.append(helper.make_node("Transpose", [y], [f"Z{l}"], perm=[0, 2, 1, 3]))
                nodes.append(helper.make_node("Reshape", [f"Z{l}", "tbd"], [f"X{l + 1}"]))
        if L > 1 and D == 1:
            inits.append(onnx.numpy_helper.from_array(np.array([1], np.int64), "axis1"))
        elif L > 1:
            inits.append(onnx.numpy_helper.from_array(np.array([T, B, D * H], np.int64), "tbd"))
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I])],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
        so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        s = timeit(lambda: sess.run(None, {"X": x}), 5, min_loop)
        flops = forward_flops(cell, T, B, I, H, L, D)
        print(f"ort {name(cell, T, B, I, H, L, D)} fwd-infer {s*1e3:.3f} ms {flops/s/1e9:.1f} GFLOP/s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("threads", type=int, nargs="?")
    ap.add_argument("--cases", default=os.environ.get("PEERS_CASES", "extra"),
                    help="extra (default), sweep, reference, or CELL:T:B:I:H[:L][:bi],... (bi: bidirectional; also from $PEERS_CASES)")
    ap.add_argument("--tool", choices=("torch", "ort", "both"), default="both")
    ap.add_argument("--min-loop", type=float, default=0.1, help="seconds a timed loop lasts at least (0: anchors' reps)")
    ap.add_argument("--list", action="store_true", help="print the cases, one 'cell T B I H L D' a line, and exit")
    ap.add_argument("--no-header", action="store_true", help="leave out the '== TOOL THREADS' line")
    a = ap.parse_args()
    cases = parse_cases(a.cases)
    if a.list:
        for c in cases: print(*c)
        return
    if a.threads is None:
        ap.error("THREADS is required")
    for tool in (("torch", "ort") if a.tool == "both" else (a.tool,)):
        if not a.no_header: print(f"== {tool} {a.threads}", flush=True)
        if a.tool == "both":  # a fresh process per tool, like the anchors
            subprocess.run([sys.executable, os.path.abspath(__file__), str(a.threads), "--cases", a.cases,
                            "--tool", tool, "--min-loop", str(a.min_loop), "--no-header"], check=True)
        else:
            (run_torch if tool == "torch" else run_ort)(a.threads, cases, a.min_loop)


if __name__ == "__main__":
    main()
