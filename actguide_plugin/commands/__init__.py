"""The back ends of the console scripts ``actguide-eval``, ``actguide-analyze`` and ``actguide-export``.

:mod:`actguide_plugin.cli` parses arguments and calls in here; these modules drive verl (a validation-only run,
the FSDP model merger, the agent loop in-process) and hand plain records to :mod:`actguide_plugin.analysis`.

- :mod:`.evaluate` — ``actguide-eval``'s validation-only run of the recipe and its progress bar;
- :mod:`.export` — a checkpoint as a Hugging Face model directory, with the run's files;
- :mod:`.offline_agent` / :mod:`.findings` — verl's agent loop, tools and reward in this process, for
  ``actguide-analyze barrier`` / ``levels``.
"""
