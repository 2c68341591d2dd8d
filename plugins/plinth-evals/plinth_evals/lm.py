"""A model under evaluation: load once, then batched greedy generation and batched log-likelihoods.

Batching is the point: on a CPU a forward over 32 prompts costs little more than over one, so evaluation of
hundreds of prompts is several times faster than one-at-a-time (see benchmarks/eval_throughput.py).
Prompts are sorted by length before batching so padding stays small; results come back in input order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from plinth import ConfigError

Messages = list[dict[str, str]]


def load_model_and_tokenizer(path: Path, dtype: str = "auto", device: str = "auto") -> tuple[Any, Any]:
    """plinth.lm.hf's loader (aliases, precision rules); errors name the folder."""
    from plinth.lm.hf import load_model_and_tokenizer as core_load

    try:
        model, tok = core_load(path, dtype=dtype, device=device)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any load failure is a bad model folder for the user
        raise ConfigError(f"model folder {path} does not load: {type(exc).__name__}: {exc}") from exc
    model.eval()
    return model, tok


class EvalModel:
    """A loaded causal LM with the two operations evaluators need."""

    def __init__(self, path: Path, dtype: str = "auto", device: str = "auto", batch_size: int = 16):
        self.path = Path(path)
        self.model, self.tok = load_model_and_tokenizer(self.path, dtype=dtype, device=device)
        self.batch_size = max(1, batch_size)
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def format_chat(self, messages: Messages) -> str:
        if not getattr(self.tok, "chat_template", None):
            raise ConfigError(f"model {self.path} has no chat template; set `chat_template = false`")
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    # -- generation -------------------------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        num_samples: int = 1,
        seed: int = 0,
        progress: Any = None,
    ) -> list[list[str]]:
        """`num_samples` completions per prompt (greedy when temperature == 0), cut at the first stop string."""
        import torch

        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        out: list[list[str]] = [[] for _ in prompts]
        self.tok.padding_side = "left"
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": self.tok.pad_token_id,
            "eos_token_id": self.tok.eos_token_id,
        }
        if temperature > 0:
            gen_kwargs.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        else:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        torch.manual_seed(seed)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = [prompts[i] for i in idx]
            enc = self.tok(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            with torch.inference_mode():
                gen = self.model.generate(**enc, num_return_sequences=num_samples, **gen_kwargs)
            new = gen[:, enc["input_ids"].shape[1] :]
            texts = self.tok.batch_decode(new, skip_special_tokens=True)
            for j, i in enumerate(idx):
                for s in range(num_samples):
                    out[i].append(cut_at_stop(texts[j * num_samples + s], stop))
            if progress is not None:
                progress.update(len(idx))
        return out

    # -- scoring ----------------------------------------------------------------------------------------
    def loglikelihood(self, pairs: Sequence[tuple[str, str]], progress: Any = None) -> list[tuple[float, int, bool]]:
        """For each (context, continuation): sum log p(continuation | context), its token count, and whether
        greedy decoding would have produced it exactly."""
        encoded = []
        for ctx_text, cont in pairs:
            ctx_ids = self.tok(ctx_text, add_special_tokens=False)["input_ids"]
            full = self.tok(ctx_text + cont, add_special_tokens=False)["input_ids"]
            n_ctx = len(ctx_ids)
            # tokenizers may merge across the boundary; keep at least one continuation token
            if full[:n_ctx] != ctx_ids or n_ctx >= len(full):
                cont_ids = self.tok(cont, add_special_tokens=False)["input_ids"]
                full, n_ctx = ctx_ids + cont_ids, len(ctx_ids)
            if n_ctx == 0:  # nothing to condition on: start from the BOS/EOS token
                start = self.tok.bos_token_id if self.tok.bos_token_id is not None else self.tok.eos_token_id
                full, n_ctx = [start] + full, 1
            encoded.append((full, n_ctx))
        return self.score_ids(encoded, progress=progress)

    def score_ids(self, encoded: Sequence[tuple[list[int], int]], progress: Any = None) -> list[tuple[float, int, bool]]:
        """Like `loglikelihood` on token ids: each item is (ids, n_ctx); tokens from n_ctx on are scored."""
        import torch

        results: list[tuple[float, int, bool]] = [(0.0, 0, False)] * len(encoded)
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
        pad = self.tok.pad_token_id
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = max(len(encoded[i][0]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                seq = encoded[i][0]
                ids[r, : len(seq)] = torch.tensor(seq)
                mask[r, : len(seq)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
            for r, i in enumerate(idx):
                seq, n_ctx = encoded[i]
                targets = torch.tensor(seq[n_ctx:])
                lp = logprobs[r, n_ctx - 1 : len(seq) - 1]
                total = lp.gather(1, targets[:, None]).sum().item()
                greedy = bool((lp.argmax(-1) == targets).all().item())
                results[i] = (total, len(targets), greedy)
            if progress is not None:
                progress.update(len(idx))
        return results

    def close(self) -> None:
        del self.model


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Text up to the first stop string (the stop string itself removed)."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]
