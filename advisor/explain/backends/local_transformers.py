"""The `transformers` backend: a local chat model from a directory, run in this process.

Loaded with AutoTokenizer / AutoModelForCausalLM and local_files_only=True, so it never downloads.
The prompt goes through the tokenizer's chat template when it has one, else a plain
"System: / User: / Assistant:" transcript. Generation is greedy unless a temperature is set, so the
same diagnosis gives the same text. The last model loaded stays in memory for the next call (a TUI
asks again and again).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from advisor.explain.options import ENV_MODEL_PATH, Settings, config_file
from advisor.models import AdvisorError


@dataclass
class LoadedModel:
    tokenizer: Any
    model: Any
    device: str
    context: int | None  # longest input + output the model takes, when its config says


def _import_transformers():
    try:
        import torch
        import transformers
    except ImportError:
        raise AdvisorError("The transformers backend needs torch and transformers: pip install transformers.") from None
    return torch, transformers


@lru_cache(maxsize=1)
def load_model(path: str, device: str | None) -> LoadedModel:
    torch, transformers = _import_transformers()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    # Load reports and progress bars would land in the user's terminal or draw over a TUI.
    hf_logging = transformers.utils.logging
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdvisorError(f"Cannot load a causal language model from {path}: {first_line[:200]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    try:
        model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise AdvisorError(f"Cannot put the model from {path} on device {device!r}: {str(exc).splitlines()[0][:200]}") from None
    model.eval()
    config = model.config
    context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return LoadedModel(tokenizer=tokenizer, model=model, device=device, context=context)


class TransformersBackend:
    name = "transformers"

    def __init__(self, model_path: str, *, device: str | None = None, max_tokens: int = 700,
                 temperature: float | None = None, timeout: float | None = None):
        if not model_path:
            raise AdvisorError(
                "The transformers backend needs a local model directory: pass model_path (--model), "
                f"set {ENV_MODEL_PATH}, or set model_path in the [llm] section of {config_file()}."
            )
        path = Path(model_path).expanduser()
        if not path.is_dir():
            raise AdvisorError(f"The model directory {path} does not exist.")
        self.model_path = str(path)
        self.model = self.model_path
        self.device = device
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout = timeout

    @classmethod
    def from_settings(cls, s: Settings) -> "TransformersBackend":
        # --model doubles as the path for this backend when it names a directory.
        path = s.model_path or (s.model if s.model and Path(s.model).expanduser().is_dir() else None)
        return cls(path or "", device=s.device, max_tokens=s.max_tokens, temperature=s.temperature, timeout=s.timeout)

    def __repr__(self) -> str:
        return f"TransformersBackend(model_path={self.model_path!r}, device={self.device!r})"

    def complete(self, messages: list[dict[str, str]]) -> str:
        loaded = load_model(self.model_path, self.device)
        inputs = self._inputs(loaded, messages)
        torch, _ = _import_transformers()
        with torch.inference_mode():
            output = loaded.model.generate(**inputs, **self._generate_options(loaded))
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        return loaded.tokenizer.decode(new_tokens, skip_special_tokens=True)

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        _, transformers = _import_transformers()
        loaded = load_model(self.model_path, self.device)
        inputs = self._inputs(loaded, messages)
        streamer = transformers.TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, timeout=self.timeout,
                                                     skip_special_tokens=True)
        failure: list[BaseException] = []

        def generate() -> None:
            torch, _ = _import_transformers()
            try:
                with torch.inference_mode():
                    loaded.model.generate(**inputs, **self._generate_options(loaded), streamer=streamer)
            except BaseException as exc:  # handed to the reading thread, which raises it
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=generate, name="train-advisor-explain-generate", daemon=True)
        worker.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        except queue.Empty:
            raise AdvisorError(f"The local model at {self.model_path} produced nothing for {self.timeout:g} s.") from None
        worker.join()
        if failure:
            raise AdvisorError(f"The local model at {self.model_path} failed while generating: {type(failure[0]).__name__}: "
                               f"{str(failure[0]).splitlines()[0][:200] if str(failure[0]) else ''}")

    # -- helpers ---------------------------------------------------------------------------------

    def _inputs(self, loaded: LoadedModel, messages: list[dict[str, str]]) -> dict[str, Any]:
        tokenizer = loaded.tokenizer
        if getattr(tokenizer, "chat_template", None):
            encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True, return_tensors="pt")
        else:
            encoded = tokenizer(plain_prompt(messages), return_tensors="pt")
        inputs = {k: v.to(loaded.device) for k, v in encoded.items() if k in ("input_ids", "attention_mask")}
        length = inputs["input_ids"].shape[1]
        if loaded.context and length + self.max_tokens > loaded.context:
            raise AdvisorError(
                f"The prompt is {length} tokens and the answer may take {self.max_tokens}, but the model at "
                f"{self.model_path} takes at most {loaded.context}; lower max_tokens or top, or use a model with a longer context."
            )
        return inputs

    def _generate_options(self, loaded: LoadedModel) -> dict[str, Any]:
        tokenizer = loaded.tokenizer
        options: dict[str, Any] = {"max_new_tokens": self.max_tokens}
        if self.temperature:
            options.update(do_sample=True, temperature=float(self.temperature))
        else:
            options.update(do_sample=False)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is not None:
            options["pad_token_id"] = pad
        return options


def plain_prompt(messages: list[dict[str, str]]) -> str:
    """A transcript for a tokenizer without a chat template; the model continues after "Assistant:"."""
    parts = [f"{m.get('role', 'user').capitalize()}: {m.get('content', '')}" for m in messages]
    return "\n\n".join(parts) + "\n\nAssistant:"
