"""Reward detectors (RL and preference tuning): a reward that never improves, one that declines, and a
reward whose spread across samples collapses (no learning signal left for group-relative methods).

Rewards are noisy by nature, so a change counts only when it beats that noise: the last third of the
run against the first third with Welch's t statistic (Henderson et al. 2018, Deep RL that Matters, on
comparing noisy learning curves with their spread; |t| >= 2 is about 95% confidence).
"""

from __future__ import annotations

import numpy as np

from advisor.detectors.base import Context, fmt, welch_t
from advisor.models import Series, Signal
from advisor.roles import AGGREGATE_WORDS, REWARD_WORDS, SPLIT_WORDS, words

REWARD_MIN_POINTS = 10
REWARD_T = 2.0  # Welch's t between the first and the last third: a real change, not noise
REWARD_STALL_MIN_POINTS = 20  # a stall over fewer logs is a note (low), over more a finding (medium)
# GRPO (Shao et al. 2024) normalises each sample's reward by its group's std: groups whose rewards are all
# equal carry no gradient, and DAPO (Yu et al. 2025) filters them out. The spread falling to a tenth of
# its start, or half of the groups having none, leaves little to learn from.
SPREAD_COLLAPSE = 0.1
ZERO_SPREAD_SHARE = 0.5

SPREAD_WORDS = {"std", "stddev", "var", "variance", "spread"}
EXTREME_WORDS = {"min", "max"}


def _what_kind(s: Series) -> str:
    ws = set(words(s.name))
    if ws & SPREAD_WORDS and ws & {"zero", "frac", "fraction", "share"}:
        return "zero_spread_share"
    if ws & SPREAD_WORDS:
        return "spread"
    if ws & EXTREME_WORDS:
        return "extreme"
    return "level"


def _core(name: str) -> frozenset[str]:
    return frozenset(set(words(name)) - SPLIT_WORDS - AGGREGATE_WORDS - SPREAD_WORDS - REWARD_WORDS - {"frac", "fraction", "zero", "share"})


def main_reward(ctx: Context) -> Series | None:
    """The run's reward: the plainest-named level series of role reward (`reward` over `rewards/format_fn/mean`)."""
    levels = [s for s in ctx.with_role("reward") if _what_kind(s) == "level" and len(ctx.curve(s)) >= REWARD_MIN_POINTS]
    if not levels:
        return None
    return min(levels, key=lambda s: (len(_core(s.name)), -len(ctx.curve(s)), len(s.name)))


def _thirds(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    third = max(3, len(y) // 3)
    return y[:third], y[-third:]


def reward_change(ctx: Context, s: Series) -> dict | None:
    c = ctx.curve(s)
    y = c.r_level
    if len(y) < REWARD_MIN_POINTS:
        return None
    a, b = _thirds(y)
    return {"first_third_mean": float(np.mean(a)), "last_third_mean": float(np.mean(b)), "welch_t": welch_t(a, b),
            "best": float(np.max(y)), "points": len(y)}


def _trend(ctx: Context) -> tuple[Series, dict] | None:
    s = main_reward(ctx)
    ch = reward_change(ctx, s) if s is not None else None
    return (s, ch) if ch is not None else None


def detect_reward_decline(ctx: Context) -> list[Signal]:
    found = _trend(ctx)
    if found is None or found[1]["welch_t"] > -REWARD_T:
        return []
    s, ch = found
    c = ctx.curve(s)
    t, first, last = ch["welch_t"], ch["first_third_mean"], ch["last_third_mean"]
    summary = (f"{s.name} declines from a mean of {fmt(first)} over the first third of the run to {fmt(last)} over the "
               f"last third (Welch t = {t:.1f}): the policy gets worse at what it is rewarded for.")
    return [ctx.signal("reward_decline", s, c.steps[0], c.steps[-1], "medium", summary,
                       "reward decreases during training, policy gets worse", value=t, threshold=-REWARD_T,
                       numbers=dict(ch), early_cap=False)]


def detect_reward_stall(ctx: Context) -> list[Signal]:
    found = _trend(ctx)
    if found is None or not -REWARD_T < found[1]["welch_t"] < REWARD_T:
        return []
    s, ch = found
    c = ctx.curve(s)
    t, first, last = ch["welch_t"], ch["first_third_mean"], ch["last_third_mean"]
    severity = "medium" if ch["points"] >= REWARD_STALL_MIN_POINTS else "low"
    summary = (f"{s.name} does not improve: its mean is {fmt(first)} over the first third of the run and {fmt(last)} over "
               f"the last third (Welch t = {t:.1f}, under {REWARD_T:g}), within its own noise.")
    return [ctx.signal("reward_stall", s, c.steps[0], c.steps[-1], severity, summary,
                       "reward does not improve during training, no learning progress", value=t, threshold=REWARD_T,
                       numbers=dict(ch), early_cap=False)]


def _spread_series(ctx: Context, main: Series | None) -> list[Series]:
    """Spread series of the main reward (`reward_std` beside `reward`), and zero-spread shares."""
    out = []
    for s in ctx.with_role("reward"):
        kind = _what_kind(s)
        if kind == "zero_spread_share":
            out.append(s)
        elif kind == "spread" and main is not None and _core(s.name) == _core(main.name):
            out.append(s)
    return out


def detect_reward_spread_collapse(ctx: Context) -> list[Signal]:
    main = main_reward(ctx)
    improved = False
    if main is not None:
        ch = reward_change(ctx, main)
        improved = ch is not None and ch["welch_t"] >= REWARD_T
    out = []
    for s in _spread_series(ctx, main):
        c = ctx.curve(s)
        y = c.r_level
        if len(y) < REWARD_MIN_POINTS:
            continue
        a, b = _thirds(y)
        first, last = float(np.median(a)), float(np.median(b))
        if _what_kind(s) == "zero_spread_share":
            if last < ZERO_SPREAD_SHARE:
                continue
            summary = (f"{s.name} is {last:.0%} over the last third of the run: most sample groups get identical rewards, "
                       f"so their advantages are zero and they teach the policy nothing.")
            value, threshold = last, ZERO_SPREAD_SHARE
        else:
            if first <= 0 or last > SPREAD_COLLAPSE * first:
                continue
            summary = (f"{s.name} falls from {fmt(first)} (first third median) to {fmt(last)} (last third): the samples "
                       f"all get about the same reward, leaving no signal to rank them by.")
            value, threshold = last / first, SPREAD_COLLAPSE
        # a spread that vanished because every sample now earns the top reward is success, not collapse
        severity = "low" if improved else "medium"
        out.append(ctx.signal("reward_spread_collapse", s, c.steps[0], c.steps[-1], severity, summary,
                              "reward variance collapses, all samples get the same reward, no learning signal",
                              value=value, threshold=threshold,
                              numbers={"first_third_median": first, "last_third_median": last, "reward_improved": improved},
                              early_cap=False))
    return out
