"""Benchmarks of scaletune against its peers; results are written to bench/results/."""
