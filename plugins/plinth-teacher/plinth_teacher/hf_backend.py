"""`hf` chat back end: a local transformers model, batched generation with its chat template.

Used for the teacher when it runs in-process and for the *student* whose own answers become KTO data.
Loads through `plinth.lm.hf` (aliases such as "smollm2-135m-instruct", offline GGUF conversion).

Its cache identity is the model's *content*, not its path: a hash of the folder's weight/config/tokenizer files,
the chat template actually applied, the system prompt and the resolved dtype. A retrained `sft.model` lands at the
same path, and must not be answered from the old model's cached samples.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field

from plinth.lm.chat import ChatBackend, ChatError, Messages
from plinth.components import ComponentConfig


class HFChatConfig(ComponentConfig):
    model: str = Field(..., description="model folder, or an alias/hub id that plinth.lm.hf.resolve_model knows")
    batch_size: int = Field(8, ge=1, description="conversations per generate() call")
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="weights dtype (auto: by hardware)")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    chat_template: str | None = Field(None, description="override the tokenizer's chat template: a name plinth.lm.hf "
                                      "knows ('chatml', 'qwen2') or a Jinja template")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (torch.set_num_threads); on a busy "
                                "CPU machine 1 avoids thread oversubscription, which can slow generation ~10x")
    system_prompt: str | None = Field(None, description="a system message put before every conversation without one")


def load_model_and_tokenizer(name: str, dtype: str = "auto", device: str = "auto", chat_template: str | None = None):
    """plinth.lm.hf's loader (aliases such as "smollm2-135m-instruct", offline GGUF conversion, precision rules)."""
    from plinth.lm.hf import load_model_and_tokenizer as load

    model, tok = load(name, dtype=dtype, device=device, chat_template=chat_template)
    return model.eval(), tok


class HFChat(ChatBackend):
    """Batched chat generation with a local causal LM (left padding, chat template, n samples per prompt)."""

    Config = HFChatConfig

    def __init__(self, config: HFChatConfig | dict[str, Any] | None = None):
        super().__init__(config)
        self._model = None
        self._tok = None
        self._identity: str | None = None

    @property
    def identity(self) -> str:
        """`hf:<model>:<sha256 of model content, chat template, system prompt, dtype>` (computed once)."""
        if self._identity is None:
            from plinth.lm.hf import choose_precision, load_tokenizer, model_fingerprint, resolve_model

            c = self.config
            try:
                path = resolve_model(c.model)
                template = load_tokenizer(path, c.chat_template).chat_template
                weights = model_fingerprint(path)
            except Exception as exc:  # noqa: BLE001 - reported like a loading failure, model named
                raise ChatError(f"hf back end: cannot read model {c.model!r}: {type(exc).__name__}: {exc}",
                                backend=f"hf ({c.model})") from exc
            blob = json.dumps({"weights": weights, "chat_template": template, "system_prompt": c.system_prompt,
                               "dtype": choose_precision(c.dtype)}, sort_keys=True, ensure_ascii=False)
            self._identity = f"hf:{c.model}:{hashlib.sha256(blob.encode()).hexdigest()}"
        return self._identity

    def _load(self) -> None:
        if self._model is None:
            if self.config.threads is not None:
                import torch

                torch.set_num_threads(self.config.threads)
            try:
                self._model, self._tok = load_model_and_tokenizer(
                    self.config.model, self.config.dtype, self.config.device, self.config.chat_template
                )
            except Exception as exc:  # noqa: BLE001 - any loading failure is reported with the model named
                raise ChatError(
                    f"hf back end: cannot load model {self.config.model!r}: {type(exc).__name__}: {exc}",
                    backend=f"hf ({self.config.model})",
                ) from exc
            self._tok.padding_side = "left"
            if self._tok.pad_token is None:
                self._tok.pad_token = self._tok.eos_token

    def _prompt(self, messages: Messages) -> str:
        if self.config.system_prompt and (not messages or messages[0].get("role") != "system"):
            messages = [{"role": "system", "content": self.config.system_prompt}, *messages]
        return self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def chat(
        self,
        conversations: list[Messages],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int | None = None,
    ) -> list[list[str]]:
        import torch

        self._load()
        model, tok = self._model, self._tok
        out: list[list[str]] = []
        bs = self.config.batch_size
        for start in range(0, len(conversations), bs):
            batch = conversations[start : start + bs]
            texts = [self._prompt(m) for m in batch]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "num_return_sequences": n,
                                      "pad_token_id": tok.pad_token_id}
            if temperature > 0:
                kwargs.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if seed is not None:
                torch.manual_seed(seed + start)  # batch-dependent, so the cache key's seed reproduces the answer
            try:
                with torch.no_grad():
                    gen = model.generate(**enc, **kwargs)
            except Exception as exc:  # noqa: BLE001
                raise ChatError(
                    f"hf back end ({self.config.model}): generate failed: {type(exc).__name__}: {exc}",
                    backend=f"hf ({self.config.model})",
                    partial={i: s for i, s in enumerate(out)},
                ) from exc
            new = gen[:, enc["input_ids"].shape[1] :]
            decoded = tok.batch_decode(new, skip_special_tokens=True)
            for i in range(len(batch)):
                out.append([d.strip() for d in decoded[i * n : (i + 1) * n]])
        return out

    def close(self) -> None:
        self._model = None
        self._tok = None
        self._identity = None
