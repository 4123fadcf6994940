"""The loss's per-micro-batch statistics as ``actguide/*`` step metrics."""

from actguide_plugin.verl_glue.metrics import loss_metrics


def test_shift_variance_from_loss_moments():
    metrics = {"actor/actguide/offpolicy_shift_mean": 2.0, "actor/actguide/offpolicy_shift_sqmean": 5.0, "x": 1}
    out = loss_metrics(metrics)
    assert out == {"actguide/offpolicy_shift_mean": 2.0, "actguide/offpolicy_shift_var": 1.0}
    assert metrics == {"x": 1}
