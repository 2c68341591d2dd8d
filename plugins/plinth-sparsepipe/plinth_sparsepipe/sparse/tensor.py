"""SparseTensor: integer voxel coordinates + a feature row per coordinate, and the cache layers share.

Coordinates are kept in input-voxel units at every resolution (MinkowskiEngine/torchsparse convention): a tensor of
stride s holds coordinates that are multiples of s. The `cache` object travels with every tensor derived from the
same input (outputs of convs, pools, `.replace`), so layers at one resolution build a kernel map once and a
transposed conv finds the finer coordinates and the map of the strided conv it mirrors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class CoordinateCache:
    """Shared by layers: coords per tensor stride; kernel maps per (stride, kernel, conv stride, dilation, kind)."""

    coords: dict[int, torch.Tensor] = field(default_factory=dict)
    kmaps: dict[tuple, Any] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0


def _check_coords(coords: torch.Tensor, feats: torch.Tensor, stride: int) -> torch.Tensor:
    if not isinstance(coords, torch.Tensor) or not isinstance(feats, torch.Tensor):
        raise TypeError("SparseTensor(coords, feats): both must be torch tensors")
    if coords.dim() != 2 or coords.shape[1] != 4:
        raise ValueError(f"SparseTensor: coords must be [N, 4] (batch, x, y, z), got shape {tuple(coords.shape)}")
    if coords.dtype.is_floating_point or coords.dtype == torch.bool:
        raise TypeError(f"SparseTensor: coords must be an integer tensor, got {coords.dtype}")
    if feats.dim() != 2 or feats.shape[0] != coords.shape[0]:
        raise ValueError(
            f"SparseTensor: feats must be [N, C] with N = {coords.shape[0]} rows like coords, got {tuple(feats.shape)}"
        )
    if coords.device != feats.device:
        raise ValueError(f"SparseTensor: coords on {coords.device} but feats on {feats.device}")
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise ValueError(f"SparseTensor: stride must be a positive int, got {stride!r}")
    if stride > 1 and len(coords) and bool((coords[:, 1:] % stride != 0).any()):
        raise ValueError(f"SparseTensor: coordinates of a stride-{stride} tensor must be multiples of {stride}")
    return coords.to(torch.int32).contiguous()


class SparseTensor:
    """coords int32 [N, 4] (batch, x, y, z), feats [N, C], stride (int); see the module docstring."""

    __slots__ = ("coords", "feats", "stride", "cache", "_batch_size")

    def __init__(
        self,
        coords: torch.Tensor,
        feats: torch.Tensor,
        stride: int = 1,
        *,
        batch_size: int | None = None,
        cache: CoordinateCache | None = None,
    ):
        self.coords = _check_coords(coords, feats, stride)
        self.feats = feats
        self.stride = stride
        self.cache = cache if cache is not None else CoordinateCache()
        self.cache.coords.setdefault(stride, self.coords)
        self._batch_size = batch_size

    # -- basic properties ---------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Number of clouds: given at construction (collate) or max batch index + 1."""
        if self._batch_size is None:
            self._batch_size = int(self.coords[:, 0].max()) + 1 if len(self.coords) else 0
        return self._batch_size

    @property
    def num_channels(self) -> int:
        return self.feats.shape[1]

    def __len__(self) -> int:
        return self.coords.shape[0]

    def __repr__(self) -> str:
        return (
            f"SparseTensor(n={len(self)}, channels={self.num_channels}, stride={self.stride}, "
            f"batch_size={self.batch_size}, dtype={self.feats.dtype}, device={self.feats.device})"
        )

    # -- derived tensors ----------------------------------------------------------------------------------------
    def replace(self, feats: torch.Tensor) -> "SparseTensor":
        """Same coordinates, new features (e.g. after BatchNorm); shares the kernel-map cache."""
        if feats.dim() != 2 or feats.shape[0] != len(self):
            raise ValueError(f"replace: feats must be [{len(self)}, C], got {tuple(feats.shape)}")
        out = SparseTensor.__new__(SparseTensor)
        out.coords, out.feats, out.stride, out.cache, out._batch_size = (
            self.coords, feats, self.stride, self.cache, self._batch_size,
        )
        return out

    def to(self, device=None, dtype: torch.dtype | None = None) -> "SparseTensor":
        """Move to a device (fresh cache there: kernel maps are rebuilt on first use) and/or cast features."""
        device = torch.device(device) if device is not None else self.feats.device
        if device == self.feats.device:
            return self.replace(self.feats.to(dtype=dtype) if dtype else self.feats)
        feats = self.feats.to(device=device, dtype=dtype)
        cache = CoordinateCache({s: c.to(device) for s, c in self.cache.coords.items()})
        return SparseTensor(cache.coords[self.stride], feats, self.stride, batch_size=self._batch_size, cache=cache)

    # -- dense grids (tests, the dense baseline) -------------------------------------------------------------------
    def dense(
        self, spatial_shape: tuple[int, int, int] | None = None, origin: tuple[int, int, int] = (0, 0, 0),
        fill: float = 0.0,
    ) -> torch.Tensor:
        """[B, C, X, Y, Z] grid at this tensor's resolution: site (x, y, z) lands at ((x, y, z) - origin) / stride.

        Empty sites hold `fill` (0 for convolution; -inf compares sparse max pooling with dense max_pool3d).
        """
        idx = (self.coords[:, 1:].long() - torch.tensor(origin, device=self.coords.device)) // self.stride
        if len(idx) and idx.min() < 0:
            raise ValueError("dense: coordinates below `origin`; pass origin=(min x, min y, min z)")
        if spatial_shape is None:
            spatial_shape = tuple(int(v) + 1 for v in idx.max(0).values) if len(idx) else (0, 0, 0)
        elif len(idx) and any(int(m) >= s for m, s in zip(idx.max(0).values, spatial_shape)):
            raise ValueError(f"dense: coordinates exceed spatial_shape {tuple(spatial_shape)}")
        out = self.feats.new_full((self.batch_size, *spatial_shape, self.num_channels), fill)
        out = out.index_put((self.coords[:, 0].long(), idx[:, 0], idx[:, 1], idx[:, 2]), self.feats)
        return out.permute(0, 4, 1, 2, 3).contiguous()

    @staticmethod
    def from_dense(dense: torch.Tensor, mask: torch.Tensor | None = None, stride: int = 1) -> "SparseTensor":
        """Active sites of a [B, C, X, Y, Z] grid: `mask` [B, X, Y, Z] (default: any channel non-zero)."""
        if dense.dim() != 5:
            raise ValueError(f"from_dense: expected [B, C, X, Y, Z], got shape {tuple(dense.shape)}")
        if mask is None:
            mask = (dense != 0).any(1)
        idx = mask.nonzero()
        feats = dense.permute(0, 2, 3, 4, 1)[mask]
        coords = torch.cat([idx[:, :1], idx[:, 1:] * stride], 1).to(torch.int32)
        return SparseTensor(coords, feats, stride, batch_size=dense.shape[0])

    # -- serialisation for sending between processes ---------------------------------------------------------------
    def batch_offsets(self) -> torch.Tensor:
        """int64 [B + 1]: rows of cloud b are offsets[b]:offsets[b + 1] (coords must be grouped by batch index)."""
        b = self.coords[:, 0]
        if len(b) > 1 and bool((b[1:] < b[:-1]).any()):
            raise ValueError(
                "batch_offsets: rows are not grouped by batch index (sparse_collate and every op keep them so)"
            )
        counts = torch.bincount(b.long(), minlength=self.batch_size)
        return torch.cat([counts.new_zeros(1), counts.cumsum(0)])

    def to_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(coords int32 [N, 4], feats [N, C], stride int64 [1], offsets int64 [B + 1]): plain tensors to send."""
        stride = torch.tensor([self.stride], dtype=torch.int64, device=self.coords.device)
        return self.coords, self.feats, stride, self.batch_offsets()

    @staticmethod
    def from_tensors(
        coords: torch.Tensor, feats: torch.Tensor, stride: torch.Tensor | int, offsets: torch.Tensor | None = None
    ) -> "SparseTensor":
        """Inverse of `to_tensors` (fresh cache: kernel maps are rebuilt where the tensor arrives)."""
        stride = int(stride.reshape(-1)[0]) if isinstance(stride, torch.Tensor) else int(stride)
        batch_size = None
        if offsets is not None:
            batch_size = offsets.numel() - 1
            if int(offsets[-1]) != coords.shape[0]:
                raise ValueError(
                    f"from_tensors: offsets end at {int(offsets[-1])} but there are {coords.shape[0]} rows"
                )
        return SparseTensor(coords, feats, stride, batch_size=batch_size)
