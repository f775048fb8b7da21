"""Throughput benchmarks (`fertrain bench ...`): targets live here, not in timed tests."""
