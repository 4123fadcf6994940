"""The ``actguide-preprocess`` CLI: agent trajectories, QA records or your own verl rows → verl parquet with reference
actions; and the two built-in datasets (``build-offline``: FanOutQA over offline Wikipedia; ``build-barrier``: the
barrier world)."""
