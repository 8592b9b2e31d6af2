#!/usr/bin/env python
"""What the live Probe costs a training loop, side by side with no probe and (when installed) Cockpit.

Trains a small CNN and an MLP on synthetic MNIST-sized batches, with 1 and 2 torch threads, all in
one run. Each round runs a block of steps per configuration, in rotating order, for every (model,
threads) pair, on the same model and optimiser (so no configuration gets a luckier memory layout),
with a fresh Probe per block that is built and closed outside the timed part. The headline ratios
are medians over rounds of (block time / no-probe block time of the same round and pair): drift and
load on a shared machine hit all configurations of a round alike. Every block of 50 steps holds
exactly one every=50 sampled step.

Configurations: off; `ordinary` (a probe that never samples: the cost of an unsampled step()),
every=50, every=16, every=1 (the representation readings on their default cadence, every 5th step),
`every1_all` (every=1 with representation_every=1: every reading on every step), every=1 with
max_overhead=0.25 (the probe's cost budget), and Cockpit's
economy configuration tracked every 50 and every 16 steps when cockpit-for-pytorch is installed (an
optional comparison, not a dependency: `pip install --no-deps cockpit-for-pytorch backpack-for-pytorch
einops unfoldNd json-tricks seaborn`, so that torch is left alone).

The unsampled step() is also timed directly, per call, in wall time and in the calling thread's CPU
time (which other processes on a loaded machine do not inflate).

    .venv/bin/python scripts/bench_probe.py                 # CPU: cnn and mlp, 1 and 2 threads
    .venv/bin/python scripts/bench_probe.py --models mlp --threads 1 --rounds 4
    .venv/bin/python scripts/bench_probe.py --device cuda --json

Targets: an unsampled step() <= 10 us; every=50 <= 1.02x and every=1 <= 1.3x of a plain step.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import itertools
import json
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from advisor.probe import Probe  # noqa: E402

TARGETS = {"unsampled_us": 10.0, "every50": 1.02, "every1": 1.3}
NEVER = 10**9  # an every= that never samples once the first step is 1
# name -> (kind, every, max_overhead, representation_every)
PROBE_CONFIGS = {
    "off": (None, None, None, None),
    "ordinary": ("probe", NEVER, None, None),
    "every50": ("probe", 50, None, None),
    "every16": ("probe", 16, None, None),
    "every1": ("probe", 1, None, None),
    "every1_all": ("probe", 1, None, 1),
    "every1_budget": ("probe", 1, 0.25, None),
}
COCKPIT_CONFIGS = {"cockpit50": ("cockpit", 50, None, None), "cockpit16": ("cockpit", 16, None, None)}


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        )  # fmt: skip
        self.embed = nn.Sequential(nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 64), nn.Tanh())
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.embed(self.features(x))
        return z, self.head(z)


class SmallMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 64), nn.Tanh())
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.embed(x)
        return z, self.head(z)


MODELS = {"cnn": SmallCNN, "mlp": SmallMLP}


def load_cockpit():
    """Cockpit's classes, or None when it is not installed (or does not import)."""
    try:
        importlib.metadata.version("cockpit-for-pytorch")
    except importlib.metadata.PackageNotFoundError:
        return None
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401  (cockpit 1.0.2 reads its version through it)
        except ImportError:  # setuptools >= 81 dropped it: the two names cockpit uses, from importlib
            shim = types.ModuleType("pkg_resources")

            class DistributionNotFound(Exception):
                pass

            def get_distribution(name: str):
                try:
                    return types.SimpleNamespace(version=importlib.metadata.version(name))
                except importlib.metadata.PackageNotFoundError as exc:
                    raise DistributionNotFound(name) from exc

            shim.DistributionNotFound, shim.get_distribution = DistributionNotFound, get_distribution
            sys.modules["pkg_resources"] = shim
    try:
        from backpack import extend
        from cockpit import Cockpit
        from cockpit.utils.configuration import configuration
        from cockpit.utils.schedules import linear
    except Exception as exc:  # noqa: BLE001 - an optional comparison: say why and go on
        print(f"(cockpit installed but not usable: {exc!r})", file=sys.stderr)
        return None
    return types.SimpleNamespace(extend=extend, Cockpit=Cockpit, configuration=configuration, linear=linear)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """The model, optimiser and data every configuration of one (model, threads) pair shares."""

    def __init__(self, model_name: str, threads: int | None, args: argparse.Namespace, device: torch.device, cockpit) -> None:
        torch.manual_seed(0)
        self.threads = threads
        self.device = device
        self.flush_seconds = args.flush_seconds
        self.model = MODELS[model_name]().to(device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(1)
        self.batches = [
            (torch.randn(args.batch, 1, 28, 28, generator=gen).to(device), torch.randint(0, 10, (args.batch,), generator=gen).to(device))
            for _ in range(8)
        ]  # fmt: skip
        self.i = 0
        self.cockpit = cockpit
        if cockpit is not None:  # BackPACK hooks every forward of an extended model: Cockpit gets its own copy
            self.cockpit_model = cockpit.extend(copy.deepcopy(self.model))
            self.cockpit_opt = torch.optim.AdamW(self.cockpit_model.parameters(), lr=1e-3)
            self.cockpit_loss = cockpit.extend(nn.CrossEntropyLoss())
        self.step_seconds: dict[str, list[float]] = {}  # per configuration, single steps (CPU only)
        self.call_wall: dict[str, list[float]] = {}  # seconds inside probe.step(), per call
        self.call_cpu: dict[str, list[float]] = {}  # the same in the calling thread's CPU time
        # For scale: a bare loss.item() at the same point of the loop (what any logging line pays), timed
        # in the off blocks. After backward and optimizer steps the caches are cold: on a loaded machine
        # this alone takes several microseconds.
        self.item_cpu: list[float] = []

    def use(self) -> None:
        if self.threads and self.device.type == "cpu":
            torch.set_num_threads(self.threads)

    def _probe_step(self, probe: Probe | None, name: str) -> None:
        x, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        z, logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if probe is None and name == "off":
            cpu = time.thread_time()
            loss.item()
            self.item_cpu.append(time.thread_time() - cpu)
        if probe is not None:
            wall, cpu = time.perf_counter(), time.thread_time()
            probe.step(loss=loss, lr=self.opt.param_groups[0]["lr"], embeddings=z, logits=logits, targets=y)
            self.call_cpu[name].append(time.thread_time() - cpu)
            self.call_wall[name].append(time.perf_counter() - wall)
        self.opt.step()

    def _cockpit_step(self, cockpit, step: int) -> None:
        x, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        _, logits = self.cockpit_model(x)
        loss = self.cockpit_loss(logits, y)
        losses = F.cross_entropy(logits, y, reduction="none")
        self.cockpit_opt.zero_grad(set_to_none=True)
        info = {"batch_size": x.shape[0], "individual_losses": losses, "loss": loss, "optimizer": self.cockpit_opt}
        with cockpit(step, info=info):
            loss.backward(create_graph=cockpit.create_graph(step))
        self.cockpit_opt.step()

    def block(self, name: str, config: tuple, steps: int, run_dir: Path) -> tuple[float, dict[str, float]]:
        """Seconds for `steps` steps under one configuration, and the probe's cost accounting."""
        kind, every, max_overhead, representation_every = config
        probe = cockpit = None
        if kind == "probe":
            first = 1 if every == NEVER else 0
            probe = Probe(self.model, run=run_dir, every=every, first_step=first, flush_seconds=self.flush_seconds,
                          max_overhead=max_overhead, representation_every=representation_every)  # fmt: skip
        elif kind == "cockpit":
            c = self.cockpit
            cockpit = c.Cockpit(self.cockpit_model.parameters(), quantities=c.configuration("economy", track_schedule=c.linear(every)))
        times = self.step_seconds.setdefault(name, [])
        self.call_wall.setdefault(name, [])
        self.call_cpu.setdefault(name, [])
        _sync(self.device)
        started = last = time.perf_counter()
        for s in range(steps):
            if cockpit is not None:
                self._cockpit_step(cockpit, s)
            else:
                self._probe_step(probe, name)
            if self.device.type == "cpu":
                now = time.perf_counter()
                times.append(now - last)
                last = now
        _sync(self.device)
        seconds = time.perf_counter() - started
        costs = probe.costs() if probe is not None else {}
        if probe is not None:
            probe.close()
        return seconds, costs


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["cnn", "mlp"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="torch CPU thread counts (CPU only)")
    parser.add_argument("--steps", type=int, default=50, help="steps per configuration per round (a multiple of 50)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--no-cockpit", action="store_true", help="leave Cockpit out even when it is installed")
    parser.add_argument(
        "--flush-seconds", type=float, default=0.5,
        help="the probe's flush interval; below the default 2 s so that blocks pay for their share of writing",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    cockpit = None if args.no_cockpit or device.type != "cpu" else load_cockpit()
    configs = dict(PROBE_CONFIGS)
    if cockpit is not None:
        configs.update(COCKPIT_CONFIGS)
    thread_counts = args.threads if device.type == "cpu" else [None]
    pairs = list(itertools.product(args.models, thread_counts))
    trainers = {pair: Trainer(pair[0], pair[1], args, device, cockpit) for pair in pairs}
    names = list(configs)
    times = {pair: {n: [] for n in names} for pair in pairs}
    family_seconds: dict[tuple, dict[str, float]] = {pair: {} for pair in pairs}
    sampled_steps = {pair: 0.0 for pair in pairs}
    budget_sampled = {pair: [] for pair in pairs}  # share of every=1 steps the budget let through
    with tempfile.TemporaryDirectory() as tmp:
        for pair, trainer in trainers.items():  # warm-up: first calls, allocator, lazy imports
            trainer.use()
            for name, config in configs.items():
                trainer.block(f"warmup-{name}", config, args.warmup, Path(tmp) / f"{pair[0]}-{pair[1]}-warmup-{name}")
        for r in range(args.rounds):
            for pair in pairs[r % len(pairs) :] + pairs[: r % len(pairs)]:
                trainer = trainers[pair]
                trainer.use()
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    run_dir = Path(tmp) / f"{pair[0]}-{pair[1]}-{name}-{r}"
                    seconds, costs = trainer.block(name, configs[name], args.steps, run_dir)
                    times[pair][name].append(seconds)
                    if name == "every1":
                        sampled_steps[pair] += costs.get("sampled_steps", 0.0)
                        for family, s in costs.items():
                            if family not in ("sampled_steps", "steps", "skipped_for_budget"):
                                family_seconds[pair][family] = family_seconds[pair].get(family, 0.0) + s
                    if name == "every1_budget":
                        budget_sampled[pair].append(costs.get("sampled_steps", 0.0) / max(costs.get("steps", 1.0), 1.0))

    results = []
    for pair in pairs:
        model_name, threads = pair
        trainer = trainers[pair]
        off = times[pair]["off"]
        ratios = {n: [t / o for t, o in zip(times[pair][n], off)] for n in names if n != "off"}
        ratio = {n: _median(v) for n, v in ratios.items()}
        step_ms = {n: 1000 * _median(t) / args.steps for n, t in times[pair].items()}
        single = {n: 1000 * _median(v) for n, v in trainer.step_seconds.items() if v and n in configs}
        unsampled_wall_us = 1e6 * _median(trainer.call_wall.get("ordinary", []))
        unsampled_cpu_us = 1e6 * _median(trainer.call_cpu.get("ordinary", []))
        n_sampled = max(sampled_steps[pair], 1.0)
        families = {f: 1000 * s / n_sampled for f, s in sorted(family_seconds[pair].items(), key=lambda kv: -kv[1])}
        passed = {
            "unsampled_us": unsampled_wall_us <= TARGETS["unsampled_us"],
            "every50": ratio["every50"] <= TARGETS["every50"],
            "every1": ratio["every1"] <= TARGETS["every1"],
            "every1_budget": ratio["every1_budget"] <= TARGETS["every1"],
        }
        results.append({
            "model": model_name,
            "threads": threads if threads else torch.get_num_threads(),
            "plain_step_ms": step_ms["off"],
            "step_ms_median": step_ms,
            "ratio_median": ratio,
            "ratio_per_round": ratios,
            "single_step_ms_median": single,
            "unsampled_step_call_us": {"wall_median": unsampled_wall_us, "thread_cpu_median": unsampled_cpu_us,
                                       "loss_item_thread_cpu_median": 1e6 * _median(trainer.item_cpu)},
            "sampled_step_call_ms": {n: 1000 * _median(trainer.call_wall[n]) for n in ("every1",) if trainer.call_wall.get(n)},
            "budget_sampled_share": _median(budget_sampled[pair]),
            "family_ms_per_sampled_step": families,
            "pass": passed,
        })  # fmt: skip
    report = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "batch": args.batch,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "flush_seconds": args.flush_seconds,
        "cockpit": importlib.metadata.version("cockpit-for-pytorch") if cockpit is not None else None,
        "targets": TARGETS,
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0

    print(f"probe benchmark on {report['device_name']} (torch {torch.__version__}), batch {args.batch}, "
          f"{args.rounds} rounds x {args.steps} steps per configuration, flush every {args.flush_seconds} s"
          + (f", Cockpit {report['cockpit']} economy" if cockpit is not None else ", Cockpit not installed"))  # fmt: skip
    for res in results:
        print(f"\n{res['model']}, {res['threads']} thread(s): plain step {res['plain_step_ms']:.3f} ms, "
              f"unsampled probe.step() {res['unsampled_step_call_us']['wall_median']:.2f} us")
        for name in names[1:]:
            rounds = ", ".join(f"{x:.2f}" for x in res["ratio_per_round"][name])
            print(f"  {name:14s} {res['step_ms_median'][name]:8.3f} ms  ratio {res['ratio_median'][name]:.3f}  (rounds: {rounds})")
        u = res["unsampled_step_call_us"]
        print(f"  unsampled probe.step(): {u['wall_median']:.2f} us wall, {u['thread_cpu_median']:.2f} us thread CPU "
              f"(= {100 * u['wall_median'] / 1000 / res['plain_step_ms']:.2f}% of a plain step; a bare loss.item() "
              f"there: {u['loss_item_thread_cpu_median']:.2f} us)")  # fmt: skip
        print(f"  every1_budget (max_overhead=0.25) sampled {100 * res['budget_sampled_share']:.0f}% of the steps")
        print("  probe cost per sampled step by family (every=1 blocks, ms): "
              + ", ".join(f"{f} {ms:.3f}" for f, ms in res["family_ms_per_sampled_step"].items()))  # fmt: skip
    print("\nsummary (targets: unsampled step() <= 10 us, every50 <= 1.02x, every1 <= 1.3x):")
    for res in results:
        verdict = ", ".join(f"{k} {'ok' if v else 'OVER'}" for k, v in res["pass"].items())
        print(f"  {res['model']} x{res['threads']}: unsampled {res['unsampled_step_call_us']['wall_median']:.1f} us, "
              f"every50 {res['ratio_median']['every50']:.3f}x, every1 {res['ratio_median']['every1']:.3f}x "
              f"(every reading every step {res['ratio_median']['every1_all']:.3f}x), "
              f"every1 with budget {res['ratio_median']['every1_budget']:.3f}x"
              + (f", cockpit50 {res['ratio_median']['cockpit50']:.2f}x, cockpit16 {res['ratio_median']['cockpit16']:.2f}x"
                 if "cockpit50" in res["ratio_median"] else "")
              + f"  [{verdict}]")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
