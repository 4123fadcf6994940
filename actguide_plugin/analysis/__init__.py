"""Offline analysis of a policy and a run: pass@k, evaluation summaries, Findings 1 and 2, training curves.

Pure (no verl): the commands ``actguide-eval`` and ``actguide-analyze`` collect samples through verl's machinery
(:mod:`actguide_plugin.commands`) and hand plain records to this package, which computes and plots. The CPU
demo's per-step table is :mod:`.run_summary`; the barrier experiment's curves are :mod:`.learning`.
"""
