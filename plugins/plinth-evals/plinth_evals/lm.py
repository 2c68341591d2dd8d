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
        """Like `loglikelihood` on token ids: each item is (ids, n_ctx); tokens from n_ctx on are scored.

        Only the scored positions are turned into log-probabilities (`target_logprobs`), and where the model
        takes `logits_to_keep` it projects only the positions from the batch's first scored one on; a
        log_softmax over the whole vocabulary of every position would need ~20 GB at Qwen's 151k vocabulary and
        batch 16 x 2048 (benchmarks/logprob_memory.py)."""
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
            first = min(encoded[i][1] for i in idx) - 1  # the first position whose logits are needed
            kwargs = {"logits_to_keep": width - first} if self._keeps_logits else {}
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                    **kwargs).logits
                offset = width - logits.shape[1]  # position of logits[:, 0]
                for r, i in enumerate(idx):
                    seq, n_ctx = encoded[i]
                    targets = torch.tensor(seq[n_ctx:], device=logits.device)
                    lp, greedy = target_logprobs(logits[r, n_ctx - 1 - offset : len(seq) - 1 - offset], targets)
                    results[i] = (lp.sum().item(), len(targets), bool(greedy.all().item()))
            del logits
            if progress is not None:
                progress.update(len(idx))
        return results

    @property
    def _keeps_logits(self) -> bool:
        """Whether the model's forward takes `logits_to_keep` (transformers' causal LMs since 4.45)."""
        import inspect

        return "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def close(self) -> None:
        del self.model


def target_logprobs(logits: Any, targets: Any, chunk_elements: int = 1 << 24) -> tuple[Any, Any]:
    """log p(target) at each position, and whether the target is the argmax, from logits [T, V] and targets [T].

    Per position: target logit minus logsumexp over the vocabulary (in float32), the same number log_softmax then
    gather gives, but computed `chunk_elements // V` positions at a time, so the float32 copy is at most
    `chunk_elements` values (64 MiB; logsumexp takes one more such temporary) whatever the text length or
    vocabulary size."""
    import torch

    steps = max(1, chunk_elements // max(1, logits.shape[-1]))
    lps, greedy = [], []
    for a in range(0, logits.shape[0], steps):
        x = logits[a : a + steps].float()
        t = targets[a : a + steps]
        lps.append(x.gather(1, t[:, None]).squeeze(1) - torch.logsumexp(x, dim=-1))
        greedy.append(x.argmax(-1) == t)
        del x
    if not lps:
        return torch.zeros(0), torch.zeros(0, dtype=torch.bool)
    return torch.cat(lps), torch.cat(greedy)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Text up to the first stop string (the stop string itself removed)."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]
