"""Benchmarks: G-conv layer overhead against the plain ``conv2d`` limit (and escnn), the experiment
configs' training steps against plain same-MAC networks, ``torch.compile`` checks and end-to-end
times. Entry points: ``scripts/bench.py`` (``make bench``) and ``scripts/gpu_check.py`` (``make gpu-check``).
"""
