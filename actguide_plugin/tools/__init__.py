"""Search-agent tools (``web_search``, ``web_visit``) and their backends.

- :mod:`.search_tools` — the verl ``BaseTool`` classes named in ``recipe/actguide/config/tools/*.yaml``;
- :mod:`.backends` — ``local`` (BM25, offline), ``retrieval_server`` (Search-R1 protocol), ``web_api`` (Serper);
- :mod:`.bm25_index`, :mod:`.corpus` — the offline corpus and its on-disk-cached BM25 index;
- :mod:`.httpclient`, :mod:`.cache` — retrying JSON client and SQLite cache shared by network callers;
- :mod:`.config` — the typed ``config:`` blocks of the tool yaml files; :mod:`.formatting` — how hits and pages are
  shown to the model (also used by the retriever server).

Nothing here is imported eagerly: the reward imports :mod:`.httpclient` without pulling in verl.
"""
