"""Runs written by the tracker libraries themselves (and the W&B UI's chart export), for the reader tests."""

from __future__ import annotations

import os
import time
from pathlib import Path



def wandb_run(base: Path, name: str, losses: list[float], extra: dict | None = None) -> Path:
    """An offline run made by wandb itself; returns its run directory."""
    import wandb

    run = wandb.init(mode="offline", dir=str(base), project="advisor-test", name=name,
                     config={"max_grad_norm": 1.0, "lr": 1e-3}, settings=wandb.Settings(silent=True, console="off"))
    for i, loss in enumerate(losses):
        row = {"train/loss": loss, "lr": 1e-3}
        if i % 10 == 9:
            row["val/loss"] = loss * 1.1
        if i == 5 and extra:
            row.update(extra)
        run.log(row)
    run_dir = Path(run.dir).parent  # run.dir is <run dir>/files
    run.finish()
    _wait_for_exit_record(run_dir)
    return run_dir


def _wait_for_exit_record(run_dir: Path, timeout: float = 60.0) -> None:
    """wandb's core process may still be writing the transaction log when finish() returns."""
    from advisor.readers import wandb_runs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = list(run_dir.glob("run-*.wandb"))
        if logs and any(r.WhichOneof("record_type") == "exit" for r in wandb_runs._records(logs[0], problems=[])):
            return
        time.sleep(0.1)
    raise TimeoutError(f"wandb did not finish writing {run_dir}")


def export_csv(path: Path) -> Path:
    """The columns the W&B UI writes when a chart is exported as CSV (several runs, sampled bounds)."""
    head = ['"Step"']
    for run in ("sweep-7 lr=3e-4", "sweep-8 lr=1e-3"):
        head += [f'"{run} - train/loss"', f'"{run} - train/loss__MIN"', f'"{run} - train/loss__MAX"']
    lines = [",".join(head)]
    for step in range(0, 500, 10):
        a = 2.0 / (1 + step / 50)
        b = 1.5 / (1 + step / 100) if step < 300 else ""
        cells = [str(step), f"{a}", f"{a * 0.9}", f"{a * 1.1}"]
        cells += [f"{b}", f"{b * 0.9}" if b != "" else "", f"{b * 1.1}" if b != "" else ""]
        lines.append(",".join(f'"{c}"' for c in cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def log_mlflow_runs(mlflow) -> None:
    mlflow.set_experiment("jepa")
    with mlflow.start_run(run_name="baseline"):
        mlflow.log_param("max_grad_norm", 0.5)
        for step in range(30):
            mlflow.log_metric("train/loss", 2.0 / (step + 1), step=step)
            mlflow.log_metric("val_loss", float("nan") if step == 12 else 2.2 / (step + 1), step=step)
        for v in (3.0, 2.0, 1.0):
            mlflow.log_metric("throughput", v)  # no step: all at step 0
    with mlflow.start_run(run_name="bigger-lr"):
        for step in range(20):
            mlflow.log_metric("train/loss", 1.0 + step, step=step)


def mlflow_stores(base: Path) -> tuple[Path, Path]:
    """The same two runs in an MLflow file store and in a SQLite tracking database."""
    import mlflow

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        mlflow.set_tracking_uri((base / "mlruns").as_uri())
        log_mlflow_runs(mlflow)
        db = f"sqlite:///{base / 'mlflow.db'}"
        mlflow.set_tracking_uri(db)
        mlflow.set_registry_uri(db)
        log_mlflow_runs(mlflow)
    finally:
        mlflow.set_tracking_uri("")
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
    return base / "mlruns", base / "mlflow.db"


def tensorboard_runs(logdir: Path, names=("lr_1e-3", "lr_3e-4", "lr_1e-4")) -> Path:
    """Several runs in one log directory, written by torch's SummaryWriter; the last is the newest."""
    from torch.utils.tensorboard import SummaryWriter

    for i, name in enumerate(names):
        with SummaryWriter(str(logdir / name)) as w:
            for step in range(20):
                w.add_scalar("train/loss", (i + 1) / (step + 1), step)
        for f in (logdir / name).iterdir():
            os.utime(f, (3_000_000 + i, 3_000_000 + i))
    return logdir
