"""pass@k estimated without bias from n samples with c correct (Chen et al., 2021), and search-agent "rounds".

verl's validation metric ``best@N`` is a bootstrap estimate of the best of N *resampled* rewards: with 8 samples
of which 1 is correct it reports ≈ 0.66, while pass@8 (some sample correct) is 1. The unbiased estimator of
"at least one of k samples correct" from n ≥ k samples with c correct is

    pass@k = 1 − C(n − c, k) / C(n, k).

The search-agent literature (Tongyi DeepResearch's evaluation) instead runs R independent *rounds* over a
benchmark and reports Avg Pass@R (the mean of the rounds' accuracies), Best Pass@1 (the best round's accuracy)
and Pass@R (a question counts if any round answered it); :func:`round_metrics` computes those from the same
samples, sample i of every question forming round i.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from the n is correct."""
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got k={k}, n={n}")
    return 1.0 - comb(n - c, k) / comb(n, k)


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> tuple[float, int]:
    """Mean pass@k over questions given as (n, c); questions with n < k are left out.

    Returns the mean (0.0 when no question qualifies) and how many questions it averaged.
    """
    values = [pass_at_k(n, c, k) for n, c in counts if n >= k]
    return (sum(values) / len(values) if values else 0.0), len(values)


def round_metrics(correct_by_round: Mapping[str, Mapping[int, bool]], rounds: int) -> dict[str, float]:
    """Avg Pass@R, Best Pass@1 and Pass@R over R rounds; ``correct_by_round[question][r]`` is round r's verdict.

    A round's accuracy is over the questions that have a sample in that round (a failed sample is missing, not
    wrong); Pass@R counts a question when any of its rounds is correct.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    accuracies = []
    for r in range(rounds):
        verdicts = [by_round[r] for by_round in correct_by_round.values() if r in by_round]
        accuracies.append(sum(verdicts) / len(verdicts) if verdicts else 0.0)
    any_correct = [any(by_round.values()) for by_round in correct_by_round.values()]
    return {
        f"avg_pass@{rounds}": sum(accuracies) / rounds,
        "best_pass@1": max(accuracies),
        f"pass@{rounds}": sum(any_correct) / len(any_correct) if any_correct else 0.0,
    }
