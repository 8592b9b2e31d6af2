"""The Lightning and Hugging Face callbacks drive the same Probe inside the real trainers, on the CPU."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from advisor.runstore import read_meta, read_readings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.mark.slow
def test_hugging_face_trainer_callback(tmp_path):
    transformers = pytest.importorskip("transformers")
    from advisor.probe.integrations import HFProbeCallback

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    dataset = []
    for i in range(48):
        ids = torch.arange(i, i + 12) % 32  # a learnable pattern: the next token is the current one + 1
        dataset.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()})
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=8, learning_rate=5e-3,
        logging_steps=3, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
        dataloader_num_workers=0, gradient_accumulation_steps=1,
    )  # fmt: skip
    callback = HFProbeCallback(tmp_path / "run", every=2)
    transformers.Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback]).train()

    r = read_readings(tmp_path / "run")
    assert r["loss"][0].tolist() == [1, 2, 3, 4, 5, 6]  # numbered like the Trainer's global_step
    assert np.all(np.isfinite(r["loss"][1]))
    assert r["lr"][0].tolist() == [1, 2, 3, 4, 5, 6]
    assert r["grad/global_norm"][0].tolist() == [2, 4, 6]
    assert r["logits/num_classes"][1][0] == 32
    assert r["logits/accuracy"][0].tolist() == [2, 4, 6]
    assert "act/transformer.h.0.mlp.act/std" in r  # GPT-2's NewGELUActivation, found by name ...
    assert "act/transformer.h.0.mlp.act/zero_fraction" not in r  # ... and read as a GELU: no dead units
    assert read_meta(tmp_path / "run")["activation_kinds"]["transformer.h.0.mlp.act"] == "gelu"
    assert "update/transformer.h.0.mlp.c_fc/ratio" in r
    assert "time/data_wait_share" in r
    assert r["grad_norm"][0].tolist() == [3, 6]  # the Trainer's own logs, at its logging steps
    assert read_meta(tmp_path / "run")["status"] == "closed"


class _LitClassifier:
    """Built inside the test so that importing this module does not import lightning."""

    @staticmethod
    def make():
        import lightning.pytorch as pl

        class LitClassifier(pl.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
                self.head = nn.Linear(16, 3)

            def training_step(self, batch, batch_idx):
                x, y = batch
                z = self.encoder(x)
                logits = self.head(z)
                loss = F.cross_entropy(logits, y)
                return {"loss": loss, "embeddings": z, "logits": logits, "targets": y}

            def validation_step(self, batch, batch_idx):
                x, y = batch
                self.log("val_loss", F.cross_entropy(self.head(self.encoder(x)), y))

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        return LitClassifier()


@pytest.mark.slow
def test_lightning_callback(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from advisor.probe.integrations import LightningProbe

    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    trainer = pl.Trainer(
        max_steps=6, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        val_check_interval=3, limit_val_batches=2, callbacks=[LightningProbe(tmp_path / "run", every=2, representation_every=1)],
    )  # fmt: skip
    trainer.fit(_LitClassifier.make(), loader, loader)

    r = read_readings(tmp_path / "run")
    assert r["loss"][0].tolist() == [0, 1, 2, 3, 4, 5]
    assert r["lr"][1][0] == pytest.approx(0.1)
    assert r["grad/global_norm"][0].tolist() == [0, 2, 4]
    assert r["act/encoder.1/zero_fraction"][0].tolist() == [0, 2, 4]
    assert r["embeddings/effective_rank"][0].tolist() == [0, 2, 4]  # from training_step's outputs
    assert r["logits/accuracy"][0].tolist() == [0, 2, 4]
    assert r["val_loss"][0].tolist() == [2, 5]
    assert read_meta(tmp_path / "run")["model"]["class"] == "LitClassifier"


def test_hugging_face_causal_logits_are_shifted_against_their_labels(tmp_path):
    transformers = pytest.importorskip("transformers")
    from advisor.probe import Probe
    from advisor.probe.integrations import HFProbeCallback, _is_causal_lm

    assert _is_causal_lm(transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16)))
    assert not _is_causal_lm(nn.Linear(2, 2))
    callback = HFProbeCallback(tmp_path / "run", every=1)
    callback.probe, callback._causal = Probe(None, run=tmp_path / "run", every=1), True
    labels = torch.tensor([[1, 2, 3, 4]])
    logits = F.one_hot(torch.tensor([[2, 3, 4, 0]]), 5).float() * 10  # position t predicts token t+1
    module = nn.Module()
    with torch.enable_grad():
        callback._read_output(module, (), {"labels": labels}, {"loss": torch.tensor(0.5), "logits": logits})
    callback.probe.step(step=0)
    callback.probe.close()
    r = read_readings(tmp_path / "run")
    assert r["logits/accuracy"][1].tolist() == [1.0]  # 3 of 3 shifted positions right; unshifted: 0
