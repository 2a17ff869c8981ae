"""Global switches of the kernels' algorithm choice, like ``torch.backends``.

``conv_benchmark``: when True (the default), a convolution called with ``algo="auto"`` times its
algorithms on the first call of each pass for a new shape and reuses the fastest (as
``torch.backends.cudnn.benchmark``); when False it picks by a fixed heuristic, so results do not
depend on timings. An explicit ``algo=`` always wins.
"""

conv_benchmark: bool = True
