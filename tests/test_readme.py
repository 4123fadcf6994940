"""The README stays a short user's document whose commands and links are true."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_BYTES = 16 * 1024  # details live in docs/; the README is read top to bottom by a newcomer


def test_readme_is_at_most_16_kib():
    assert len(README.read_bytes()) <= MAX_BYTES, (
        f"{README.name} is {len(README.read_bytes())} bytes: move details to docs/"
    )


def test_ci_installs_exactly_as_readme_command_1_says():
    command_1 = next(
        line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("python3 -m venv")
    )
    install = command_1.split("python3 -m venv .venv && ", 1)[1].split(" && PATH=", 1)[0]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert install in ci, f"README command 1 installs with {install!r}; .ci/run must run the same"
    assert "python -m pytest -q" in ci and ".venv/bin/python -m pytest -q" in README.read_text(encoding="utf-8")


def test_every_relative_link_of_the_readme_exists():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8"))
    local = [link for link in links if "://" not in link]
    assert local, "no relative links found: the pattern is wrong"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
