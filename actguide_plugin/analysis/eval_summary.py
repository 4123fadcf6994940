"""Per-benchmark evaluation summary from trajectory records: accuracy, unbiased pass@k, rounds, how runs ended.

One summary per ``data_source`` (and ``all`` when there are several): avg@K (mean correctness of every sample),
unbiased pass@k for k = 1..K (:mod:`.passk`), the round metrics Avg Pass@K / Best Pass@1 / Pass@K, mean tool
calls, assistant turns and response tokens, the outcome counts of :mod:`.trajectory` and invalid answers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from actguide_plugin.analysis.passk import mean_pass_at_k, round_metrics
from actguide_plugin.analysis.trajectory import OUTCOMES, TrajectoryRecord
from actguide_plugin.outputs import StagedOutputs

ALL_SOURCES = "all"
EVAL_JSON, EVAL_MARKDOWN, TRAJECTORIES = "eval.json", "eval.md", "trajectories.jsonl"


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def summarize_source(records: Sequence[TrajectoryRecord], samples_per_prompt: int) -> dict[str, Any]:
    """Summary of one benchmark; ``samples_per_prompt`` is K (prompts with fewer samples count as incomplete)."""
    if samples_per_prompt < 1:
        raise ValueError(f"samples_per_prompt must be >= 1, got {samples_per_prompt}")
    by_prompt: dict[str, dict[int, bool]] = defaultdict(dict)
    for record in records:
        if record.sample in by_prompt[record.task_id]:
            raise ValueError(f"task {record.task_id!r} has sample {record.sample} twice")
        by_prompt[record.task_id][record.sample] = record.correct
    counts = [(len(verdicts), sum(verdicts.values())) for verdicts in by_prompt.values()]
    pass_at = {}
    for k in range(1, samples_per_prompt + 1):
        pass_at[k], _ = mean_pass_at_k(counts, k)
    outcomes = Counter(record.outcome for record in records)
    return {
        "prompts": len(by_prompt),
        "samples_per_prompt": samples_per_prompt,
        "trajectories": len(records),
        "incomplete_prompts": sum(n < samples_per_prompt for n, _ in counts),
        "accuracy": _mean([float(r.correct) for r in records]),  # avg@K
        "mean_reward": _mean([r.score for r in records]),
        "pass_at_k": {str(k): v for k, v in pass_at.items()},
        "rounds": round_metrics(by_prompt, samples_per_prompt),
        "tool_calls_mean": _mean([len(r.tool_calls) for r in records]),
        "turns_mean": _mean([r.turns for r in records]),
        "response_tokens_mean": _mean([r.response_tokens for r in records]),
        "response_length_mean": _mean([r.response_length for r in records]),
        "outcomes": {name: outcomes.get(name, 0) for name in OUTCOMES},
        "invalid_answers": sum(r.invalid_answer for r in records),
        "levels": sorted({r.level for r in records}),
    }


def summarize(records: Iterable[TrajectoryRecord], samples_per_prompt: int) -> dict[str, dict[str, Any]]:
    """Summaries keyed by data source, plus ``all`` over every record when there is more than one source."""
    by_source: dict[str, list[TrajectoryRecord]] = defaultdict(list)
    for record in records:
        by_source[record.data_source].append(record)
    summaries = {source: summarize_source(rs, samples_per_prompt) for source, rs in sorted(by_source.items())}
    if len(by_source) > 1:
        # task ids are only unique within a source
        merged = [
            replace(record, task_id=f"{source}/{record.task_id}") for source, rs in by_source.items() for record in rs
        ]
        summaries[ALL_SOURCES] = summarize_source(merged, samples_per_prompt)
    return summaries


def shown_ks(samples_per_prompt: int) -> list[int]:
    """The pass@k columns of the table: powers of two up to K, and K itself (the JSON keeps every k)."""
    ks = [k for k in (2**i for i in range(samples_per_prompt.bit_length())) if k < samples_per_prompt]
    return [*ks, samples_per_prompt]


def markdown_table(summaries: dict[str, dict[str, Any]]) -> str:
    """One row per benchmark: accuracy, pass@k, rounds, tool use and how trajectories ended."""
    if not summaries:
        return "(no trajectories)\n"
    k_max = max(s["samples_per_prompt"] for s in summaries.values())
    ks = shown_ks(k_max)
    header = (
        ["data source", "prompts", f"avg@{k_max}"]
        + [f"pass@{k}" for k in ks]
        + [f"Avg Pass@{k_max}", "Best Pass@1"]
        + ["tool calls", "turns", "response tokens"]
        + ["answered", "turn limit", "length limit", "no answer", "invalid answer"]
    )
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for source, s in summaries.items():
        rounds = s["rounds"]
        k = s["samples_per_prompt"]
        cells = [source, str(s["prompts"]), f"{s['accuracy']:.3f}"]
        cells += [f"{s['pass_at_k'][str(j)]:.3f}" if str(j) in s["pass_at_k"] else "–" for j in ks]
        cells += [f"{rounds[f'avg_pass@{k}']:.3f}", f"{rounds['best_pass@1']:.3f}"]
        cells += [f"{s['tool_calls_mean']:.2f}", f"{s['turns_mean']:.2f}", f"{s['response_tokens_mean']:.0f}"]
        cells += [str(s["outcomes"][name]) for name in OUTCOMES] + [str(s["invalid_answers"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def flat_metrics(summaries: dict[str, dict[str, Any]], prefix: str) -> dict[str, float]:
    """Scalar metrics for a tracking logger: ``<prefix><source>/pass@k``, ``.../accuracy``, outcome fractions, ..."""
    metrics = {}
    for source, s in summaries.items():
        base = f"{prefix}{source}/"
        metrics[base + "accuracy"] = s["accuracy"]
        metrics.update({f"{base}pass@{k}": value for k, value in s["pass_at_k"].items()})
        metrics.update({base + name: value for name, value in s["rounds"].items()})
        for name in ("tool_calls_mean", "turns_mean", "response_tokens_mean"):
            metrics[base + name] = s[name]
        total = max(s["trajectories"], 1)
        metrics.update({f"{base}outcome/{name}": count / total for name, count in s["outcomes"].items()})
        metrics[base + "invalid_answer_frac"] = s["invalid_answers"] / total
    return metrics


def write_evaluation(
    directory: str | Path,
    records: Sequence[TrajectoryRecord],
    summaries: dict[str, dict[str, Any]],
    header: dict[str, Any],
) -> list[Path]:
    """``eval.json`` (header + summaries), ``eval.md`` (the table) and ``trajectories.jsonl``, written atomically."""
    ordered = sorted(records, key=lambda r: (r.data_source, r.task_id, r.sample))
    with StagedOutputs(directory) as out:
        out.json(EVAL_JSON, {**header, "sources": summaries})
        out.text(EVAL_MARKDOWN, markdown_table(summaries))
        out.jsonl(TRAJECTORIES, (r.to_dict() for r in ordered))
        return out.commit()
