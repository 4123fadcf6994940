"""How search hits and pages are shown to the model: compact text with bounded length.

Kept apart from the verl tool classes so the retriever server can shorten snippets without importing verl.
"""

from __future__ import annotations

from collections.abc import Sequence

from actguide_plugin.tools.backends import Failed, Page, SearchHit

ECHO_CHARS = 200  # a query or url echoed in a result's header


def shorten(text: str, max_chars: int) -> str:
    """``text`` on one line, at most ``max_chars`` characters, cut at a word boundary with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars].rsplit(" ", 1)[0] or text[:max_chars]
    return cut + " …"


def _echo(asked: str) -> str:
    """A query or url as a result header shows it: a policy's runaway one is not echoed whole into its context."""
    return asked if len(asked) <= ECHO_CHARS else shorten(asked, ECHO_CHARS)


def truncate_page(text: str, max_chars: int) -> str:
    """Keep the head of a page within ``max_chars``; say how much was cut so the model knows."""
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}\n[truncated: showing the first {max_chars} of {len(text)} characters]"


def format_search(queries: Sequence[str], results: Sequence[list[SearchHit] | Failed], snippet_chars: int) -> str:
    """Compact text: a header per query, then ``n. title — url`` and an indented snippet per hit."""
    blocks = []
    for asked, result in zip(queries, results, strict=True):
        query = _echo(asked)
        if isinstance(result, Failed):
            blocks.append(f'Search for "{query}" failed: {result.message}')
        elif not result:
            blocks.append(f'No results for "{query}".')
        else:
            lines = [f'Results for "{query}":']
            for rank, hit in enumerate(result, start=1):
                location = f" — {hit.url}" if hit.url else ""
                lines.append(f"{rank}. {hit.title}{location}\n   {shorten(hit.snippet, snippet_chars)}")
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def format_visit(urls: Sequence[str], results: Sequence[Page | Failed], max_page_chars: int) -> str:
    """One block per url: ``Page: title — url`` and the (truncated) text, or why it failed."""
    blocks = []
    for asked, result in zip(urls, results, strict=True):
        url = _echo(asked)
        if isinstance(result, Failed):
            blocks.append(f"Visit {url} failed: {result.message}")
        else:
            blocks.append(f"Page: {result.title} — {result.url}\n{truncate_page(result.text, max_page_chars)}")
    return "\n\n".join(blocks)
