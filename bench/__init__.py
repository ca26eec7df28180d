"""Benchmarks of the platform (run with ``make bench``)."""
