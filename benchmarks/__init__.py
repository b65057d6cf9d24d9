"""Benchmarks, run by ``make bench`` (``python -m benchmarks``); each writes tables under results/bench/."""
