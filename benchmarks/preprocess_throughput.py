"""Preprocessing throughput: ``actguide-preprocess convert`` on synthetic trajectories of realistic size.

Each record has a system prompt, a question, 10 tool calls (alternating ``search``/``visit`` with a
``goal`` argument, as in ASearcher / Tongyi DeepResearch dumps, so tool mapping and argument dropping
run), short reasoning and tool responses, and a final ``<answer>`` — about 4 KB of JSON. The timed run
is the whole command: read, detect, parse, clean, check the answer, split and write parquet. Target
(DESIGN §5): ≥ 50k records/min on 2 cores.

    python benchmarks/preprocess_throughput.py [--records 20000] [--formats hermes,openai]

``--memory`` instead measures the peak resident memory of one ``convert`` run in a child process (hermes
records), for each code tree given to ``--code`` (e.g. the main checkout before a change and this one):

    python benchmarks/preprocess_throughput.py --memory --records 100000 --code /path/to/main,.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from data_preprocess.cli import main as preprocess

ACTIONS_PER_RECORD = 10
TARGET_PER_MIN = 50_000
SYSTEM = (
    "You are a deep research assistant. Answer the user's question by searching the web and visiting pages. "
    "Think step by step, call one or more tools per turn, and cite what you read. "
) * 2


def _calls(i: int) -> list[tuple[str, dict]]:
    calls = []
    for step in range(ACTIONS_PER_RECORD):
        if step % 2 == 0:
            calls.append(("search", {"query": [f"record {i} step {step} sub-question about topic {i % 97}"]}))
        else:
            url = f"https://en.wikipedia.org/wiki/Topic_{i % 97}_{step}"
            calls.append(("visit", {"url": [url], "goal": f"find the fact needed for step {step}"}))
    return calls


def _tool_text(i: int, step: int) -> str:
    return f"Result for record {i} step {step}: " + "relevant evidence text. " * 4


def hermes_record(i: int) -> dict:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Question number {i}?"}]
    for step, (name, args) in enumerate(_calls(i)):
        call = json.dumps({"name": name, "arguments": args})
        thought = f"<think>Step {step}: I need more evidence about topic {i % 97}.</think>\n"
        messages.append({"role": "assistant", "content": f"{thought}<tool_call>\n{call}\n</tool_call>"})
        messages.append({"role": "user", "content": f"<tool_response>\n{_tool_text(i, step)}\n</tool_response>"})
    messages.append({"role": "assistant", "content": f"<think>Done.</think>\n<answer>answer {i}</answer>"})
    return {"id": f"h{i}", "question": f"Question number {i}?", "answer": f"answer {i}", "messages": messages}


def openai_record(i: int) -> dict:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Question number {i}?"}]
    for step, (name, args) in enumerate(_calls(i)):
        call_id = f"call_{i}_{step}"
        messages.append(
            {
                "role": "assistant",
                "content": f"Step {step}: I need more evidence about topic {i % 97}.",
                "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": call_id, "content": _tool_text(i, step)})
    messages.append({"role": "assistant", "content": f"<answer>answer {i}</answer>"})
    return {"id": f"o{i}", "question": f"Question number {i}?", "answer": f"answer {i}", "messages": messages}


GENERATORS = {"hermes": hermes_record, "openai": openai_record}


def run(fmt: str, records: int, workdir: Path) -> dict[str, float]:
    src = workdir / f"{fmt}.jsonl"
    with src.open("w", encoding="utf-8") as handle:
        for i in range(records):
            handle.write(json.dumps(GENERATORS[fmt](i)) + "\n")
    argv = [
        "convert", str(src), "-o", str(workdir / f"out-{fmt}"), "--format", "auto",
        "--tool-map", "search=web_search,visit=web_visit", "--drop-arg", "visit.goal", "--require-correct",
        "--val-ratio", "0.01", "--no-progress",
    ]  # fmt: skip
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = preprocess(argv)
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"convert failed on {fmt} input (exit {code})")
    return {"bytes": src.stat().st_size / records, "seconds": seconds, "per_min": records / seconds * 60}


def peak_rss(code_root: Path, src: Path, out: Path) -> tuple[float, float]:
    """Peak RSS (MiB) and seconds of ``convert`` run by the ``data_preprocess`` package under ``code_root``."""
    argv = [
        sys.executable, "-m", "data_preprocess", "convert", str(src), "-o", str(out), "--no-progress",
        "--tool-map", "search=web_search,visit=web_visit", "--drop-arg", "visit.goal", "--val-ratio", "0.01",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(code_root.resolve())}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=code_root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"convert under {code_root} failed: {proc.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024, seconds  # ru_maxrss is in KiB on Linux


def memory(records: int, code_roots: list[Path]) -> None:
    print("| code | records | input MB | peak RSS (MiB) | seconds |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "hermes.jsonl"
        with src.open("w", encoding="utf-8") as handle:
            for i in range(records):
                handle.write(json.dumps(hermes_record(i)) + "\n")
        size_mb = src.stat().st_size / 1e6
        for root in code_roots:
            rss, seconds = peak_rss(root, src, Path(tmp) / "out")
            print(f"| {root.resolve()} | {records:,} | {size_mb:,.0f} | {rss:,.0f} | {seconds:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--formats", default="hermes,openai")
    parser.add_argument("--memory", action="store_true", help="peak RSS of one convert run per --code tree")
    parser.add_argument("--code", default=".", help="comma-separated code trees for --memory (default: this one)")
    args = parser.parse_args()
    if args.memory:
        memory(args.records, [Path(root) for root in args.code.split(",")])
        return
    print(f"cpu cores available: {len(os.sched_getaffinity(0))}, records per format: {args.records}")
    print(f"| format | records | KB/record | actions/record | seconds | records/min | target {TARGET_PER_MIN:,}/min |")
    print("|---|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats.split(","):
            result = run(fmt, args.records, Path(tmp))
            verdict = "pass" if result["per_min"] >= TARGET_PER_MIN else "FAIL"
            print(
                f"| {fmt} | {args.records:,} | {result['bytes'] / 1024:.1f} | {ACTIONS_PER_RECORD} | "
                f"{result['seconds']:.2f} | {result['per_min']:,.0f} | {verdict} |"
            )


if __name__ == "__main__":
    main()
