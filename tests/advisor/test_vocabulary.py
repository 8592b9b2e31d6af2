"""One vocabulary, checked in every direction: the signal kinds the detectors emit, the links and
how-to-tell rows keyed by them, and the probe reading names the detectors read.
(`matched_by` phrases and the how-to-tell table are checked in tests/advisor/test_explain.py.)"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import numpy as np
import pytest

from advisor import reading_names as rn
from advisor.detectors import REGISTRY
from advisor.matcher import signal_links
from advisor.models import Role

ROOT = Path(__file__).resolve().parents[2]
KINDS = {d.kind for d in REGISTRY}
ROLES = set(typing.get_args(Role))


def test_every_signal_kind_has_links_and_every_link_row_is_a_kind():
    rows = signal_links()
    for key in rows:
        kind, _, role = key.partition(".")
        assert kind in KINDS, f"links.toml row {key!r}: no detector emits {kind!r}"
        assert not role or role in ROLES, f"links.toml row {key!r}: {role!r} is not a role (advisor.models.Role)"
    linked = {key.partition(".")[0] for key in rows}
    assert KINDS <= linked, f"signal kinds with no links row: {sorted(KINDS - linked)}"


def _constants_read_by_detectors() -> set[str]:
    """`rn.NAME` attributes the detector modules use that hold a reading name or suffix."""
    used: set[str] = set()
    for path in (ROOT / "advisor" / "detectors").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "rn":
                value = getattr(rn, node.attr)
                if isinstance(value, str) and not node.attr.startswith(("META_", "ACT_")) and value not in {
                    rn.ACT, rn.GRAD, rn.WEIGHT, rn.UPDATE, rn.LOGITS, rn.CODES, rn.ATTENTION, rn.VIEWS,
                    rn.NONFINITE, rn.GPU, rn.TIME, rn.EMBEDDINGS}:  # fmt: skip
                    used.add(value)
    return used


@pytest.mark.slow
def test_every_reading_a_detector_reads_is_one_the_probe_writes(tmp_path):
    """A tiny model with every kind of tensor the probe understands: each reading name or suffix a
    detector reads appears among the names the probe wrote (GPU and AMP readings need hardware)."""
    import torch
    from advisor import runstore
    from advisor.probe import Probe

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
    run = tmp_path / "run"
    with Probe(model, run=str(run), every=1) as probe:
        for _ in range(4):
            opt.zero_grad()
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            loss.backward()
            attn = torch.softmax(torch.randn(2, 4, 6, 6), dim=-1)
            z = torch.randn(32, 16)
            probe.step(loss=loss, lr=0.1, embeddings=z, views=(z, z + 0.1 * torch.randn_like(z)), logits=logits, targets=y,
                       codes=torch.randint(0, 8, (32,)), codebook_size=8, attention=attn)  # fmt: skip
            opt.step()
    written = set(runstore.read_readings(str(run), since_step=None))
    suffixes = {rn.suffix_of(name) for name in written}
    hardware = {rn.GPU_MEM_ALLOCATED_GB, rn.GPU_MEM_RESERVED_GB, rn.GPU_MEM_PEAK_GB, rn.GPU_MEM_TOTAL_GB, rn.GPU_UTILIZATION,
                rn.GPU_TEMPERATURE_C, rn.GPU_POWER_W, rn.AMP_LOSS_SCALE, rn.TIME_DATA_WAIT_SHARE, rn.UPDATE_FROZEN_PARAMS}  # fmt: skip
    missing = sorted(n for n in _constants_read_by_detectors() - hardware if n not in written and rn.suffix_of(n) not in suffixes)
    assert not missing, f"detectors read names the probe never wrote: {missing}"
    assert np.isfinite(len(written)) and len(written) > 20
