"""Benchmarks: each prints its figures beside a saved baseline run, with ratios."""
