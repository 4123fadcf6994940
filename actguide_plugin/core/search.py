"""Minimal-intervention guidance: find the smallest guidance level that recovers reward (paper §3.2).

For one prompt with L reference actions and a group size n:

1. Roll out n unguided trajectories (level 0). If any reward exceeds ``success_threshold`` the group
   already carries a learning signal: train on it unchanged.
2. Otherwise the group is *hard* (the reachability barrier). Find the minimal sufficient level
   k* ∈ [1, L]: a level is *sufficient* when a probe of ``probe_m`` rollouts at that level has at least
   ``tau`` successes. Binary search over [1, L] assuming success is monotone in k; every returned level
   was probed and succeeded, so the search is exact for any L (no round cap, no unverified level).
3. Roll out the guided group at k*. Successful probe rollouts at k* are reused as group members, so
   only the remainder is sampled.
4. If no probed level was sufficient, complete the group at k = L (the failed probes at L reused): the
   authors always sample all n at L, and for a task whose success at L is low the whole group is far
   more likely to contain a success than the m probes (p = 0.15, n = 8, m = 2: 73 % against 28 %). A group
   with ``tau`` successes is rescued at L; only a group that still fails is a full failure
   (``full_level_check=probe`` keeps the cheaper rule: the probes at L decide alone).

A task whose longest plans do not fit the prompt budget is searched over the levels that fit (``max_level``):
verl would otherwise cut the guided prompt from the left, dropping the system prompt and tool schemas.

Differences from the authors' fork, all deliberate: each prompt searches in its own coroutine (no global
rounds where solved prompts wait for others), probes are reused, the last k* of each task warm-starts the
next search (probe k*_prev and k*_prev − 1 in one concurrent round: a correct warm start costs one round),
and a failed top level is resolved by an explicit ``on_full_failure`` policy.

Everything is driven by ``rollout(level, count) -> trajectories`` and ``reward(trajectory) -> float``,
so the same code runs inside verl's agent-loop worker and inside the benchmark simulator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from actguide_plugin.core.guidance import level_from_ratio
from actguide_plugin.core.level_cache import LevelCache

T = TypeVar("T")
RolloutFn = Callable[[int, int], Awaitable[Sequence[T]]]
RewardFn = Callable[[T], float]


MODES = frozenset(
    {"off", "fixed_k", "fixed_ratio", "always_full", "fallback_full", "fallback_adaptive", "fallback_ladder"}
)


REUSE_CHOICES = ("all", "successes", "none")
FULL_LEVEL_CHECKS = ("group", "probe")


class GroupStatus(str, enum.Enum):
    """How a prompt's final group came about (one per prompt; metrics count these)."""

    UNGUIDED = "unguided"  # no guidance was attempted (mode off, or prompt without reference actions)
    SOLVED_UNGUIDED = "solved_unguided"  # the unguided group already had a success
    RESCUED = "rescued"  # hard group, a guided level recovered reward
    GUIDED = "guided"  # guidance applied unconditionally (fixed_k, fixed_ratio, always_full)
    FULL_FAILED = "full_failed"  # hard group, even k = L failed; on_full_failure decided what to keep


class FullFailurePolicy(str, enum.Enum):
    KEEP = "keep"  # train on the all-zero guided group at k = L (zero advantage, still in the loss mean)
    DROP = "drop"  # hand no trajectories for this prompt; the trainer excludes it
    UNGUIDED = "unguided"  # keep the original unguided group


@dataclass(frozen=True)
class SearchConfig:
    """Knobs of the level search; names mirror the ``actguide:`` section of the recipe yaml.

    mode: one of :data:`MODES`.
    n: group size (rollouts per prompt handed to the trainer).
    probe_m: rollouts per probe. tau: successes a probe needs to count as sufficient.
    success_threshold: a trajectory succeeds when its reward is strictly greater than this.
    fixed_k / fixed_ratio: the level for ``fixed_k`` / ``fixed_ratio`` (k = ceil(r · L)).
    ladder: ratios probed in order by ``fallback_ladder``.
    on_full_failure: ``keep`` | ``drop`` | ``unguided`` (see :class:`FullFailurePolicy`).
    full_level_check: what decides that even k = L failed: ``group`` (default; the group is completed to n
        rollouts at L and rescued if it has ``tau`` successes, as the authors sample all n at L) or ``probe``
        (the m probes at L alone; cheaper, gives up on low-success tasks ~3x more often).
    probe_only_after: after this many whole-group failures at L in a row (kept in the warm-start cache), the
        task's next check of L uses the m probes alone, as ``full_level_check=probe`` does; any rescue resets the
        count; 0 completes the group at L every time. A task that failed whole groups twice is almost always
        still out of reach: on the guidance-cost benchmark this rule takes 17.6 guidance trajectories per rescued
        group down to 15.9 at the same rescued fraction (docs/benchmarks.md, "Guidance cost").
    warm_start: start from the task's cached k*.
    reuse_probes: which rollouts of the successful probe at k* join the guided group: ``all`` (default;
        they are draws from the same guided policy), ``successes`` (only the rewarded ones) or ``none``.
    """

    mode: str = "fallback_adaptive"
    n: int = 8
    probe_m: int = 2
    tau: int = 1
    success_threshold: float = 0.0
    fixed_k: int = 1
    fixed_ratio: float = 0.5
    ladder: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    on_full_failure: str = "unguided"
    full_level_check: str = "group"
    probe_only_after: int = 2
    warm_start: bool = True
    reuse_probes: str = "all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ladder", tuple(self.ladder))  # configs hand over lists
        if self.mode not in MODES:
            raise ValueError(f"actguide.mode={self.mode!r} is not one of {sorted(MODES)}")
        if self.n < 1:
            raise ValueError(f"actguide.n must be >= 1, got {self.n}")
        if self.probe_m < 1:
            raise ValueError(f"actguide.probe_m must be >= 1, got {self.probe_m}")
        if not 1 <= self.tau <= self.probe_m:
            raise ValueError(f"actguide.tau must be in [1, probe_m={self.probe_m}], got {self.tau}")
        if self.probe_only_after < 0:
            raise ValueError(f"actguide.probe_only_after must be >= 0 (0: off), got {self.probe_only_after}")
        if self.fixed_k < 0:
            raise ValueError(f"actguide.fixed_k must be >= 0, got {self.fixed_k}")
        if not 0.0 <= self.fixed_ratio <= 1.0:
            raise ValueError(f"actguide.fixed_ratio must be in [0, 1], got {self.fixed_ratio}")
        if not self.ladder or any(not 0.0 < r <= 1.0 for r in self.ladder):
            raise ValueError(f"actguide.ladder must be non-empty ratios in (0, 1], got {list(self.ladder)}")
        if self.reuse_probes not in REUSE_CHOICES:
            raise ValueError(f"actguide.reuse_probes={self.reuse_probes!r} is not one of {list(REUSE_CHOICES)}")
        if self.full_level_check not in FULL_LEVEL_CHECKS:
            raise ValueError(
                f"actguide.full_level_check={self.full_level_check!r} is not one of {list(FULL_LEVEL_CHECKS)}"
            )
        allowed = [p.value for p in FullFailurePolicy]
        if self.on_full_failure not in allowed:
            raise ValueError(f"actguide.on_full_failure={self.on_full_failure!r} is not one of {allowed}")


@dataclass(frozen=True)
class Probe:
    level: int
    rewards: tuple[float, ...]
    sufficient: bool


@dataclass
class GroupOutcome(Generic[T]):
    """What the search decided for one prompt, plus the accounting the diagnostics need."""

    task_id: str
    num_actions: int
    status: GroupStatus
    level: int  # guidance level of the trajectories handed to the trainer (0 = unguided)
    trajectories: list[T]  # exactly n, or [] when dropped
    unguided_rewards: list[float] = field(default_factory=list)  # the first, unguided group (if rolled out)
    probes: list[Probe] = field(default_factory=list)
    reused: int = 0  # probe rollouts that became group members
    sampled: int = 0  # every trajectory generated for this prompt (unguided + probes + guided)
    serial_rounds: int = 0  # generation calls this prompt waited for one after another
    warm_started: bool = False  # the level search started from the task's cached k*
    is_hard: bool = False  # the unguided group had no success (the reachability barrier); False if not rolled out
    plan_capped: bool = False  # the top levels' prompts did not fit: the search stopped below L (``max_level``)

    @property
    def guided(self) -> bool:
        return self.level > 0

    @property
    def dropped(self) -> bool:
        return not self.trajectories

    @property
    def probe_trajectories(self) -> int:
        return sum(len(p.rewards) for p in self.probes)

    def summary(self, reward: RewardFn) -> dict[str, Any]:
        """JSON-able record of the outcome with trajectories replaced by their rewards (for metrics)."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        record["status"] = self.status.value
        record["trajectories"] = [float(reward(t)) for t in self.trajectories]
        record["probes"] = [dataclasses.asdict(p) for p in self.probes]
        return record

    @classmethod
    def from_summary(cls, record: dict[str, Any]) -> GroupOutcome[float]:
        """Inverse of :meth:`summary`; the trajectories are the rewards."""
        fields = dict(record)
        fields["status"] = GroupStatus(fields["status"])
        fields["probes"] = [Probe(p["level"], tuple(p["rewards"]), p["sufficient"]) for p in fields["probes"]]
        return cls(**fields)


async def settled(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Await all of them before raising the first error, as verl does for a group: a failing rollout must not
    leave its siblings generating into replicas the trainer puts to sleep."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


class _Group(Generic[T]):
    """Bookkeeping for one prompt's generation calls (counts every trajectory and serial round)."""

    def __init__(
        self, task_id: str, num_actions: int, rollout: RolloutFn, reward: RewardFn, cfg: SearchConfig, top: int
    ):
        self.task_id, self.num_actions, self.cfg = task_id, num_actions, cfg
        self.top = top  # the highest usable level: L, or less when longer plans do not fit the prompt budget
        self._rollout, self._reward = rollout, reward
        self.sampled = 0
        self.serial_rounds = 0
        self.probes: list[Probe] = []
        self.probe_trajectories: dict[int, list[T]] = {}
        self.warm_started = False

    def succeeded(self, trajectory: T) -> bool:
        return self._reward(trajectory) > self.cfg.success_threshold

    def sufficient(self, trajectories: Sequence[T]) -> bool:
        """A group recovers reward when it has at least ``tau`` successes (the probes' rule, over the group)."""
        return sum(self.succeeded(t) for t in trajectories) >= self.cfg.tau

    async def sample(self, level: int, count: int) -> list[T]:
        """One serial generation round of ``count`` rollouts at ``level``."""
        self.serial_rounds += 1
        return await self._sample(level, count)

    async def _sample(self, level: int, count: int) -> list[T]:
        trajectories = list(await self._rollout(level, count))
        if len(trajectories) != count:
            raise RuntimeError(f"rollout({level}, {count}) returned {len(trajectories)} trajectories")
        self.sampled += count
        return trajectories

    async def probe_round(self, levels: Sequence[int]) -> dict[int, bool]:
        """Probe several levels concurrently; the round costs one serial step however many levels."""
        self.serial_rounds += 1
        batches = await settled([self._sample(k, self.cfg.probe_m) for k in levels])
        verdicts = {}
        for level, batch in zip(levels, batches, strict=True):
            rewards = tuple(float(self._reward(t)) for t in batch)
            sufficient = sum(r > self.cfg.success_threshold for r in rewards) >= self.cfg.tau
            self.probes.append(Probe(level, rewards, sufficient))
            self.probe_trajectories[level] = batch
            verdicts[level] = sufficient
        return verdicts

    async def guided_group(self, level: int, reuse: str) -> tuple[list[T], int]:
        """The n trajectories at ``level``: reused probe rollouts first (see ``reuse_probes``), the
        remainder freshly sampled."""
        probes = self.probe_trajectories.get(level, []) if reuse != "none" else []
        reused = probes if reuse == "all" else [t for t in probes if self.succeeded(t)]
        reused = reused[: self.cfg.n]
        fresh = await self.sample(level, self.cfg.n - len(reused)) if len(reused) < self.cfg.n else []
        return reused + fresh, len(reused)

    def outcome(self, status: GroupStatus, level: int, trajectories: list[T], **extra) -> GroupOutcome[T]:
        return GroupOutcome(
            task_id=self.task_id,
            num_actions=self.num_actions,
            status=status,
            level=level,
            trajectories=trajectories,
            probes=self.probes,
            sampled=self.sampled,
            serial_rounds=self.serial_rounds,
            warm_started=self.warm_started,
            plan_capped=self.top < self.num_actions,
            **extra,
        )


# --- level finders: given a hard group, return a verified sufficient level or None -------------------

LevelFinder = Callable[[_Group, "LevelCache | None"], Awaitable["int | None"]]
_FINDERS: dict[str, LevelFinder] = {}


def register_level_finder(mode: str) -> Callable[[LevelFinder], LevelFinder]:
    """Register how a ``fallback_*`` mode picks the level for a hard group."""

    def decorator(fn: LevelFinder) -> LevelFinder:
        _FINDERS[mode] = fn
        return fn

    return decorator


@register_level_finder("fallback_full")
async def _full_level(group: _Group, cache: LevelCache | None) -> int | None:
    """No search: k = L. The guided group itself is the verification (``run_group`` checks it)."""
    return group.top


@register_level_finder("fallback_ladder")
async def _ladder_level(group: _Group, cache: LevelCache | None) -> int | None:
    """GHPO-style linear ladder: probe ceil(r · L) for r in the ladder, in order; first success wins."""
    levels = sorted({min(group.top, max(1, level_from_ratio(r, group.num_actions))) for r in group.cfg.ladder})
    for level in levels:
        if (await group.probe_round([level]))[level]:
            return level
    return None


@register_level_finder("fallback_adaptive")
async def _binary_search_level(group: _Group, cache: LevelCache | None) -> int | None:
    """Binary search for the minimal sufficient level, optionally warm-started from the cache.

    Invariant: every level ≤ ``lo`` is taken as insufficient (level 0 is: the unguided group failed),
    ``hi`` is the smallest level verified sufficient (``L + 1`` while none is). Each probe halves
    (lo, hi), so a cold start costs at most ⌈log2(L + 1)⌉ rounds and ends with hi == lo + 1.

    Warm start: probe k*_prev − 1 and k*_prev in one concurrent round. If that brackets the answer, done;
    otherwise gallop (steps 1, 2, 4, ...) from the stale level in the direction it moved, because k*
    drifts slowly as the policy learns, then binary-search the last step.
    """
    top = group.top
    lo, hi = 0, top + 1
    previous = cache.get(group.task_id, group.num_actions) if (cache is not None and group.cfg.warm_start) else None
    if previous is not None:
        group.warm_started = True
        levels = _warm_start_levels(previous, top)
        verdicts = await group.probe_round(levels)
        for level in levels:  # ascending, so the lowest sufficient level bounds hi
            if verdicts[level]:
                hi = min(hi, level)
            elif level < hi:
                lo = level
        lo, hi = await _gallop(group, lo, hi, downward=hi <= top)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (await group.probe_round([mid]))[mid]:
            hi = mid
        else:
            lo = mid
    return hi if hi <= top else None


def _warm_start_levels(previous: int, top: int) -> list[int]:
    """The first probe round of a warm start, ascending (``top``: the highest usable level)."""
    if previous > top:  # last time even the top level failed (or the cached level no longer fits): re-check the top
        return [top]
    if previous == 1:  # level 0 is known to fail (the unguided group did)
        return [1]
    return [previous - 1, previous]  # confirm k*_prev and its minimality in one concurrent round


async def _gallop(group: _Group, lo: int, hi: int, downward: bool) -> tuple[int, int]:
    """Exponential search from one end of (lo, hi) until a probe flips; returns the narrowed bracket."""
    step = 1
    while hi - lo > 1:
        level = max(hi - step, lo + 1) if downward else min(lo + step, hi - 1)
        if (await group.probe_round([level]))[level]:
            hi = level
            if not downward:
                break
        else:
            lo = level
            if downward:
                break
        step *= 2
    return lo, hi


# --- the per-prompt driver -------------------------------------------------------------------------


async def run_group(
    task_id: str,
    num_actions: int,
    rollout: RolloutFn,
    reward: RewardFn,
    cfg: SearchConfig,
    cache: LevelCache | None = None,
    max_level: int | None = None,
) -> GroupOutcome[T]:
    """Decide and produce the group of ``cfg.n`` trajectories for one prompt.

    Call it once per prompt and ``asyncio.gather`` the calls: prompts never wait for each other.
    ``num_actions`` is L, the number of reference actions (0 = no action data: never guided). ``max_level`` caps
    the levels the search may use (the prompt of a longer plan would not fit the model's prompt budget); the
    search then treats it as the top level, and k/L ratios stay relative to L.
    """
    if num_actions < 0:
        raise ValueError(f"task {task_id!r}: number of reference actions must be >= 0, got {num_actions}")
    top = num_actions if max_level is None else max(0, min(num_actions, max_level))
    group: _Group[T] = _Group(task_id, num_actions, rollout, reward, cfg, top)
    if cfg.mode == "off" or top == 0:  # plain GRPO; still report whether the group was hard
        trajectories = await group.sample(0, cfg.n)
        rewards = [float(reward(t)) for t in trajectories]
        hard = not any(r > cfg.success_threshold for r in rewards)
        return group.outcome(GroupStatus.UNGUIDED, 0, trajectories, unguided_rewards=rewards, is_hard=hard)
    if not cfg.mode.startswith("fallback_"):
        level = min(_unconditional_level(cfg, num_actions), top)
        status = GroupStatus.GUIDED if level > 0 else GroupStatus.UNGUIDED
        return group.outcome(status, level, await group.sample(level, cfg.n))

    unguided = await group.sample(0, cfg.n)
    unguided_rewards = [float(reward(t)) for t in unguided]
    if any(r > cfg.success_threshold for r in unguided_rewards):
        return group.outcome(GroupStatus.SOLVED_UNGUIDED, 0, unguided, unguided_rewards=unguided_rewards)

    level = await _FINDERS[cfg.mode](group, cache)
    if level is None:  # no probed level was sufficient: the group at L decides (or the probes, if so configured)
        level = top
        streak = cache.failure_streak(task_id, num_actions) if cache is not None else 0
        out_of_reach = cfg.probe_only_after > 0 and streak >= cfg.probe_only_after
        complete = (
            cfg.full_level_check == "group" and not out_of_reach
        ) or cfg.on_full_failure == FullFailurePolicy.KEEP.value
        if not complete:
            return _full_failure(group, cache, unguided, unguided_rewards, guided_at_full=None)
        # the failed probes at L are valid members of the group at L: reuse all of them
        trajectories, reused = await group.guided_group(level, "none" if cfg.reuse_probes == "none" else "all")
    else:
        trajectories, reused = await group.guided_group(level, cfg.reuse_probes)
    verified = any(p.level == level and p.sufficient for p in group.probes)
    if not verified and not group.sufficient(trajectories):
        return _full_failure(group, cache, unguided, unguided_rewards, guided_at_full=trajectories)
    if cache is not None:
        cache.put(task_id, num_actions, level)
    return group.outcome(
        GroupStatus.RESCUED, level, trajectories, unguided_rewards=unguided_rewards, reused=reused, is_hard=True
    )


def _unconditional_level(cfg: SearchConfig, num_actions: int) -> int:
    if cfg.mode == "always_full":
        return num_actions
    if cfg.mode == "fixed_k":
        return min(cfg.fixed_k, num_actions)
    return level_from_ratio(cfg.fixed_ratio, num_actions)


def _full_failure(
    group: _Group[T],
    cache: LevelCache | None,
    unguided: list[T],
    unguided_rewards: list[float],
    guided_at_full: list[T] | None,
) -> GroupOutcome[T]:
    """Even k = L failed: apply ``on_full_failure`` and remember it, so the next epoch probes only L."""
    if cache is not None:
        cache.put_full_failure(group.task_id, group.num_actions)
    policy = FullFailurePolicy(group.cfg.on_full_failure)
    if policy is FullFailurePolicy.UNGUIDED:
        level, trajectories = 0, unguided
    elif policy is FullFailurePolicy.DROP:
        level, trajectories = group.top, []
    else:
        level, trajectories = group.top, guided_at_full or []
    return group.outcome(GroupStatus.FULL_FAILED, level, trajectories, unguided_rewards=unguided_rewards, is_hard=True)
