"""Reward detectors (advisor.detectors.rewards): a reward that never improves, one that declines, one whose
spread across samples vanishes — on a real GRPO log and on real group-relative REINFORCE runs on CPU."""

from __future__ import annotations

import pytest
from detector_cases import loud, of_kind, only, real, train_bandit

from advisor.detectors import detect
from advisor.logs import read_log
from advisor.roles import infer_role


def test_reward_names_are_rewards_and_preference_pairs_are_not():
    for name in ("reward", "reward_std", "rewards/format_reward_fn/mean", "train/episode_return", "frac_reward_zero_std"):
        assert infer_role(name).role == "reward" and infer_role(name).higher_is_better, name
    for name in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert infer_role(name).role != "reward", name  # DPO's implicit rewards move apart by design


def test_a_grpo_reward_that_never_improves_is_a_stall():
    # GRPO on a trading environment: the mean reward is ~0.5 over the first third and ~0.2 over the last,
    # noisy (std ~0.5 per log): no improvement, and the decline is within the noise (t = -1.4)
    signals = real("hf-grpo-chaos-economy.json")
    s = only(signals, "reward_stall", "reward")
    assert s.severity == "medium" and -2 < s.numbers["welch_t"] < 2
    assert not of_kind(signals, "reward_decline") and not of_kind(signals, "reward_spread_collapse")


@pytest.fixture(scope="module")
def bandits(tmp_path_factory):
    base = tmp_path_factory.mktemp("bandits")
    runs = {"learns": {}, "sign_bug": {"sign": -1.0}, "lr_too_small": {"lr": 1e-5}}
    return {name: detect(read_log(train_bandit(base / name, **kw))) for name, kw in runs.items()}


def test_a_policy_that_learns_raises_nothing(bandits):
    # its reward goes to 1 and the spread of a group's rewards to 0: every sample right is success, not collapse
    assert loud(bandits["learns"]) == []


def test_a_sign_bug_in_the_policy_loss_declines_the_reward(bandits):
    s = only(bandits["sign_bug"], "reward_decline", "reward")
    assert s.severity == "medium" and s.numbers["welch_t"] <= -2
    spread = of_kind(bandits["sign_bug"], "reward_spread_collapse")
    assert all(x.metric == "reward_std" for x in spread)


def test_a_learning_rate_too_small_stalls_the_reward(bandits):
    s = only(bandits["lr_too_small"], "reward_stall", "reward")
    assert s.severity == "medium" and abs(s.numbers["welch_t"]) < 2
