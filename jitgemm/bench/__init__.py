"""`python -m jitgemm bench`: the decode suite timed as BENCHMARKING.md prescribes (needs a GPU, CuPy)."""
