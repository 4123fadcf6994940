"""Which reward a run uses, said before it starts, and verl's own scorer tried on the training rows first.

The recipe does not swap a user's reward: with no ``reward.custom_reward_function.path`` (and no reward model)
verl scores each row with ``default_compute_score`` by its ``data_source``, as their GRPO runs did; the recipe's
answer reward is opt-in (``+actguide_reward=answer``). A row whose ``data_source`` verl has no scorer for, or
whose ``ground_truth`` its scorer cannot read (a Search-R1 ``{"target": [...]}`` turned into text), would fail
only in the first step's reward workers; it is found here, before Ray, with the fix. So are the recipe's own
reward settings (``reward_kwargs``: a misspelt key, ``reward_mode=judge`` with no endpoint).

verl 0.9.1 APIs relied on: ``verl.utils.reward_score.default_compute_score(data_source, solution_str,
ground_truth, extra_info=None, ...)`` raising ``NotImplementedError`` for an unknown source; the config keys
``reward.custom_reward_function.{path,name,reward_kwargs}`` and ``reward.reward_model.enable``.
"""

from __future__ import annotations

from typing import Any

from actguide_plugin.logs import describe_error
from actguide_plugin.reward import RewardKwargs

OPT_IN = "+actguide_reward=answer"
RECIPE_REWARD = "pkg://actguide_plugin.reward"  # reward.custom_reward_function.path of actguide_reward/answer.yaml
# verl's scorers for these run the solution as code (a sandbox or local processes): never probed with a dummy answer
_CODE_SOURCES = ("codecontests", "apps", "codeforces", "taco")
_PROBE = "<answer>probe</answer>"


def reward_in_use(config: Any) -> str:
    """One line naming the reward of this run (printed at start and stored as ``actguide_run.reward``); the recipe's
    own reward settings are checked here (a ``ValueError`` names the key)."""
    reward = config.get("reward") or {}
    if (reward.get("reward_model") or {}).get("enable", False):
        return f"reward model {reward.reward_model.get('model_path')} (reward.reward_model)"
    custom = reward.get("custom_reward_function") or {}
    if custom.get("path") == RECIPE_REWARD:
        settings = RewardKwargs.from_kwargs(dict(custom.get("reward_kwargs") or {}))
        judge = f", judge_model={settings.judge_model}" if settings.reward_mode == "judge" else ""
        return f"the recipe's answer reward ({RECIPE_REWARD}), reward_mode={settings.reward_mode}{judge}"
    if custom.get("path"):
        return f"custom_reward_function {custom.path}:{custom.get('name') or 'compute_score'}"
    return "verl's default_compute_score by each row's data_source (no reward.custom_reward_function.path)"


def _first_rows_by_source(files: Any) -> dict[str, tuple[str, Any]]:
    """data_source → (where, ground_truth) of its first row in the local parquet training files."""
    import pyarrow.parquet as pq

    found: dict[str, tuple[str, Any]] = {}
    for path in [files] if isinstance(files, str) else list(files or []):
        try:
            names = pq.ParquetFile(str(path)).schema_arrow.names
        except (OSError, ValueError):
            continue
        if "data_source" not in names:
            continue
        columns = ["data_source"] + (["reward_model"] if "reward_model" in names else [])
        table = pq.read_table(str(path), columns=columns)
        sources = table.column("data_source").to_pylist()
        for index, source in enumerate(sources):
            if source not in found:
                row_reward = table.column("reward_model")[index].as_py() if "reward_model" in names else None
                found[source] = (f"{path} row {index}", (row_reward or {}).get("ground_truth"))
    return found


def check_default_scorer(config: Any, files: Any) -> None:
    """Before Ray: with no custom reward and no reward model, verl's scorer must score every training data_source.

    Raises ``ValueError`` naming the data source, the row and the fix.
    """
    reward = config.get("reward") or {}
    if (reward.get("custom_reward_function") or {}).get("path") or (reward.get("reward_model") or {}).get("enable"):
        return
    from verl.utils.reward_score import default_compute_score

    for source, (where, ground_truth) in _first_rows_by_source(files).items():
        if source in _CODE_SOURCES:
            continue
        try:
            default_compute_score(source, _PROBE, ground_truth)
        except NotImplementedError as err:
            raise ValueError(
                f"data_source {source!r} ({where}) has no scorer in verl's default_compute_score and the config names "
                f"no reward: add {OPT_IN} (the recipe's answer reward) or set reward.custom_reward_function.path"
            ) from err
        except Exception as err:  # whatever the scorer raises on this ground truth
            raise ValueError(
                f"verl's scorer for data_source {source!r} fails on the ground_truth of {where} "
                f"({describe_error(err, 200)}): keep the ground truth's structure (actguide-preprocess attach keeps "
                f"rows as they are; convert --ground-truth-format search_r1) or name a reward that reads it"
            ) from err
