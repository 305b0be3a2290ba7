"""One PyTorch training step (forward + backward of y.sum(), grad of the input too) on one case,
for benches/compare/memory.sh to measure its peak memory. With `setup`, only the model and the
input are made: that process's peak is the baseline (Python, the torch library, the weights).

    python memory_torch.py CELL T B I H train|setup
"""
import sys

import torch

cell, t, b, i, h, what = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6]
torch.set_num_threads(1)
make = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
model = make(i, h)
x = torch.randn(t, b, i, requires_grad=True)
if what == "train":
    y, _ = model(x)
    y.sum().backward()
