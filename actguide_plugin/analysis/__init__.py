"""Offline analysis of a policy and a run: pass@k, evaluation summaries, Findings 1 and 2, training curves.

Pure (no verl): the commands ``actguide-eval`` and ``actguide-analyze`` collect samples through verl's machinery
(:mod:`actguide_plugin.verl_glue`) and hand plain records to this package, which computes and plots.
"""
