"""Experiment code for gcnn-repro: data, training, reporting and benchmarks.

The G-conv library itself lives in :mod:`gcnn` and the architectures in
:mod:`models`; nothing in those packages depends on this one.
"""
