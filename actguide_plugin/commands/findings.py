"""Samples for the paper's two findings, drawn with :class:`~actguide_plugin.commands.offline_agent.OfflineAgent`.

* :func:`level_sweeps` (Finding 2): every task at every guidance level k = 0..L, K samples each, with Δ of each
  guided sample (:class:`~actguide_plugin.analysis.levels.LevelSweep`);
* :func:`prefix_curves` (Finding 1): one guided trajectory per task, then K unguided continuations from each of
  its prefix states, and the per-turn log-prob difference along it
  (:class:`~actguide_plugin.analysis.barrier.PrefixCurve`).

Tasks without reference actions are skipped (nothing to guide with). Rollouts run one after another: the in-process
model serializes generation anyway, and a fixed order keeps scripted runs deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from actguide_plugin.analysis.barrier import PrefixCurve
from actguide_plugin.analysis.levels import LevelSweep
from actguide_plugin.commands.offline_agent import OfflineAgent, Sample, prefix_after, tool_calling_turns
from actguide_plugin.core.guidance import level_from_ratio
from actguide_plugin.core.search import SearchConfig
from actguide_plugin.logs import get_logger
from actguide_plugin.verl_glue.rows import num_actions_of, task_id_of

logger = get_logger(__name__)


def _task(row: dict[str, Any]) -> dict[str, Any]:
    """The fields every per-task result starts with."""
    return {
        "task_id": task_id_of(row),
        "data_source": str(row.get("data_source", "unknown")),
        "num_actions": num_actions_of(row),
    }


def _guided_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    kept = [row for row in rows if num_actions_of(row) > 0]
    if len(kept) < len(rows):
        logger.warning(f"{len(rows) - len(kept)} of {len(rows)} tasks have no reference actions: skipped")
    if not kept:
        raise ValueError("no task has reference actions (extra_info.reference_actions): nothing to analyse")
    return kept


async def level_sweeps(
    agent: OfflineAgent,
    rows: Sequence[dict[str, Any]],
    samples: int,
    success_threshold: float = SearchConfig.success_threshold,
) -> list[LevelSweep]:
    """K samples of each task at every level 0..L; Δ for every guided sample."""
    sweeps = []
    for row in tqdm(_guided_rows(rows), desc="levels", unit="task"):
        task = _task(row)
        successes, shifts = [], []
        for level in range(task["num_actions"] + 1):
            drawn = [await agent.sample(row, level) for _ in range(samples)]
            successes.append(sum(s.score > success_threshold for s in drawn))
            shifts.append(tuple(agent.turn_shifts(s)[0] for s in drawn) if level else ())
        sweeps.append(LevelSweep(**task, samples=samples, successes=tuple(successes), shifts=tuple(shifts)))
    return sweeps


async def prefix_curves(
    agent: OfflineAgent,
    rows: Sequence[dict[str, Any]],
    samples: int,
    level_ratio: float = 1.0,
    guided_tries: int = 4,
    success_threshold: float = SearchConfig.success_threshold,
) -> list[PrefixCurve]:
    """Per task: a guided trajectory at k = ceil(ratio · L) (the first success of ``guided_tries``), then K
    unguided continuations from the state after each of its tool-calling turns."""
    curves = []
    for row in tqdm(_guided_rows(rows), desc="barrier", unit="task"):
        task = _task(row)
        level = max(1, level_from_ratio(level_ratio, task["num_actions"]))
        guided = await _first_success(agent, row, level, guided_tries, success_threshold)
        successes = []
        for turns in range(tool_calling_turns(guided) + 1):
            prefix = prefix_after(guided, turns) if turns else None
            drawn = [await agent.sample(row, 0, prefix) for _ in range(samples)]
            successes.append(sum(s.score > success_threshold for s in drawn))
        _, per_turn = agent.turn_shifts(guided)
        curves.append(
            PrefixCurve(
                **task,
                level=level,
                guided_correct=guided.score > success_threshold,
                samples=samples,
                prefix_successes=tuple(successes),
                shift_per_turn=tuple(per_turn),
            )
        )
    return curves


async def _first_success(
    agent: OfflineAgent, row: dict[str, Any], level: int, tries: int, success_threshold: float
) -> Sample:
    """The first successful guided sample of ``tries``, else the last one (its curve is marked as failed)."""
    sample = None
    for _ in range(max(tries, 1)):
        sample = await agent.sample(row, level)
        if sample.score > success_threshold:
            break
    return sample
