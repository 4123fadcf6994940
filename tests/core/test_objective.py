import math

import pytest
import torch

from actguide_plugin.core.objective import (
    ObjectiveConfig,
    actguide_token_losses,
    clip_masks,
    sequence_shift,
    token_mean,
    token_ratio,
)


def logp_pair(ratios):
    """log-probs (new, old) whose ratio is exactly the given values."""
    old = torch.full((len(ratios),), -1.0, dtype=torch.float64)
    new = old + torch.log(torch.tensor(ratios, dtype=torch.float64))
    return new.unsqueeze(0), old.unsqueeze(0)


@pytest.mark.parametrize(
    ("ratio", "advantage", "expected"),
    [
        (1.5, 1.0, -1.2),  # positive advantage: clipped at 1 + ε
        (0.5, 1.0, -0.5),  # below 1 − ε with A > 0: the unclipped (pessimistic) term wins
        (1.5, -1.0, 1.5),  # A < 0 above 1 + ε: unclipped 1.5 > clipped 1.2
        (4.0, -1.0, 3.0),  # dual clip: −A·c caps the loss at 3
        (0.5, -1.0, 0.8),  # A < 0 below 1 − ε: clipped 0.8
        (1.0, 2.0, -2.0),
    ],
)
def test_ppo_clip_and_dual_clip_match_hand_computation(ratio, advantage, expected):
    new, old = logp_pair([ratio])
    losses, _ = actguide_token_losses(new, old, torch.tensor([[advantage]]), torch.tensor([False]), ObjectiveConfig())
    assert losses.item() == pytest.approx(expected)


def test_guided_rows_use_their_own_rule_and_unguided_rows_keep_ppo():
    new, old = logp_pair([4.0, 4.0])
    new, old = new.expand(2, 2), old.expand(2, 2)
    advantages = torch.ones(2, 2)
    is_guided = torch.tensor([True, False])
    cap = ObjectiveConfig(guided_clip="cap", guided_ratio_cap=2.5)
    losses, _ = actguide_token_losses(new, old, advantages, is_guided, cap)
    assert losses[0].tolist() == pytest.approx([-2.5, -2.5])  # capped, not clipped at 1.2
    assert losses[1].tolist() == pytest.approx([-1.2, -1.2])
    shaping = ObjectiveConfig(guided_clip="shaping", shaping_gamma=0.1)
    losses, _ = actguide_token_losses(new, old, advantages, is_guided, shaping)
    assert losses[0].tolist() == pytest.approx([-4.0 / 4.1, -4.0 / 4.1])
    assert losses[1].tolist() == pytest.approx([-1.2, -1.2])


def test_same_rule_gives_identical_losses_for_guided_and_unguided():
    torch.manual_seed(0)
    new, old, adv = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 6)
    guided, _ = actguide_token_losses(new, old, adv, torch.ones(4, dtype=torch.bool), ObjectiveConfig())
    unguided, _ = actguide_token_losses(new, old, adv, torch.zeros(4, dtype=torch.bool), ObjectiveConfig())
    assert torch.equal(guided, unguided)


def test_gradient_flows_only_through_unclipped_tokens():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.1, 1.5]])).requires_grad_()
    losses, _ = actguide_token_losses(new, old, torch.ones(1, 2), torch.tensor([False]), ObjectiveConfig())
    losses.sum().backward()
    assert new.grad[0, 0].item() == pytest.approx(-1.1)  # d(−r)/d log r = −r
    assert new.grad[0, 1].item() == 0.0


def test_vanishing_ratio_gradients_of_each_guided_rule():
    """A guided token the unguided policy finds e^-12 times less likely than the guided one (the barrier world's
    measured case): PPO clip, cap and shaping give it a gradient ∝ r, cispo gives it −A·(1 − ε_low)."""
    grads = {}
    for rule in ("same", "cap", "shaping", "cispo"):
        new = torch.tensor([[-12.0, -30.0]], dtype=torch.float64, requires_grad=True)
        losses, _ = actguide_token_losses(
            new, torch.zeros(1, 2, dtype=torch.float64), torch.ones(1, 2), torch.tensor([True]),
            ObjectiveConfig(guided_clip=rule),
        )  # fmt: skip
        losses.sum().backward()
        grads[rule] = new.grad[0].tolist()
    assert grads["same"][0] == pytest.approx(-math.exp(-12)) and grads["cap"][0] == pytest.approx(-math.exp(-12))
    assert abs(grads["shaping"][0]) < 1e-3
    assert grads["cispo"] == pytest.approx([-0.8, -0.8])  # beyond the ±20 clamp of the ratio's value too


def test_cispo_weights_log_prob_by_the_clipped_ratio_inside_the_trust_region():
    new, old = logp_pair([0.5, 1.1, 3.0, 3.0, 0.5])
    new.requires_grad_()
    advantages = torch.tensor([[1.0, 1.0, -2.0, 1.0, -1.0]], dtype=torch.float64)
    cfg = ObjectiveConfig(guided_clip="cispo")
    losses, ratio = actguide_token_losses(new, old, advantages, torch.tensor([True]), cfg)
    # value −A·clip(r, 0.8, 1.2); masked: A > 0 above 1.2 (already raised), A < 0 below 0.8 (already lowered)
    assert losses[0].tolist() == pytest.approx([-0.8, -1.1, 2.4, 0.0, 0.0])
    losses.sum().backward()
    assert new.grad[0].tolist() == pytest.approx([-0.8, -1.1, 2.4, 0.0, 0.0])  # gradient −A·w w.r.t. log π_θ
    clipped, lower = clip_masks(ratio, advantages, torch.tensor([True]), cfg)
    assert clipped.tolist() == [[False, False, False, True, True]] and not lower.any()
    unguided, _ = actguide_token_losses(new, old, advantages, torch.tensor([False]), cfg)
    assert unguided[0].tolist() == pytest.approx([-0.5, -1.1, 6.0, -1.2, 0.8])  # unguided rows keep PPO


def test_token_mean_over_global_batch():
    loss = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert token_mean(loss, mask).item() == pytest.approx(2.0)
    # a micro-batch of a larger global batch: normalised by the global token count, scaled by dp size
    assert token_mean(loss, mask, global_num_tokens=12, dp_size=2).item() == pytest.approx(6.0 / 12 * 2)
    with pytest.raises(ValueError, match="global number of tokens"):
        token_mean(loss, mask, dp_size=2)


def test_ratio_clamps_extreme_log_differences():
    assert token_ratio(torch.tensor([100.0]), torch.tensor([0.0])).item() == pytest.approx(math.exp(20))


def test_sequence_shift_sums_masked_tokens():
    logp_guided = torch.tensor([[-0.1, -0.2, -9.0], [-1.0, -1.0, -1.0]])
    logp_unguided = torch.tensor([[-1.1, -0.7, -0.0], [-1.0, -2.0, -1.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert sequence_shift(logp_guided, logp_unguided, mask).tolist() == pytest.approx([1.5, 1.0])


@pytest.mark.parametrize(
    ("ratio", "advantage", "clipped", "lower"),
    [
        (1.5, 1.0, True, False),  # above 1 + ε with A > 0: the trust region is active
        (1.5, -1.0, False, False),  # above 1 + ε with A < 0: the unclipped term wins, the token still teaches
        (0.5, 1.0, False, False),  # below 1 − ε with A > 0: unclipped wins
        (0.5, -1.0, True, False),  # below 1 − ε with A < 0: clipped
        (4.0, -1.0, False, True),  # dual clip bounds the loss at −A·c
        (1.1, 1.0, False, False),
    ],
)
def test_clip_masks_follow_verls_pg_clipfrac_given_the_advantage_sign(ratio, advantage, clipped, lower):
    new, old = logp_pair([ratio])
    masks = clip_masks(token_ratio(new, old), torch.tensor([[advantage]]), torch.tensor([False]), ObjectiveConfig())
    assert (masks[0].item(), masks[1].item()) == (clipped, lower)


def test_guided_rows_report_their_own_rules_clipping():
    new, old = logp_pair([3.0, 1.5])
    new, old = new.expand(2, 2), old.expand(2, 2)
    ratio, advantages, is_guided = token_ratio(new, old), torch.ones(2, 2), torch.tensor([True, False])
    clipped, _ = clip_masks(ratio, advantages, is_guided, ObjectiveConfig(guided_clip="cap", guided_ratio_cap=2.0))
    assert clipped.tolist() == [[True, False], [True, True]]  # cap cuts r > 2 only; PPO clips r > 1.2
    clipped, lower = clip_masks(ratio, advantages, is_guided, ObjectiveConfig(guided_clip="shaping"))
    assert clipped.tolist() == [[False, False], [True, True]] and not lower.any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"guided_clip": "none"}, "guided_clip"), ({"dual_clip_c": 1.0}, "dual_clip_c"), ({"clip_low": -0.1}, "clip")],
)
def test_objective_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ObjectiveConfig(**kwargs)
