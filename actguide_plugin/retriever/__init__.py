"""``actguide-retriever``: the corpus retriever as an HTTP service (see :mod:`.server`)."""
