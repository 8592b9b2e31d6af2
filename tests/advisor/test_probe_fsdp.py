"""The probe under FSDP2 (fully_shard): two gloo processes on the CPU, with gradient accumulation.

Every reading of the sharded run equals the same training in one process without sharding: the
gradient, weight and update readings are added up from the local shards, the activation and output
readings from each rank's rows of the batch.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from advisor import reading_names as rn

STEPS, EVERY, MICRO, ROWS = 5, 2, 2, 8  # ROWS per rank per micro-batch
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 4))


def _batches():
    """(x, y) of the whole batch (every rank's rows) per step and micro-batch."""
    gen = torch.Generator().manual_seed(1)
    return [[(torch.randn(WORLD * ROWS, 6, generator=gen), torch.randint(0, 4, (WORLD * ROWS,), generator=gen))
             for _ in range(MICRO)] for _ in range(STEPS)]  # fmt: skip


def _train(model: nn.Module, run: str, rows: slice, sync=None) -> None:
    from advisor import Probe

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    probe = Probe(model, run=run, every=EVERY)
    for micro_batches in _batches():
        opt.zero_grad()
        for i, (x, y) in enumerate(micro_batches):
            if sync is not None:  # accumulate locally, reduce-scatter on the last micro-batch only
                sync(i == MICRO - 1)
            out = model(x[rows])
            F.cross_entropy(out, y[rows]).backward()
            if probe.will_sample:
                probe.observe(embeddings=out, logits=out, targets=y[rows])
        probe.step()
        opt.step()
    probe.close()


def _worker(rank: int, port: int, run: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        from torch.distributed.fsdp import fully_shard

        model = _model()
        for layer in (model[0], model[2], model[4]):
            fully_shard(layer)
        fully_shard(model)
        _train(model, run, slice(rank * ROWS, (rank + 1) * ROWS), sync=model.set_requires_gradient_sync)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_fsdp2_readings_equal_the_unsharded_model(tmp_path: Path):
    from advisor.runstore import read_meta, read_readings

    sharded, reference = tmp_path / "fsdp", tmp_path / "reference"
    mp.spawn(_worker, args=(_free_port(), str(sharded)), nprocs=WORLD, join=True)
    # The reference: one process, the whole batch, the same micro-batches summed.
    _train(_model(), str(reference), slice(0, WORLD * ROWS))

    got, want = read_readings(sharded), read_readings(reference)
    compared = sorted(n for n in want if rn.is_probe_reading(n) and not n.startswith((rn.TIME + "/", rn.GPU + "/")))
    families = {n.split("/")[0] for n in compared}
    assert {rn.GRAD, rn.WEIGHT, rn.UPDATE, rn.ACT, "embeddings", rn.LOGITS} <= families
    assert rn.grad_layer_norm("0") in compared and rn.update_layer_ratio("4") in compared
    assert rn.act("1", rn.DEAD_UNIT_SHARE) in compared
    missing = [n for n in compared if n not in got]
    assert missing == []
    for name in compared:
        (s_got, v_got), (s_want, v_want) = got[name], want[name]
        assert s_got.tolist() == s_want.tolist(), name
        np.testing.assert_allclose(v_got, v_want, rtol=1e-5, atol=1e-7, err_msg=name)
    meta = read_meta(sharded)
    assert meta[rn.META_DISTRIBUTED] == {"world_size": 2, "backend": "gloo", "wrapper": "fsdp2"}
    assert not [n for n in got if "module." in n or "_fsdp" in n]
