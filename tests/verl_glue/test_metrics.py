"""The loss's summed statistics as ``actguide/*`` step means."""

import pytest

from actguide_plugin.verl_glue.metrics import loss_metrics


def test_means_and_variances_come_from_sums_and_the_sums_are_popped():
    metrics = {
        "actor/actguide/guided_tokens": 10.0,
        "actor/actguide/guided_clipped_tokens": 2.0,
        "actor/actguide/guided_clipped_lower_tokens": 1.0,
        "actor/actguide/guided_ratio_sum": 9.0,
        "actor/actguide/unguided_tokens": 0.0,
        "actor/actguide/unguided_clipped_tokens": 0.0,
        "actor/actguide/unguided_clipped_lower_tokens": 0.0,
        "actor/actguide/unguided_ratio_sum": 0.0,
        "actor/actguide/offpolicy_shift/all/rows": 4.0,
        "actor/actguide/offpolicy_shift/all/sum": 8.0,
        "actor/actguide/offpolicy_shift/all/sqsum": 20.0,
        "actor/actguide/offpolicy_shift/level_3/rows": 4.0,
        "actor/actguide/offpolicy_shift/level_3/sum": 8.0,
        "actor/actguide/offpolicy_shift/level_3/sqsum": 20.0,
        "actor/actguide/offpolicy_shift/level_4/rows": 0.0,
        "actor/actguide/offpolicy_shift/level_4/sum": 0.0,
        "actor/actguide/offpolicy_shift/level_4/sqsum": 0.0,
        "actor/pg_loss": 0.5,
    }
    out = loss_metrics(metrics)
    assert out == pytest.approx(
        {
            "actguide/guided_pg_clipfrac": 0.2,
            "actguide/guided_pg_clipfrac_lower": 0.1,
            "actguide/guided_ratio_mean": 0.9,
            "actguide/guided_tokens": 10.0,
            "actguide/offpolicy_shift_mean": 2.0,
            "actguide/offpolicy_shift_var": 1.0,  # 20 / 4 − 2²
            "actguide/offpolicy_shift/level_3/mean": 2.0,
            "actguide/offpolicy_shift/level_3/var": 1.0,
            "actguide/offpolicy_shift/level_3/rows": 4.0,
        }
    )
    assert metrics == {"actor/pg_loss": 0.5}
