"""Benchmarks of pyengine's kernels against NumPy and PyTorch: ``python -m benchmarks``."""
