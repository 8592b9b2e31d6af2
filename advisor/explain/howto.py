""""How to tell if it worked", per signal kind: what the next run should show, in the signal's own numbers.

Each sentence uses only the signal's metric, steps, value and threshold, so the checker finds every
number it quotes in the evidence. A kind without its own sentence gets the generic one: the same
detector should stay quiet on the next run.
"""

from __future__ import annotations

from typing import Callable

from advisor.explain.grounding import GroundedSignal, fmt_number


def _was(s: GroundedSignal, what: str = "it was") -> str:
    """' (it was V; the threshold is T)' with whichever of the two the signal has."""
    parts = []
    if s.value is not None:
        parts.append(f"{what} {_num(s.value)}")
    if s.threshold is not None:
        parts.append(f"the threshold is {_num(s.threshold)}")
    return f" ({'; '.join(parts)})" if parts else ""


def _num(x) -> str:
    return x if isinstance(x, str) else fmt_number(x)


def _nan_inf(s: GroundedSignal) -> str:
    return (f"{s.metric} stays finite past step {_num(s.end_step)}, where this run had non-finite values "
            f"from step {_num(s.start_step)}; check the whole run, since NaNs can come back later.")


def _spike(s: GroundedSignal) -> str:
    return (f"{s.metric} has no jump like the one at step {_num(s.start_step)}{_was(s, 'its size was')}; "
            "a spike that only moves later means the cause is still there.")


def _component_growth(s: GroundedSignal) -> str:
    return (f"{s.metric} stops growing against the rest of the loss after step {_num(s.start_step)}{_was(s)}, "
            "and the total loss falls with it instead of being carried by one term.")


def _overfitting(s: GroundedSignal) -> str:
    return (f"{s.metric} keeps improving, or at least stops getting worse, past step {_num(s.start_step)} "
            f"where it turned{_was(s, 'the gap was')}; the best validation score should come later in the run.")


def _plateau(s: GroundedSignal) -> str:
    return f"{s.metric} is still falling past step {_num(s.end_step)}, where this run flattened out{_was(s)}."


def _dead_units(s: GroundedSignal) -> str:
    return f"the share of dead units in {s.metric} stays low{_was(s, 'it was')} through the run, not only at the start."


def _grad(s: GroundedSignal) -> str:
    return f"{s.metric} stays inside the detector's range{_was(s)} past step {_num(s.end_step)}, with no trend up or down."


def _collapse(s: GroundedSignal) -> str:
    return f"{s.metric} rises again, or stops falling, after step {_num(s.start_step)}{_was(s)}."


def _oscillation(s: GroundedSignal) -> str:
    return f"{s.metric} settles into a steady trend instead of swinging between steps {_num(s.start_step)} and {_num(s.end_step)}{_was(s)}."


HOW_TO_TELL: dict[str, Callable[[GroundedSignal], str]] = {
    "nan_inf": _nan_inf,
    "spike": _spike,
    "loss_spike": _spike,
    "component_growth": _component_growth,
    "overfitting": _overfitting,
    "val_divergence": _overfitting,
    "plateau": _plateau,
    "dead_units": _dead_units,
    "grad_explosion": _grad,
    "exploding_gradients": _grad,
    "grad_vanishing": _grad,
    "vanishing_gradients": _grad,
    "rank_collapse": _collapse,
    "low_rank": _collapse,
    "collapse": _collapse,
    "codebook_collapse": _collapse,
    "low_usage": _collapse,
    "oscillation": _oscillation,
}


def how_to_tell(s: GroundedSignal) -> str:
    sentence = HOW_TO_TELL.get(s.kind)
    if sentence is not None:
        return sentence(s)
    where = f"steps {_num(s.start_step)} to {_num(s.end_step)}"
    return f"run `advisor diagnose` on the new log: the {s.kind} signal on {s.metric} ({where}){_was(s)} should no longer fire."
