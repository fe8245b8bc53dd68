"""Benchmarks: G-conv layer overhead against the plain ``conv2d`` limit (and
escnn), training throughput, ``torch.compile`` checks and end-to-end times.

Entry point: ``scripts/bench.py`` (``make bench``); results go to
``results/bench/<device>.md`` and ``.json``.
"""
from .layers import LayerCase, bench_layers, default_cases
from .machine import describe_machine, device_slug, resolve_device
from .report import evaluate_targets, render_markdown, write_report
from .suite import BenchOptions, run_bench
from .timing import Timing, interleaved_timings, ratio

__all__ = ["LayerCase", "bench_layers", "default_cases", "describe_machine", "device_slug",
           "resolve_device", "evaluate_targets", "render_markdown", "write_report", "BenchOptions",
           "run_bench", "Timing", "interleaved_timings", "ratio"]
