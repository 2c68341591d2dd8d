"""Write sharded safetensors one tensor at a time.

Every output tensor's name, dtype and shape are known before merging starts, so each shard's header (with all
byte offsets) is written first and tensors are appended as they are computed: no shard is ever buffered in
memory. Files follow the Hugging Face layout (`model-00001-of-0000N.safetensors` + `model.safetensors.index.json`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import DTYPES, INDEX_NAME, TORCH_TO_CODE


@dataclass(frozen=True)
class OutTensor:
    name: str
    dtype: str  # safetensors code, e.g. "BF16"
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = DTYPES[self.dtype][1]
        for d in self.shape:
            n *= d
        return n


def parse_size(size: int | str) -> int:
    """'2GB' / '500MB' / '5GiB' / 1000 -> bytes (decimal units like transformers' max_shard_size)."""
    if isinstance(size, int):
        return size
    s = size.strip().upper().replace(" ", "")
    units = {"GIB": 1 << 30, "MIB": 1 << 20, "KIB": 1 << 10, "GB": 10**9, "MB": 10**6, "KB": 10**3, "B": 1}
    for u, mult in units.items():
        if s.endswith(u):
            return int(float(s[: -len(u)]) * mult)
    return int(s)


class ShardedWriter:
    """Plan shards of at most `max_shard_bytes` (a bigger tensor gets a shard of its own) and write them in order."""

    def __init__(self, folder: Path, tensors: list[OutTensor], max_shard_bytes: int, metadata: dict[str, str] | None = None):
        self.folder = Path(folder)
        self.metadata = {"format": "pt", **(metadata or {})}
        shards: list[list[OutTensor]] = [[]]
        size = 0
        for t in tensors:
            if shards[-1] and size + t.nbytes > max_shard_bytes:
                shards.append([])
                size = 0
            shards[-1].append(t)
            size += t.nbytes
        n = len(shards)
        self.shards = [(f"model-{i + 1:05d}-of-{n:05d}.safetensors", s) for i, s in enumerate(shards)]
        self.order = [(fname, t) for fname, s in self.shards for t in s]
        self.pos = 0
        self._fh: Any = None
        self._fname: str | None = None

    @property
    def total_size(self) -> int:
        return sum(t.nbytes for _, t in self.order)

    def _open(self, fname: str) -> None:
        if self._fh is not None:
            self._fh.close()
        tensors = dict(self.shards)[fname]
        header: dict[str, Any] = {"__metadata__": self.metadata}
        off = 0
        for t in tensors:
            header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [off, off + t.nbytes]}
            off += t.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # align the data section to 8 bytes, as safetensors itself does
        self._fh = open(self.folder / fname, "wb")
        self._fh.write(len(raw).to_bytes(8, "little"))
        self._fh.write(raw)
        self._fname = fname

    def write(self, name: str, tensor: Any) -> None:
        """Append the next tensor; it must come in plan order with the planned dtype and shape."""
        import torch

        fname, spec = self.order[self.pos]
        code = TORCH_TO_CODE.get(str(tensor.dtype).removeprefix("torch."))
        if name != spec.name or code != spec.dtype or tuple(tensor.shape) != spec.shape:
            raise RuntimeError(
                f"writer expected {spec.name} {spec.dtype}{list(spec.shape)}, got {name} {code}{list(tensor.shape)}"
            )
        if fname != self._fname:
            self._open(fname)
        if spec.nbytes:
            data = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
            self._fh.write(memoryview(data))
        self.pos += 1

    def finish(self) -> dict[str, Any]:
        """Close the last shard and write the index; returns the index."""
        if self.pos != len(self.order):
            raise RuntimeError(f"writer finished after {self.pos} of {len(self.order)} tensors")
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        index = {
            "metadata": {"total_size": self.total_size},
            "weight_map": {t.name: fname for fname, t in self.order},
        }
        (self.folder / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        return index

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
