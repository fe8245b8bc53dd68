"""Benchmarks: G-conv layer overhead against the plain ``conv2d`` limit (and escnn),
training steps of the experiment configs against plain same-MAC networks,
``torch.compile`` checks and end-to-end times.

Entry points: ``scripts/bench.py`` (``make bench``, any device) and
``scripts/gpu_check.py`` (``make gpu-check``, a fresh GPU machine); results go to
``results/bench/<device>.md`` and ``.json``.
"""
