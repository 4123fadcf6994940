"""The answer reward: ``compute_score`` with verl 0.9.1's custom-reward signature.

Use it with::

    reward.custom_reward_function.path=pkg://actguide_plugin.reward
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.reward_mode=judge      # optional, see below

verl loads the function with ``load_extern_object`` and, because it is a coroutine function, awaits it from
the reward loop (many calls concurrently). ``reward_kwargs`` arrive as keyword arguments.

Score: 1 when the assistant's final ``<answer>`` is correct, else 0 (also 0 when there is no answer, and when
every gold answer is empty once normalized, e.g. ``"The"``: nothing can match it, not even an empty answer). Where
the answer is read from, and why never from tool output: :mod:`actguide_plugin.reward.answer`.

Settings (keyword argument, else environment variable, else default):

============================  ==========================  ===============================================
keyword (``reward_kwargs``)   environment                 meaning
============================  ==========================  ===============================================
``reward_mode``               ``ACTGUIDE_REWARD_MODE``    ``rule`` (default) or ``judge``
``f1_threshold``              —                           rule: token F1 that counts as correct (0.8)
``judge_base_url``            ``ACTGUIDE_JUDGE_BASE_URL`` judge: OpenAI-compatible server root
``judge_model``               ``ACTGUIDE_JUDGE_MODEL``    judge: model name
—                             ``ACTGUIDE_JUDGE_API_KEY``  judge: bearer key (environment only, never logged;
                                                          stripped; an unusable key is a judge fallback)
``judge_timeout_s``           —                           per attempt (30)
``judge_max_attempts``        —                           attempts in all (4)
``judge_backoff_base_s``      —                           first retry delay, doubling (0.5)
``judge_backoff_max_s``       —                           cap on one delay (8)
``judge_max_concurrency``     —                           judge requests in flight per process (32)
``judge_circuit_failures``    —                           consecutive failed calls that open the breaker (5;
                                                          0: never skip the judge)
``judge_circuit_open_s``      —                           an open breaker skips the judge this long (30)
``judge_max_tokens``          —                           reply budget (8)
``judge_input``               —                           judge: ``answer`` (default: the final ``<answer>``)
                                                          or ``response`` (the whole decoded response, tool
                                                          results included: the authors' release)
============================  ==========================  ===============================================

In ``judge`` mode an exact (normalized) match is scored 1 without asking the judge; otherwise the judge
decides, and if it cannot (unreachable, retries exhausted, unparseable reply, unusable key) the rule verdict is
used and ``judge_fallback`` is 1. After ``judge_circuit_failures`` consecutive calls that found the judge down,
it is skipped for ``judge_circuit_open_s`` (then one call probes it), so a dead judge costs one timeout per
window rather than one per trajectory; such skipped calls are fallbacks too, with ``judge_circuit_open`` 1.
With ``judge_input=response`` (the authors' release) every trajectory goes to the judge, as the whole decoded
response, answer tag or not; a judge that cannot decide falls back to the rule verdict on the final ``<answer>``.

Returned extras (every key, every time, all numeric so verl can average them): ``acc`` (= score),
``answer_found``, ``exact_match``, ``f1``, ``judge_used``, ``judge_fallback``, ``judge_circuit_open``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from actguide_plugin.logs import get_logger
from actguide_plugin.reward.answer import extract_answer, normalize_answer, parse_gold_answers, rule_match
from actguide_plugin.reward.judge import JudgeConfig, JudgeError, judge_answer
from actguide_plugin.tools.httpclient import RETRY_FIELDS, RetryPolicy

logger = get_logger(__name__)

REWARD_MODES = ("rule", "judge")
_RETRY_KWARGS = {f"judge_{name}": name for name in RETRY_FIELDS}  # the judge's retry keys: RetryPolicy's fields
_OWN_KWARGS = {
    "reward_mode", "f1_threshold", "judge_base_url", "judge_model", "judge_max_tokens", "judge_input", *_RETRY_KWARGS
}  # fmt: skip
JUDGE_INPUTS = ("answer", "response")
# verl's reward managers add these when a reward model router is configured; they are not ours to read.
_VERL_KWARGS = {"reward_router_address", "reward_model_tokenizer"}


@dataclass(frozen=True)
class RewardSettings:
    """Resolved settings of one call (see the module docstring for the sources)."""

    mode: str
    f1_threshold: float
    judge: JudgeConfig | None
    judge_input: str = "answer"


def resolve_settings(kwargs: dict[str, Any]) -> RewardSettings:
    """Merge keyword arguments over environment variables; reject unknown keys and bad values by name."""
    unknown = sorted(set(kwargs) - _OWN_KWARGS - _VERL_KWARGS)
    if unknown:
        hint = " (the judge key is read from ACTGUIDE_JUDGE_API_KEY only)" if "judge_api_key" in unknown else ""
        raise ValueError(f"compute_score: unknown reward_kwargs {unknown}; allowed: {sorted(_OWN_KWARGS)}{hint}")
    mode = kwargs.get("reward_mode") or os.environ.get("ACTGUIDE_REWARD_MODE") or "rule"
    if mode not in REWARD_MODES:
        raise ValueError(f"compute_score: reward_mode must be one of {REWARD_MODES}, got {mode!r}")
    f1_threshold = float(kwargs.get("f1_threshold", 0.8))
    if not 0.0 < f1_threshold <= 1.0:
        raise ValueError(f"compute_score: f1_threshold must be in (0, 1], got {f1_threshold}")
    judge_input = kwargs.get("judge_input", "answer")
    if judge_input not in JUDGE_INPUTS:
        raise ValueError(f"compute_score: judge_input must be one of {JUDGE_INPUTS}, got {judge_input!r}")
    if mode == "rule":
        return RewardSettings(mode, f1_threshold, None)
    base_url = kwargs.get("judge_base_url") or os.environ.get("ACTGUIDE_JUDGE_BASE_URL")
    model = kwargs.get("judge_model") or os.environ.get("ACTGUIDE_JUDGE_MODEL")
    if not base_url or not model:
        raise ValueError(
            "compute_score: judge mode needs judge_base_url and judge_model "
            "(reward_kwargs, or ACTGUIDE_JUDGE_BASE_URL / ACTGUIDE_JUDGE_MODEL)"
        )
    retry_fields = {"max_concurrency": 32} | {
        field: kwargs[key] for key, field in _RETRY_KWARGS.items() if key in kwargs
    }
    judge = JudgeConfig(
        base_url=base_url,
        model=model,
        retry=RetryPolicy(**retry_fields),
        max_tokens=int(kwargs.get("judge_max_tokens", 8)),
    )
    return RewardSettings(mode, f1_threshold, judge, judge_input)


async def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """Binary answer reward for one trajectory (verl custom-reward signature; async)."""
    settings = resolve_settings(kwargs)
    gold_answers = parse_gold_answers(ground_truth)
    result = {
        "score": 0.0,
        "acc": 0.0,
        "answer_found": 0.0,
        "exact_match": 0.0,
        "f1": 0.0,
        "judge_used": 0.0,
        "judge_fallback": 0.0,
        "judge_circuit_open": 0.0,
    }
    prediction = extract_answer(solution_str)
    whole_response = settings.judge is not None and settings.judge_input == "response"
    if prediction is None and not whole_response:
        return result
    result["answer_found"] = float(prediction is not None)
    if not any(map(normalize_answer, gold_answers)):
        # The preprocessor rejects such golds; a hand-made dataset may still hold one. Nothing can match it.
        logger.warning("data_source=%s: every gold answer is empty once normalized; scored 0", data_source)
        return result
    correct, exact = False, False
    if prediction is not None:
        rule = rule_match(prediction, gold_answers, settings.f1_threshold)
        result["exact_match"], result["f1"] = float(rule.exact), rule.f1
        correct, exact = rule.correct, rule.exact
    judged = solution_str if whole_response else prediction
    if settings.judge is not None and judged and (whole_response or not exact):
        question = str((extra_info or {}).get("question") or "(not given)")
        try:
            correct = await judge_answer(settings.judge, question, gold_answers, judged)
            result["judge_used"] = 1.0
        except JudgeError as err:
            logger.warning("judge failed for data_source=%s, using the rule verdict: %s", data_source, err)
            result["judge_fallback"] = 1.0
            result["judge_circuit_open"] = float(err.circuit_open)
    result["score"] = result["acc"] = float(correct)
    return result
