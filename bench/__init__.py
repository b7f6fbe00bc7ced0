"""Benchmarks of ATLAS: `python -m bench.orderflow` measures order flow and writes bench/REPORT.md."""
