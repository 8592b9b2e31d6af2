"""The `transformers` backend on a tiny random-weight GPT-2 built here: a byte-level BPE tokenizer trained
with `tokenizers` and a 2-layer model, saved to a temporary directory; nothing is downloaded."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from advisor.explain import explain, stream_explain  # noqa: E402
from advisor.explain.grounding import SYSTEM_PROMPT, build_grounding, build_messages, prompt_text  # noqa: E402
from advisor.models import AdvisorError, Diagnosis, Evidence, Signal, Suggestion  # noqa: E402
from kb.models import Provenance  # noqa: E402

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
def nan_run() -> Diagnosis:
    nan = Signal(kind="nan_inf", metric="loss", start=1200, end=1500, severity="high", summary="loss became NaN at step 1200")
    return Diagnosis(path="runs/nan/metrics.csv", signals=[nan], suggestions=[Suggestion(
        id="guide/001-loss-becomes-nan", source="guide", title="Loss becomes NaN", score=0.9, severity="high",
        evidence=[Evidence.from_signal(nan)], steps=["Reduce learning rate by 10x", "Add gradient clipping"],
        provenance=Provenance(file="guide-troubleshooting.md", start_line=28, end_line=60), matched_by=["link"])])


def build_tiny_model(directory, *, chat_template: str | None = None, context: int = 4096) -> str:
    """A random-weight GPT-2 and a BPE tokenizer trained on the explain prompt, saved to `directory`."""
    try:
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    except ImportError as exc:
        pytest.skip(f"transformers/tokenizers not available: {exc}")
    try:
        corpus = [prompt_text(build_messages(build_grounding(nan_run())))] * 4 + [SYSTEM_PROMPT]
        bpe = Tokenizer(models.BPE(unk_token=None))
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        bpe.train_from_iterator(corpus, trainers.BpeTrainer(
            vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False))
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                            pad_token="<|endoftext|>")
        if chat_template:
            tokenizer.chat_template = chat_template
        eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        torch.manual_seed(0)
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=context, n_embd=32, n_layer=2, n_head=2,
                            bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
        model = GPT2LMHeadModel(config)
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
    except Exception as exc:  # any version mismatch in building the fixture is a skip, not a failure
        pytest.skip(f"cannot build a tiny local model here: {type(exc).__name__}: {exc}")
    return str(directory)


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory) -> str:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> str:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-gpt2-chat"), chat_template=CHAT_TEMPLATE)


def test_backend_generates_text_and_streams_the_same_text(plain_model):
    from advisor.explain.backends.local_transformers import TransformersBackend

    backend = TransformersBackend(plain_model, device="cpu", max_tokens=12)
    messages = build_messages(build_grounding(nan_run()))
    text = backend.complete(messages)
    assert isinstance(text, str) and text.strip()
    assert "".join(backend.stream(messages)) == text, "greedy decoding: the stream is the same answer"


def test_explain_checks_the_local_model_answer(plain_model):
    e = explain(nan_run(), backend="transformers", model_path=plain_model, device="cpu", max_tokens=12)
    assert e.backend == "transformers"
    # A random model cites nothing: the checker sends the answer back to the composer, and says so.
    assert e.fallback and e.text.startswith("Note: the transformers model's answer")
    assert e.citations == ["guide/001-loss-becomes-nan"] and "[guide/001-loss-becomes-nan]" in e.text
    stream = stream_explain(nan_run(), backend="transformers", model=plain_model, device="cpu", max_tokens=8)
    pieces = list(stream)
    assert pieces and stream.result.fallback


def test_chat_template_is_used_when_the_tokenizer_has_one(chat_model):
    from advisor.explain.backends.local_transformers import TransformersBackend, load_model

    backend = TransformersBackend(chat_model, device="cpu", max_tokens=8)
    messages = build_messages(build_grounding(nan_run()))
    loaded = load_model(chat_model, "cpu")
    prompt = loaded.tokenizer.decode(backend._inputs(loaded, messages)["input_ids"][0])
    assert prompt.startswith("<|system|>\n") and prompt.endswith("<|assistant|>\n")
    assert backend.complete(messages).strip()


def test_prompt_longer_than_the_model_context_is_a_clear_error(tmp_path):
    short = build_tiny_model(tmp_path / "short", context=64)
    with pytest.raises(AdvisorError, match=r"takes at most 64; lower max_tokens or top"):
        explain(nan_run(), backend="transformers", model_path=short, device="cpu", max_tokens=8)


def test_missing_or_broken_model_directories(tmp_path):
    with pytest.raises(AdvisorError, match="does not exist"):
        explain(nan_run(), backend="transformers", model_path=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdvisorError, match="Cannot load a causal language model from"):
        explain(nan_run(), backend="transformers", model_path=str(tmp_path / "empty"), device="cpu")
