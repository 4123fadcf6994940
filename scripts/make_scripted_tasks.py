"""Write scripted tasks (known guidance thresholds) for CPU demos of the after-training commands.

    python scripts/make_scripted_tasks.py OUT_DIR [--tasks 16] [--seed 0]

Writes ``OUT_DIR/records.jsonl`` (``actguide-preprocess convert --format actions`` input) and
``OUT_DIR/corpus.jsonl``. Each question carries a plan-following scripted marker
(:mod:`actguide_plugin.cpu.scripted_policy`): with threshold K, the scripted rollout answers right only after K
reference actions were executed, and only every other time, so groups get mixed rewards. Thresholds cycle through
0 (solvable unguided), 1, 2, 3 (= L, needs the full plan) and "never".
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from actguide_plugin.core.actions import Action
from actguide_plugin.cpu.scripted_policy import scripted_record, task_marker, write_scripted_inputs

PEOPLE = [
    ("Ada Lovelace", "Analytical Engine"),
    ("Alan Turing", "Turing machine"),
    ("Grace Hopper", "COBOL"),
    ("Claude Shannon", "Information theory"),
]
THRESHOLDS = (0, 1, 2, 3, 9)  # 9: no level suffices


def wiki(title: str) -> str:
    return "https://en.wikipedia.org/wiki/" + title.replace(" ", "_")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    records = []
    for index in range(args.tasks):
        person, work = rng.choice(PEOPLE)
        threshold = THRESHOLDS[index % len(THRESHOLDS)]
        actions = [
            Action("web_search", {"query": [f"inventor of {work}"]}),
            Action("web_visit", {"url": [wiki(person)]}),
            Action("web_search", {"query": [f"{person} {work}"]}),
        ]
        question = f"Who is behind the {work}? (task {index}) {task_marker(threshold, person, 2, 0, True)}"
        records.append(scripted_record(f"task-{index}", question, person, actions))
    corpus = [
        {"id": str(number), "title": person, "url": wiki(person), "text": f"{person} is known for {work}."}
        for number, (person, work) in enumerate(PEOPLE)
    ]
    write_scripted_inputs(args.out, records, corpus)


if __name__ == "__main__":
    main()
