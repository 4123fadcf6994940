"""Console scripts ``actguide-eval``, ``actguide-analyze`` and ``actguide-export``: argument parsing and wiring only."""
