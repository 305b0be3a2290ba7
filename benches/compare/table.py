"""Turns the log of benches/compare/run.sh into markdown tables. Usage: table.py LOG infer|train
Rows in the order of the recur lines; the case column reads "T, B, H" while every case has I = H
(the reference run), else "T, B, I, H"; a stack of layers adds "(L layers)". A peer missing from the log
shows as "-"."""
import re, sys
log = open(sys.argv[1]).read().split("\n")
torch, ort, recur, peak, sec = {}, {}, {}, {}, None
for line in log:
    m = re.match(r"== (torch|recur|ort|peak) (\d)", line)
    if m: sec = (m.group(1), int(m.group(2))); continue
    if not sec: continue
    if sec[0] == "peak":
        m = re.search(r"avx512 peak ([\d.]+)", line)
        if m: peak[sec[1]] = float(m.group(1))
    elif sec[0] in ("torch", "ort"):
        m = re.search(r"(lstm|gru|rnn) T=(\d+) B=(\d+) I=(\d+) H=(\d+)(?: L=(\d+))? (fwd-infer|fwd\+bwd) ([\d.]+) ms", line)
        if m:
            mode = "infer" if m.group(7) == "fwd-infer" else "train"
            d = torch if sec[0] == "torch" else ort
            L = int(m.group(6) or 1)
            d[(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)), L, mode, sec[1])] = float(m.group(8))
    else:
        f = line.split()
        if len(f) == 11 and f[0] in ("lstm", "gru", "rnn"):
            recur[(f[0], int(f[2]), int(f[3]), int(f[4]), int(f[5]), int(f[6]), f[1], sec[1])] = (float(f[9]), float(f[10]))
mode_want = sys.argv[2]
square = all(k[3] == k[4] for k in recur if k[6] == mode_want)
col = "case (T, B, I=H)" if square else "case (T, B, I, H)"
fmt = lambda x: "-" if x is None else f"{x:.2f}"
print(f"AVX-512 FMA peak measured in the same run (peak_flops.c): {peak.get(1,0):.0f} GFLOP/s on 1 thread, {peak.get(2,0):.0f} on 2.\n")
if mode_want == "infer":
    print(f"| {col} | threads | recur ms | GFLOP/s | % of peak | PyTorch ms | ONNX Runtime ms | speed-up vs faster peer |")
else:
    print(f"| {col} | threads | recur ms | GFLOP/s | % of peak | PyTorch ms | speed-up vs PyTorch |")
print("|---|---|---|---|---|---|---|---|" if mode_want == "infer" else "|---|---|---|---|---|---|---|")
for k in recur:
    cell, T, B, I, H, L, mode, th = k
    if mode != mode_want: continue
    ms, gf = recur[k]
    name = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN tanh"}[cell]
    shape = (f"{T}, {B}, {H}" if square else f"{T}, {B}, {I}, {H}") + (f" ({L} layers)" if L > 1 else "")
    t = torch.get(k); o = ort.get(k)
    pk = 100 * gf / peak[th] if th in peak else float("nan")
    if mode == "infer":
        best = min((x for x in (t, o) if x is not None), default=None)
        up = "-" if best is None else f"{best/ms:.2f}x"
        print(f"| {name} {shape} | {th} | {ms:.2f} | {gf:.0f} | {pk:.0f}% | {fmt(t)} | {fmt(o)} | {up} |")
    else:
        up = "-" if t is None else f"{t/ms:.2f}x"
        print(f"| {name} {shape} | {th} | {ms:.2f} | {gf:.0f} | {pk:.0f}% | {fmt(t)} | {up} |")
