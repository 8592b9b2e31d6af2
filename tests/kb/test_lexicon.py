"""The domain lexicon: logger keys, abbreviations and method names expand to the documents' words."""

from __future__ import annotations

import sqlite3

import pytest

from kb.lexicon import expand_text, expansions, lexicon


@pytest.mark.parametrize(
    "text, words",
    [
        ("train/grad_norm 3.1e4", "gradient norm"),  # W&B key
        ("val_loss_epoch climbing", "validation"),  # Lightning key
        ("eval_loss 2.9", "validation"),  # HF Trainer key
        ("Loss/train", None),  # TensorBoard tag: nothing to add, nothing invented
        ("wd=0 ema_tau=0.99", "weight decay"),
        ("SimSiam run", "stop-gradient"),
        ("Barlow Twins", "cross-correlation"),
        ("GradScaler", "loss scale"),
        ("FSDP", "sharded"),
        ("LoRA", "low-rank"),
        ("DPOTrainer", "preference"),
        ("train/ent_mean", "entropy"),  # SSL scalars as training scripts name them
        ("knn_top1", "k-NN"),
        ("loss_scale halved", "loss scale"),  # DeepSpeed / AMP log key
        ("dino/teacher_temp", "teacher temperature"),
        ("RandomResizedCrop + ColorJitter(0.8)", "augmentation"),  # torchvision transform names
        ("stronger solarization", "augmentation"),
        ("holdout accuracy", "validation"),
        ("covariate shift at test time", "out-of-distribution"),
        ("the loss zigzags", "oscillates"),
        ("KAF layer", "kernel activation function"),
        ("max_grad_norm=1.0", "gradient clipping"),  # HF TrainingArguments
        ("gradient_accumulation_steps: 8", "gradient accumulation"),
        ("AdamW, OneCycleLR", "learning rate scheduler"),
        ("linear eval on ImageNet", "linear probe"),
        ("dimensional collapse", "representation rank"),
    ],
)
def test_logger_keys_and_methods_expand(text, words):
    out = expand_text(text)
    assert out.startswith(text)  # the user's text is kept as written
    if words is None:
        assert out == text
    else:
        assert words in out.split("\n", 1)[1]


def test_required_method_and_framework_terms_are_in_the_lexicon():
    terms = lexicon()[0]
    for form in ["simclr", "byol", "simsiam", "dino", "vicreg", "barlow twins", "mae", "jepa", "vq-vae", "amp",
                 "gradscaler", "ddp", "fsdp", "deepspeed", "lora", "trl", "dpo", "grpo"]:
        assert form in terms, form


def test_a_visualisation_named_after_gradients_is_not_a_gradient_symptom():
    words = " ".join(expansions("Grad-CAM maps look wrong on my classifier"))
    assert "gradient" not in words and "saliency" in words


def test_plain_text_is_left_alone():
    assert expand_text("the model is fine") == "the model is fine"


def test_the_index_carries_the_lexicon_words(built_kb_path):
    """kb build indexes each entry with expand_text, so a query in logger shorthand meets the entry's words."""
    con = sqlite3.connect(built_kb_path)
    try:
        text = con.execute("SELECT search_text FROM entries WHERE id = 'catalog/092-model-fails-after-moving-to-mixed-precision'").fetchone()[0]
    finally:
        con.close()
    assert "GradScaler loss scale" in text


def test_no_evaluation_query_is_copied_into_the_lexicon_or_the_search_code():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sets = [root / "benchmarks" / "queries" / "queries.jsonl", root.parent / "shared" / "eval" / "queries_dev.jsonl"]
    queries = [json.loads(line)["q"].lower() for p in sets if p.exists() for line in p.read_text().splitlines() if line.strip()]
    assert len(queries) >= 200
    corpus = "\n".join((root / "kb" / name).read_text().lower() for name in ("lexicon.toml", "lexicon.py", "evidence.py", "search.py"))
    assert [q for q in queries if q in corpus] == []
