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

Settings: the ``reward_kwargs`` below, so the logged config holds every one (``actguide_reward/answer.yaml`` lists
them all with their defaults, :class:`RewardKwargs`; override on the command line, e.g.
``reward.custom_reward_function.reward_kwargs.reward_mode=judge``). No setting comes from the environment except the
judge's key, read from the variable ``judge_api_key_env`` names (never logged; stripped; an unusable key is a judge
fallback).

============================  ===============================================
keyword (``reward_kwargs``)   meaning
============================  ===============================================
``reward_mode``               ``rule`` (default) or ``judge``
``f1_threshold``              rule: token F1 that counts as correct (0.8)
``judge_base_url``            judge: OpenAI-compatible server root
``judge_model``               judge: model name
``judge_api_key_env``         judge: name of the variable with the bearer key (``ACTGUIDE_JUDGE_API_KEY``)
``judge_timeout_s``           per attempt (30)
``judge_max_attempts``        attempts in all (4)
``judge_backoff_base_s``      first retry delay, doubling (0.5)
``judge_backoff_max_s``       cap on one delay (8)
``judge_max_concurrency``     judge requests in flight per process (32)
``judge_circuit_failures``    consecutive failed calls that open the breaker (5; 0: never skip the judge)
``judge_circuit_open_s``      an open breaker skips the judge this long (30)
``judge_max_tokens``          reply budget (8)
``judge_input``               judge: ``answer`` (default: the final ``<answer>``) or ``response`` (the whole
                              decoded response, tool results included: the authors' release)
============================  ===============================================

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

from dataclasses import dataclass, fields
from typing import Any

from actguide_plugin.logs import get_logger
from actguide_plugin.names import JUDGE_API_KEY_ENV, REWARD_KWARGS
from actguide_plugin.reward.answer import extract_answer, normalize_answer, parse_gold_answers, rule_match
from actguide_plugin.reward.judge import JudgeConfig, JudgeError, judge_answer
from actguide_plugin.tools.httpclient import RETRY_FIELDS, RetryPolicy

logger = get_logger(__name__)

REWARD_MODES = ("rule", "judge")
JUDGE_INPUTS = ("answer", "response")
_RETRY_FIELDS = {f"judge_{name}": name for name in RETRY_FIELDS}  # the judge's retry keys: RetryPolicy's fields
# verl's reward managers add these when a reward model router is configured; they are not ours to read.
_VERL_KWARGS = {"reward_router_address", "reward_model_tokenizer"}


@dataclass(frozen=True)
class RewardKwargs:
    """``reward.custom_reward_function.reward_kwargs``: every setting of the reward (the module docstring's table),
    mirrored key for key, with the same defaults, by ``actguide_reward/answer.yaml``."""

    reward_mode: str = "rule"
    f1_threshold: float = 0.8
    judge_base_url: str | None = None
    judge_model: str | None = None
    judge_api_key_env: str = JUDGE_API_KEY_ENV
    judge_timeout_s: float = RetryPolicy.timeout_s
    judge_max_attempts: int = RetryPolicy.max_attempts
    judge_backoff_base_s: float = RetryPolicy.backoff_base_s
    judge_backoff_max_s: float = RetryPolicy.backoff_max_s
    judge_max_concurrency: int = 32
    judge_circuit_failures: int = RetryPolicy.circuit_failures
    judge_circuit_open_s: float = RetryPolicy.circuit_open_s
    judge_max_tokens: int = 8
    judge_input: str = "answer"

    def __post_init__(self) -> None:
        if self.reward_mode not in REWARD_MODES:
            raise ValueError(f"{REWARD_KWARGS}.reward_mode must be one of {REWARD_MODES}, got {self.reward_mode!r}")
        if not 0.0 < float(self.f1_threshold) <= 1.0:
            raise ValueError(f"{REWARD_KWARGS}.f1_threshold must be in (0, 1], got {self.f1_threshold}")
        if self.judge_input not in JUDGE_INPUTS:
            raise ValueError(f"{REWARD_KWARGS}.judge_input must be one of {JUDGE_INPUTS}, got {self.judge_input!r}")
        if self.reward_mode == "judge" and not (self.judge_base_url and self.judge_model):
            raise ValueError(
                f"{REWARD_KWARGS}: reward_mode=judge needs judge_base_url and judge_model "
                f"(got judge_base_url={self.judge_base_url!r}, judge_model={self.judge_model!r})"
            )

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> RewardKwargs:
        """The keyword arguments of one call; unknown keys are rejected by name (verl's own are ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known - _VERL_KWARGS)
        if unknown:
            named = "judge_api_key" in unknown
            hint = " (the judge key is read from the variable judge_api_key_env names)" if named else ""
            raise ValueError(f"compute_score: unknown {REWARD_KWARGS} {unknown}; allowed: {sorted(known)}{hint}")
        return cls(**{key: value for key, value in kwargs.items() if key in known})


@dataclass(frozen=True)
class RewardSettings:
    """Resolved settings of one call."""

    mode: str
    f1_threshold: float
    judge: JudgeConfig | None
    judge_input: str = "answer"


def resolve_settings(kwargs: dict[str, Any]) -> RewardSettings:
    """The call's ``reward_kwargs`` as settings; unknown keys and bad values are rejected by name."""
    settings = RewardKwargs.from_kwargs(kwargs)
    if settings.reward_mode == "rule":
        return RewardSettings("rule", float(settings.f1_threshold), None)
    judge = JudgeConfig(
        base_url=settings.judge_base_url,
        model=settings.judge_model,
        retry=RetryPolicy(**{field: getattr(settings, key) for key, field in _RETRY_FIELDS.items()}),
        api_key_env=settings.judge_api_key_env,
        max_tokens=int(settings.judge_max_tokens),
    )
    return RewardSettings("judge", float(settings.f1_threshold), judge, settings.judge_input)


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
