"""The barrier world: tasks past a reachability barrier, a compact vocabulary and a warm-started base policy.

:mod:`.world` (pure: the tasks, pages and reference plans), :mod:`.vocab` (the world's tokenizer and chat
template), :mod:`.base_policy` (the tiny model that knows the primitives but not the procedure).
"""
