"""Lazy, read-only view of a Hugging Face model folder's weights.

Only headers are parsed up front (names, dtypes, shapes, byte offsets), so a merge can check every input before
it reads a single weight. Tensors are then read one at a time with plain positioned file reads into a fresh
buffer. We deliberately do not mmap (as `safe_open` does): pages of a long-lived mmap count towards the process's
resident memory until unmapped, so touching every tensor of N models through mmaps would make the peak RSS grow
to the size of all models — the very thing a streaming merge must avoid.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MergeInputError

INDEX_NAME = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
#: safetensors dtype codes -> (torch dtype name, bytes per element)
DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
}
FLOAT_CODES = {"F64", "F32", "F16", "BF16"}
TORCH_TO_CODE = {v[0]: k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: file, safetensors dtype code, shape and absolute byte range in the file."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_CODES


def read_header(file: Path, label: str) -> dict[str, TensorInfo]:
    """Parse one .safetensors header (8-byte little-endian length, then JSON) without touching the data."""
    try:
        with open(file, "rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise MergeInputError(f"model '{label}': {file} is not a safetensors file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", raw)
            size = file.stat().st_size
            if n > size - 8 or n > 100_000_000:
                raise MergeInputError(f"model '{label}': {file} has a corrupt safetensors header (length {n})")
            header = json.loads(fh.read(n))
    except (OSError, ValueError) as e:
        raise MergeInputError(f"model '{label}': cannot read safetensors header of {file}: {e}") from e
    base = 8 + n
    out: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        code = entry.get("dtype")
        if code not in DTYPES:
            raise MergeInputError(f"model '{label}': tensor '{name}' in {file} has unsupported dtype {code}")
        s, e = entry["data_offsets"]
        info = TensorInfo(file, code, tuple(int(d) for d in entry["shape"]), base + s, base + e)
        if info.end > size or info.end - info.start != info.numel * DTYPES[code][1]:
            raise MergeInputError(f"model '{label}': tensor '{name}' in {file} has inconsistent offsets (truncated file?)")
        out[name] = info
    return out


class Checkpoint:
    """One input model: its config, its tensors' locations, and `read(name)` for a single tensor.

    Accepts single-file (`model.safetensors`) and sharded (`model.safetensors.index.json`) folders. Pickle
    checkpoints (`pytorch_model.bin`, ...) are refused unless `allow_pickle` (then loaded with
    `torch.load(weights_only=True, mmap=True)`, which executes no code but is not streamed as tightly)."""

    def __init__(self, path: str | Path, label: str | None = None, allow_pickle: bool = False):
        self.path = Path(path)
        self.label = label or self.path.name
        self._handles: dict[Path, Any] = {}
        self._pickled: dict[str, Any] | None = None
        if not self.path.is_dir():
            raise MergeInputError(f"model '{self.label}': {self.path} is not a folder (expected a Hugging Face model folder)")
        cfg = self.path / "config.json"
        if not cfg.is_file():
            raise MergeInputError(f"model '{self.label}': {self.path} has no config.json (not a Hugging Face model folder)")
        try:
            self.config: dict[str, Any] = json.loads(cfg.read_text())
        except ValueError as e:
            raise MergeInputError(f"model '{self.label}': {cfg} is not valid JSON: {e}") from e
        self.tensors: dict[str, TensorInfo] = {}
        self.files: list[Path] = []
        index = self.path / INDEX_NAME
        if index.is_file():
            self._load_index(index)
        else:
            files = sorted(self.path.glob("*.safetensors"))
            if files:
                self._load_files(files)
            else:
                self._load_pickle(allow_pickle)

    # -- discovery --------------------------------------------------------------------------------------
    def _load_index(self, index: Path) -> None:
        try:
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as e:
            raise MergeInputError(f"model '{self.label}': {index} has no valid 'weight_map': {e}") from e
        files = []
        for fname in dict.fromkeys(weight_map.values()):
            f = self.path / fname
            if not f.is_file():
                raise MergeInputError(f"model '{self.label}': {index} lists shard '{fname}', which is missing")
            files.append(f)
        self._load_files(files)
        for name, fname in weight_map.items():
            if name not in self.tensors:
                raise MergeInputError(f"model '{self.label}': {index} maps tensor '{name}' to '{fname}', which lacks it")

    def _load_files(self, files: list[Path]) -> None:
        for f in files:
            for name, info in read_header(f, self.label).items():
                if name in self.tensors:
                    raise MergeInputError(f"model '{self.label}': tensor '{name}' appears in two shards ({self.tensors[name].file.name}, {f.name})")
                self.tensors[name] = info
            self.files.append(f)

    def _load_pickle(self, allow_pickle: bool) -> None:
        pickles = sorted(p for p in self.path.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
        if not pickles:
            raise MergeInputError(f"model '{self.label}': {self.path} holds no weights (*.safetensors or a shard index)")
        if not allow_pickle:
            raise MergeInputError(
                f"model '{self.label}': {self.path} has only pickle weights ({', '.join(p.name for p in pickles)}); "
                "pickle files can run code when loaded and are refused. Re-save the model with "
                "`save_pretrained(..., safe_serialization=True)`, or set `allow_pickle = true` if you trust it"
            )
        import torch

        state: dict[str, Any] = {}
        for p in pickles:
            if p.name.endswith(".index.json"):
                continue
            try:
                part = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
            except Exception as e:  # noqa: BLE001 - any unpickling failure is the user's file
                raise MergeInputError(f"model '{self.label}': cannot load pickle weights {p}: {e}") from e
            if not isinstance(part, dict):
                raise MergeInputError(f"model '{self.label}': {p} is not a state dict")
            state.update(part)
            self.files.append(p)
        self._pickled = state
        for name, t in state.items():
            code = TORCH_TO_CODE.get(str(t.dtype).removeprefix("torch."))
            if code is None:
                raise MergeInputError(f"model '{self.label}': tensor '{name}' has unsupported dtype {t.dtype}")
            self.tensors[name] = TensorInfo(self.path, code, tuple(t.shape), 0, 0)

    # -- facts ------------------------------------------------------------------------------------------
    @property
    def tied_embeddings(self) -> bool:
        cfg = self.config.get("text_config", self.config)
        return bool(cfg.get("tie_word_embeddings", self.config.get("tie_word_embeddings", False)))

    @property
    def vocab_size(self) -> int | None:
        cfg = self.config.get("text_config", self.config)
        v = cfg.get("vocab_size", self.config.get("vocab_size"))
        return int(v) if v is not None else None

    # -- reading ----------------------------------------------------------------------------------------
    def read(self, name: str, elems: tuple[int, int] | None = None) -> Any:
        """The tensor `name` in its stored dtype, in freshly allocated memory (no mmap is kept); with
        `elems=(start, count)` only that flat range of elements (row-major), as a 1-D tensor."""
        import numpy as np
        import torch

        info = self.tensors[name]
        if self._pickled is not None:
            t = self._pickled[name]
            return t.reshape(-1)[elems[0]: elems[0] + elems[1]].clone() if elems else t.clone()
        itemsize = DTYPES[info.dtype][1]
        start, nbytes = info.start, info.end - info.start
        if elems is not None:
            start, nbytes = info.start + elems[0] * itemsize, elems[1] * itemsize
        dtype = getattr(torch, DTYPES[info.dtype][0])
        if nbytes == 0:
            return torch.empty((0,) if elems else info.shape, dtype=dtype)
        fh = self._handles.get(info.file)
        if fh is None:
            fh = self._handles[info.file] = open(info.file, "rb", buffering=0)
        buf = np.empty(nbytes, dtype=np.uint8)
        fh.seek(start)
        view, got = memoryview(buf), 0
        while got < nbytes:
            n = fh.readinto(view[got:])
            if not n:
                raise MergeInputError(f"model '{self.label}': {info.file} ended early while reading tensor '{name}'")
            got += n
        t = torch.from_numpy(buf).view(dtype)
        return t if elems is not None else t.reshape(info.shape)

    def close(self) -> None:
        for fh in self._handles.values():
            fh.close()
        self._handles.clear()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
