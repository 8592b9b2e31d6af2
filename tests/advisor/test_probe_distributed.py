"""The probe under torch.distributed: two gloo processes on the CPU, readings of the whole batch on rank 0."""

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

from advisor.probe import metrics as M

STEPS, EVERY = 6, 2
BROKEN_AFTER = 2  # rank 1's probe stops after this step; rank 0 must neither hang nor lose its own part
ROWS = {0: slice(0, 10), 1: slice(10, 16)}  # unequal shares: the gathered per-sample norms need padding


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, run: str, reference_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from torch.nn.parallel import DistributedDataParallel

        from advisor import Probe

        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 4))
        ddp = DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        probe = Probe(ddp, run=run, every=EVERY, representation_every=1)
        data = torch.Generator().manual_seed(1)
        projection = torch.randn(6, 5, generator=data)
        references = {}
        for step in range(STEPS):
            x_all, y_all = torch.randn(16, 6, generator=data), torch.randint(0, 4, (16,), generator=data)
            codes_all = torch.cat([y_all[ROWS[0]], y_all[ROWS[1]] + 4])  # rank 1 sees a larger inferred codebook
            rows = ROWS[rank]
            out = ddp(x_all[rows])
            loss = F.cross_entropy(out, y_all[rows])
            opt.zero_grad()
            loss.backward()
            probe.step(loss=loss, embeddings=x_all[rows] @ projection, logits=out, targets=y_all[rows], codes=codes_all[rows])
            if rank == 1 and step == BROKEN_AFTER:
                probe._break(RuntimeError("simulated failure on rank 1"))
            if rank == 0 and step % EVERY == 0:
                # The same weights on every rank: rank 0 can compute the batch of every rank still probing.
                seen = slice(0, 16) if step <= BROKEN_AFTER else ROWS[0]
                x_seen, y_seen, codes_seen = x_all[seen], y_all[seen], codes_all[seen]
                with torch.no_grad():
                    hidden = torch.relu(model[0](x_seen))
                    logits_seen = model(x_seen)
                ref = {f"embeddings/{k}": float(v) for k, v in M.representation_readings(M.representation_stats(x_seen @ projection)).items()}
                ref.update({f"logits/{k}": float(v) for k, v in M.logit_readings(M.logit_stats(logits_seen, y_seen)).items()})
                ref.update({f"codes/{k}": float(v) for k, v in M.code_readings(M.code_stats(codes_seen)).items()})
                ref["act/1/zero_fraction"] = float((hidden <= 0).double().mean())
                ref["act/1/dead_unit_share"] = float((hidden.amax(0) <= 0).double().mean())
                references[step] = ref
            opt.step()
        probe.close()
        if rank == 0:
            torch.save(references, reference_path)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_gloo_two_ranks_reduce_the_whole_batch(tmp_path: Path):
    from advisor.runstore import read_meta, read_readings

    run, reference_path = tmp_path / "ddp", tmp_path / "reference.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(run), str(reference_path)), nprocs=2, join=True)
    references = torch.load(reference_path)
    readings = read_readings(run)
    assert readings["loss"][0].tolist() == list(range(STEPS))  # scalars: rank 0 only, every step
    sampled = list(range(0, STEPS, EVERY))
    for name in references[0]:
        steps, values = readings[name]
        assert steps.tolist() == sampled, name
        expected = [references[s][name] for s in sampled]
        np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-9, err_msg=name)
    assert readings["codes/usage_share"][1][0] == pytest.approx(references[0]["codes/usage_share"])
    assert "grad/0/norm" in readings and "weight/2/norm" in readings and "update/2/ratio" in readings
    assert not [n for n in readings if "module." in n]
    meta = read_meta(run)
    assert meta["world_size"] == 2 and meta["model"]["wrapper"] == "DistributedDataParallel"
