"""PyTorch's side of `recur bench --contrast`: nn.LSTM(D, D) inference beside
nn.MultiheadAttention(D, heads) with a causal mask (need_weights=False, so PyTorch runs its
fused scaled_dot_product_attention), on the same (T, B, D), under torch.inference_mode.

Usage: python contrast_torch.py THREADS [--steps 16,64,256,1024,4096] [--batch 8] [--width 512]
       [--heads 8]

Prints one line a case: "T B D heads threads lstm_ms attention_ms attention_gflops", the
FLOPs counted as `recur bench --contrast` counts them (8 T B D^2 + 2 B D T (T + 1)). Timing: one
warm-up call, then the median of calls until 1 s has passed (at least 3). Optional: never
needed by the tests."""
import argparse, statistics, time

import torch


def median_ms(f):
    f()
    times, start = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < 1.0:
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("threads", type=int)
    ap.add_argument("--steps", default="16,64,256,1024,4096")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    d, b = a.width, a.batch
    lstm = torch.nn.LSTM(d, d).eval()
    mha = torch.nn.MultiheadAttention(d, a.heads).eval()
    print("# T B D heads threads lstm_ms attention_ms attention_gflops")
    for t in [int(s) for s in a.steps.split(",")]:
        x = torch.randn(t, b, d)
        mask = torch.nn.Transformer.generate_square_subsequent_mask(t)
        with torch.inference_mode():
            lstm_ms = median_ms(lambda: lstm(x))
            att_ms = median_ms(
                lambda: mha(x, x, x, attn_mask=mask, is_causal=True, need_weights=False)
            )
        flops = 8 * t * b * d * d + 2 * b * d * t * (t + 1)
        print(f"{t} {b} {d} {a.heads} {a.threads} {lstm_ms:.3f} {att_ms:.3f} {flops / att_ms / 1e6:.1f}")


if __name__ == "__main__":
    main()
