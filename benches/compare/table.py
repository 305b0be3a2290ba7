"""Turns the log of benches/compare/run.sh into markdown tables. Usage: table.py LOG infer|train
Rows in the order of the recur lines; the case column reads "T, B, H" while every case has I = H
(the reference run), else "T, B, I, H"; a stack of layers adds "(L layers)", two directions
"(bidirectional)". A peer missing from the log
shows as "-".

A log of several rounds ("== round N" lines, run.sh's ROUNDS) gives per case the median over the
rounds of each time, and the median of the speed-ups taken within each round (recur beside the
peers timed minutes before it), with their range over the rounds in a last column: the machine's
speed drifts between rounds by more than the margins measured."""
import re, statistics, sys
log = open(sys.argv[1]).read().split("\n")
torch, ort, recur, peak, sec, rnd = {}, {}, {}, {}, None, 0
l2 = {}  # threads -> {round: (GB/s per core, KiB each)}: benches/compare/l2_read.c
peak_isa = set()  # "avx512" or "avx2": the widest the CPU has (benches/compare/peak_flops.c)
cpus = set()  # from `recur bench`'s "# CPU (ISA kernels)" lines
order = []
for line in log:
    m = re.match(r"== round (\d+)", line)
    if m: rnd = int(m.group(1)); sec = None; continue
    m = re.match(r"== (torch|recur|ort|peak|l2) (\d)", line)
    if m: sec = (m.group(1), int(m.group(2))); continue
    if not sec: continue
    if sec[0] == "peak":
        m = re.search(r"(avx512|avx2) peak ([\d.]+)", line)
        if m:
            peak_isa.add(m.group(1))
            peak.setdefault(sec[1], {})[rnd] = float(m.group(2))
    elif sec[0] == "l2":
        m = re.search(r"l2 read ([\d.]+) GB/s per core \(\d+ threads, (\d+) KiB each", line)
        if m: l2.setdefault(sec[1], {})[rnd] = (float(m.group(1)), int(m.group(2)))
    elif sec[0] in ("torch", "ort"):
        m = re.search(r"(lstm|gru|rnn) T=(\d+) B=(\d+) I=(\d+) H=(\d+)(?: L=(\d+))?(?: D=(\d))? (fwd-infer|fwd\+bwd) ([\d.]+) ms", line)
        if m:
            mode = "infer" if m.group(8) == "fwd-infer" else "train"
            d = torch if sec[0] == "torch" else ort
            L = int(m.group(6) or 1)
            D = int(m.group(7) or 1)
            k = (m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)), L, D, mode, sec[1])
            d.setdefault(k, {})[rnd] = float(m.group(9))
    else:
        if line.startswith("# "): cpus.add(line[2:].strip()); continue
        f = line.split()
        if len(f) == 11 and f[0] in ("lstm", "gru", "rnn"):
            k = (f[0], int(f[2]), int(f[3]), int(f[4]), int(f[5]), int(f[6]), int(f[7]), f[1], sec[1])
            if k not in recur: order.append(k)
            recur.setdefault(k, {})[rnd] = (float(f[9]), float(f[10]))
mode_want = sys.argv[2]
rounds = sorted({r for v in recur.values() for r in v})
many = len(rounds) > 1
med = lambda xs: statistics.median(xs) if xs else None
square = all(k[3] == k[4] for k in recur if k[7] == mode_want)
col = "case (T, B, I=H)" if square else "case (T, B, I, H)"
fmt = lambda x: "-" if x is None else f"{x:.2f}"
peak_med = {t: med(list(v.values())) for t, v in peak.items()}
pk1, pk2 = peak_med.get(1, 0), peak_med.get(2, 0)
what = f", the median of {len(rounds)} rounds" if many else ""
if cpus: print(f"CPU: {'; '.join(sorted(cpus))}.\n")
isa_name = {"avx512": "AVX-512", "avx2": "AVX2"}
isa = "/".join(isa_name[i] for i in sorted(peak_isa)) or "FMA"
print(f"{isa} FMA peak measured in the same run (benches/compare/peak_flops.c{what}): {pk1:.0f} GFLOP/s on 1 thread, {pk2:.0f} on 2.\n")
extra = " range over the rounds |" if many else ""
if mode_want == "infer":
    print(f"| {col} | threads | recur ms | GFLOP/s | % of peak | PyTorch ms | ONNX Runtime ms | speed-up vs faster peer |{extra}")
else:
    print(f"| {col} | threads | recur ms | GFLOP/s | % of peak | PyTorch ms | speed-up vs PyTorch |{extra}")
print("|---" * ((8 if mode_want == "infer" else 7) + many) + "|")
for k in order:
    cell, T, B, I, H, L, D, mode, th = k
    if mode != mode_want: continue
    runs = recur[k]
    ms = med([v[0] for v in runs.values()])
    gf = med([v[1] for v in runs.values()])
    name = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN tanh"}[cell]
    shape = (f"{T}, {B}, {H}" if square else f"{T}, {B}, {I}, {H}") + (f" ({L} layers)" if L > 1 else "")
    shape += " (bidirectional)" if D == 2 else ""
    t, o = torch.get(k, {}), ort.get(k, {})
    t_ms, o_ms = fmt(med(list(t.values()))), fmt(med(list(o.values())))
    pk = 100 * gf / peak_med[th] if peak_med.get(th) else float("nan")
    # Speed-ups within each round, against the faster peer of that round (PyTorch in training).
    ups = []
    for r, (r_ms, _) in runs.items():
        peers = [d[r] for d in ((t, o) if mode == "infer" else (t,)) if r in d]
        if peers: ups.append(min(peers) / r_ms)
    up = "-" if not ups else f"{med(ups):.2f}x"
    span = (f" {min(ups):.2f}-{max(ups):.2f}x |" if ups else " - |") if many else ""
    if mode == "infer":
        print(f"| {name} {shape} | {th} | {ms:.2f} | {gf:.0f} | {pk:.0f}% | {t_ms} | {o_ms} | {up} |{span}")
    else:
        print(f"| {name} {shape} | {th} | {ms:.2f} | {gf:.0f} | {pk:.0f}% | {t_ms} | {up} |{span}")

# Batch 1 against its bound: each step streams the thread's share of W_hh (G*H*H floats) from
# its L2 at the read bandwidth measured in the same round (l2_read.c, at that share's size),
# and the input projection (2*T*I*G*H FLOPs) runs at the FMA peak of that round; since the
# projection rides the steps (forward::rides_steps), the two overlap, so the bound is the larger
# of them (the issue's: the stream alone, where it is the larger).
gates = {"lstm": 4, "gru": 3, "rnn": 1}
lines = []
for k in order:
    cell, T, B, I, H, L, D, mode, th = k
    if mode != mode_want or mode != "infer" or B != 1 or L != 1 or D != 1: continue
    G, ratios, bounds, bws = gates[cell], [], [], []
    for r, (r_ms, _) in recur[k].items():
        bw, kib = l2.get(th, {}).get(r, (None, None))
        pk = peak.get(th, {}).get(r)
        if bw is None or pk is None or kib * 1024 != G * H * H * 4 // th: continue
        bound = max(T * kib * 1024 / (bw * 1e9) * 1e3, 2 * T * I * G * H / (pk * 1e9) * 1e3)
        ratios.append(r_ms / bound); bounds.append(bound); bws.append(bw)
    if ratios:
        lines.append(f"{ {'lstm': 'LSTM', 'gru': 'GRU', 'rnn': 'RNN tanh'}[cell]} {T}, 1, {H} at {th} thread{'s' if th > 1 else ''}: "
                     f"bound {med(bounds):.2f} ms (W_hh's {G * H * H * 4 // th >> 10} KiB a core from L2 at {med(bws):.0f} GB/s), "
                     f"recur {med(ratios):.2f}x it" + (f" ({min(ratios):.2f}-{max(ratios):.2f}x)" if many else ""))
if lines:
    print("\nBatch 1 beside its bound, measured in the same run" + (" (medians of the rounds)" if many else "") + ":")
    for l in lines: print(f"- {l}.")
