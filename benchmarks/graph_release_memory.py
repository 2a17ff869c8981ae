"""Resident memory of a DnCNN-17 training loop that holds the previous step's ``loss`` (as most
loops do): with the graph released after ``backward()`` the held loss no longer keeps that step's
activations alive (issue 12).

Usage: OMP_NUM_THREADS=2 python -m benchmarks.graph_release_memory LABEL
"""

import resource
import sys

import pyengine as pe
from pyengine.models import DnCNN


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


pe.manual_seed(0)
net = DnCNN()
opt = pe.optim.Adam(net.parameters(), lr=1e-3)
x = pe.randn(16, 1, 40, 40)
base = rss_mb()
loss = None
for _ in range(4):
    opt.zero_grad()
    loss = ((net(x) - x) ** 2).mean()  # the previous step's loss stays referenced until here
    loss.backward()
    opt.step()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
label = sys.argv[1] if len(sys.argv) > 1 else "pyengine"
print(f"{label} rss_after_model={base:.0f}MB rss_holding_loss={rss_mb():.0f}MB peak={peak:.0f}MB")
