"""Unbiased pass@k and the search-agent round metrics."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actguide_plugin.analysis.passk import mean_pass_at_k, pass_at_k, round_metrics


def test_one_correct_of_eight_is_pass_at_8_one_not_verls_bootstrap_value():
    assert pass_at_k(8, 1, 8) == 1.0
    assert pass_at_k(8, 1, 1) == pytest.approx(1 / 8)
    assert pass_at_k(3, 1, 2) == pytest.approx(2 / 3)
    assert pass_at_k(5, 0, 3) == 0.0


@given(st.integers(1, 7).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_estimator_equals_the_fraction_of_k_subsets_with_a_correct_sample(nck):
    n, c, k = nck
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


@pytest.mark.parametrize(("n", "c", "k"), [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_bad_counts_are_rejected(n, c, k):
    with pytest.raises(ValueError, match="pass@k"):
        pass_at_k(n, c, k)


def test_mean_leaves_out_questions_with_too_few_samples():
    mean, used = mean_pass_at_k([(3, 1), (3, 0), (2, 2)], k=3)
    assert (mean, used) == (pytest.approx(0.5), 2)
    assert mean_pass_at_k([(1, 1)], k=2) == (0.0, 0)


def test_rounds_avg_best_and_any():
    verdicts = {"q1": {0: True, 1: False, 2: True}, "q2": {0: False, 1: False, 2: True}, "q3": {0: False, 1: False}}
    metrics = round_metrics(verdicts, rounds=3)
    # round accuracies: 1/3, 0/3, 2/2 (q3 has no round-2 sample: missing, not wrong)
    assert metrics["avg_pass@3"] == pytest.approx((1 / 3 + 0 + 1) / 3)
    assert metrics["best_pass@1"] == 1.0
    assert metrics["pass@3"] == pytest.approx(2 / 3)


def test_analysis_package_imports_with_verl_absent():
    """Evaluation maths, summaries and plots are pure: block verl and import every analysis module."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['verl'] = None\n"
        "from actguide_plugin.analysis import barrier, eval_summary, levels, passk, plots, training, trajectory\n"
        "assert passk.pass_at_k(8, 1, 8) == 1.0\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
