"""Thin callbacks that drive a Probe from PyTorch Lightning and from the Hugging Face Trainer.

    from advisor.probe.integrations import LightningProbe, HFProbeCallback
    trainer = lightning.Trainer(callbacks=[LightningProbe("runs/exp1", every=50)])
    trainer = transformers.Trainer(..., callbacks=[HFProbeCallback("runs/exp1", every=50)])

Both call probe.step() where the Probe expects it: after backward (gradient clipping included),
before the optimizer changes the weights. The classes are built on first access so that importing
this module (or the probe) never imports lightning or transformers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from advisor.probe.probe import Probe

# Keys of a LightningModule's training_step output that the probe reads (besides "loss").
_PROBE_KEYS = ("embeddings", "views", "logits", "targets", "labels", "codes", "attention")
# Hugging Face log keys renamed to the probe's names; everything else keeps its name.
_HF_RENAMES = {"eval_loss": "val_loss"}
# Not series, or already recorded every step by probe.step (the learning rate).
_HF_SKIP = {"epoch", "total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second", "step", "learning_rate"}


def _first_lr(optimizer: Any) -> float | None:
    try:
        return float(optimizer.param_groups[0]["lr"])
    except (AttributeError, IndexError, KeyError, TypeError):
        return None


def _is_causal_lm(model: Any) -> bool:
    """Whether logits at position t predict the label at t+1 (GPT-style), so they must be shifted."""
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        return False  # seq2seq models align decoder logits with their labels themselves
    name = type(model).__name__
    if "CausalLM" in name or name.endswith("LMHeadModel"):
        return True
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        return name in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    except Exception:
        return False


def _lightning_base():
    try:
        import lightning.pytorch as pl
    except ImportError:
        import pytorch_lightning as pl
    return pl.Callback


def _build_lightning_probe(base: type) -> type:
    class LightningProbe(base):
        """A Lightning Callback that runs a Probe on the LightningModule.

        The loss comes from on_before_backward (averaged over accumulated micro-batches); tensors the
        training_step returns under the probe's names (embeddings, logits, targets, ...) are read at
        batch end; logged validation metrics are recorded at the end of each validation run. The
        callback's `.probe` is the Probe itself, e.g. for `probe.observe(...)` from inside training_step.
        """

        def __init__(self, run: str | Path = "runs/probe", every: int = 50, **probe_kwargs: Any) -> None:
            super().__init__()
            self.run, self.every, self.probe_kwargs = run, every, probe_kwargs
            self.probe: Probe | None = None
            self._losses: list[torch.Tensor] = []
            self._stepped_batch: int | None = None
            self._batch_idx: int | None = None
            self._last_batch_end: float | None = None
            self._data_time: float | None = None

        def on_fit_start(self, trainer, pl_module) -> None:
            if self.probe is None:
                self.probe = Probe(pl_module, run=self.run, every=self.every, first_step=trainer.global_step, **self.probe_kwargs)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            now = time.perf_counter()
            self._batch_idx = batch_idx
            if self._last_batch_end is not None:
                self._data_time = (self._data_time or 0.0) + now - self._last_batch_end

        def on_before_backward(self, trainer, pl_module, loss) -> None:
            if isinstance(loss, torch.Tensor):
                self._losses.append(loss.detach())

        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
            if self.probe is None or self._stepped_batch == self._batch_idx:
                return  # several optimizers step on one batch: one probe step per batch
            self._stepped_batch = self._batch_idx
            losses, self._losses = self._losses, []
            loss = torch.stack(losses).mean() if losses else None
            data_time, self._data_time = self._data_time, None
            self.probe.step(step=trainer.global_step, loss=loss, lr=_first_lr(optimizer), data_time=data_time)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self._last_batch_end = time.perf_counter()
            if self.probe is None or self._stepped_batch != batch_idx or not isinstance(outputs, dict):
                return
            named = {k: v for k, v in outputs.items() if k in _PROBE_KEYS or k in self.probe.embedding_names}
            if named:
                self.probe.log(**named)

        def on_validation_end(self, trainer, pl_module) -> None:
            if self.probe is None or trainer.sanity_checking:
                return
            metrics = {
                k: v for k, v in trainer.callback_metrics.items() if "val" in k and isinstance(v, (torch.Tensor, float, int))
            }
            if metrics:
                self.probe.log(**metrics)  # filed under the last training step

        def on_fit_end(self, trainer, pl_module) -> None:
            self._close()

        def on_exception(self, trainer, pl_module, exception) -> None:
            self._close()

        def _close(self) -> None:
            if self.probe is not None:
                self.probe.close()

    return LightningProbe


def _build_hf_callback() -> type:
    from transformers import TrainerCallback

    class HFProbeCallback(TrainerCallback):
        """A Hugging Face TrainerCallback that runs a Probe on the Trainer's model.

        The loss (per optimizer step, averaged over accumulated micro-batches) and, on sampled steps,
        the logits against the labels are read by a forward hook on the model; the Trainer's own logs
        (learning rate, eval_loss -> val_loss, eval metrics) are recorded when it logs them. Steps are
        numbered like the Trainer's global_step, so readings line up with trainer_state.json.
        """

        def __init__(self, run: str | Path = "runs/probe", every: int = 50, **probe_kwargs: Any) -> None:
            self.run, self.every, self.probe_kwargs = run, every, probe_kwargs
            self.probe: Probe | None = None
            self._model = None
            self._hook = None
            self._losses: list[torch.Tensor] = []
            self._loss_from_hook = False
            self._causal = False
            self._idle_since: float | None = None
            self._data_time: float | None = None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if self.probe is not None or model is None:
                return
            self._model = model
            self.probe = Probe(model, run=self.run, every=self.every, first_step=state.global_step + 1, **self.probe_kwargs)
            self._causal = _is_causal_lm(model)
            self._hook = model.register_forward_hook(self._read_output, with_kwargs=True)

        def _read_output(self, module, args, kwargs, output) -> None:
            if self.probe is None or not module.training or not torch.is_grad_enabled():
                return
            try:
                loss = output.get("loss") if hasattr(output, "get") else None
                if isinstance(loss, torch.Tensor):
                    self._losses.append(loss.detach())
                    self._loss_from_hook = True
                if not self.probe.will_sample:
                    return
                logits = output.get("logits") if hasattr(output, "get") else None
                labels = kwargs.get("labels")
                if not isinstance(logits, torch.Tensor):
                    return
                if isinstance(labels, torch.Tensor) and labels.shape == logits.shape[:-1]:
                    if self._causal and logits.ndim == 3:  # position t predicts token t+1
                        logits, labels = logits[:, :-1], labels[:, 1:]
                    self.probe.observe(logits=logits, targets=labels)
                else:
                    self.probe.observe(logits=logits)
            except Exception:  # reading outputs must never break the forward pass
                pass

        def on_step_begin(self, args, state, control, **kwargs):
            if self._idle_since is not None:
                self._data_time = time.perf_counter() - self._idle_since

        def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            if self.probe is None:
                return
            losses, self._losses = self._losses, []
            loss = torch.stack(losses).mean() if losses else None
            data_time, self._data_time = self._data_time, None
            self.probe.step(step=state.global_step + 1, loss=loss, lr=_first_lr(optimizer), data_time=data_time)

        def on_step_end(self, args, state, control, **kwargs):
            self._idle_since = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.probe is not None and logs:
                named = {}
                for key, value in logs.items():
                    if key in _HF_SKIP or not isinstance(value, (int, float)) or isinstance(value, bool):
                        continue
                    if key == "loss" and self._loss_from_hook:  # the hook already records it every step
                        continue
                    named[_HF_RENAMES.get(key, key)] = value
                if named:
                    self.probe.log(step=state.global_step, **named)
            self._idle_since = time.perf_counter()  # logging/evaluation is not data waiting

        def on_train_end(self, args, state, control, **kwargs):
            if self._hook is not None:
                self._hook.remove()
                self._hook = None
            if self.probe is not None:
                self.probe.close()

    return HFProbeCallback


_BUILDERS = {
    "LightningProbe": lambda: _build_lightning_probe(_lightning_base()),
    "HFProbeCallback": _build_hf_callback,
}
_BUILT: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    if name in _BUILDERS:
        if name not in _BUILT:
            _BUILT[name] = _BUILDERS[name]()
        return _BUILT[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LightningProbe", "HFProbeCallback"]
