"""Benchmarks (``callqa bench ...``) and ASR scoring: tooling around the jobs, not part of them."""
