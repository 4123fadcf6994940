"""Answer and tool-call extraction on 10 MB responses of degenerate and ordinary shapes.

What is timed, per shape (best of ``--repeats`` runs, one core):

* ``reward``: :func:`actguide_plugin.reward.answer.extract_answer`, what ``compute_score`` runs on every
  trajectory in the reward worker's event loop (ChatML turns, tool blocks removed, last ``<answer>``);
* ``final answer``: :func:`data_preprocess.formats.extract_final_answer` (``--require-correct``);
* ``tool-call blocks``: :func:`data_preprocess.formats.tool_call_blocks`, as the hermes format reads a turn
  (decoding the JSON of each call is then proportional to the calls found, and not timed here).

Target (issue 11): ≤ 50 ms per call for a 10 MB response of any shape. With the lazy regexes this replaced,
one 160 KB response of unclosed ``<answer>`` tags took 12 s in the reward and 17 s in preprocessing.

    python benchmarks/extraction.py [--mb 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import string
import time
from collections.abc import Callable

from actguide_plugin.reward.answer import extract_answer
from data_preprocess.formats import extract_final_answer, tool_call_blocks

TARGET_MS = 50.0
_QUIZ_PAGE = "A page about Paris, with <answer>Lyon</answer> in a quiz. " * 4
_STEP = (
    "<think>I should look this up.</think>\n<tool_call>\n"
    '{"name": "web_search", "arguments": {"query": ["capital of France"]}}\n</tool_call>\n'
    f"user\n<tool_response>\n{_QUIZ_PAGE}\n</tool_response>\nassistant\n"
)
_CHATML_STEP = "Searching.<|im_end|>\n<|im_start|>user\n<tool_response>\nPage text.\n</tool_response><|im_end|>\n"


def _repeat(unit: str, size: int, tail: str = "") -> str:
    return unit * max(1, (size - len(tail)) // len(unit)) + tail


def shapes(size: int) -> dict[str, str]:
    """Name → a response of about ``size`` characters."""
    rng = random.Random(0)
    return {
        "random printable": "".join(rng.choices(string.printable, k=size)),
        "unclosed <answer> ×N": _repeat("<answer>", size),
        "<answer> ×N, one close": _repeat("<answer>", size, "Paris</answer>"),
        "closed <answer>x</answer> ×N": _repeat("<answer>x</answer>", size),
        "closed <tool_call>x</tool_call> ×N": _repeat("<tool_call>x</tool_call>", size),
        "closed <tool_call>x</tool_call> ×N + answer": _repeat("<tool_call>x</tool_call>", size, "<answer>x</answer>"),
        "unclosed <tool_call> ×N": _repeat("<tool_call>", size),
        "unclosed <tool_response> ×N": _repeat("<tool_response>", size),
        "trajectory steps ×N + answer": _repeat(_STEP, size, "<answer>Paris</answer>"),
        "ChatML turns ×N + answer": _repeat(_CHATML_STEP, size, "<|im_start|>assistant\n<answer>Paris</answer>"),
        "<|im_start|> ×N": _repeat("<|im_start|>", size),
        "blank lines": _repeat("\n", size, "Paris"),
    }


def best_ms(call: Callable[[str], object], text: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(text)
        times.append((time.perf_counter() - start) * 1000)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=10.0, help="response size in MiB (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size = int(args.mb * 2**20)
    calls = {"reward": extract_answer, "final answer": extract_final_answer, "tool-call blocks": tool_call_blocks}
    print(f"response size {args.mb:g} MiB, best of {args.repeats}, target ≤ {TARGET_MS:.0f} ms per call")
    print("| shape | " + " | ".join(f"{name} (ms)" for name in calls) + " | target |")
    print("|---|" + "---:|" * len(calls) + "---|")
    for name, text in shapes(size).items():
        times = [best_ms(call, text, args.repeats) for call in calls.values()]
        verdict = "pass" if max(times) <= TARGET_MS else "FAIL"
        print(f"| {name} | " + " | ".join(f"{t:.1f}" for t in times) + f" | {verdict} |")


if __name__ == "__main__":
    main()
