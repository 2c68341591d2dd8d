"""`PointCloud`: one sample as every reader, generator and transform of this package hands it on.

Arrays are NumPy (float32 points, int32 labels) so readers and transforms stay cheap in DataLoader workers; the
torch Dataset wrapper turns them into tensors at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

IGNORE_LABEL = -1  # a point label that is unlabelled: scored by no metric, trained on by no loss


@dataclass
class PointCloud:
    """Points plus the per-point fields a source has. `source` names where it came from, for error messages."""

    points: np.ndarray  # float32 [P, 3]
    normals: np.ndarray | None = None  # float32 [P, 3], unit length
    colors: np.ndarray | None = None  # float32 [P, 3] in [0, 1]
    label: int | None = None  # class index (classification)
    point_labels: np.ndarray | None = None  # int32 [P] (segmentation); IGNORE_LABEL = unlabelled
    source: str = ""

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def take(self, index: np.ndarray) -> "PointCloud":
        """The points at `index` (an index array or boolean mask), every per-point field kept aligned."""
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return replace(self, points=self.points[index], normals=pick(self.normals), colors=pick(self.colors),
                       point_labels=pick(self.point_labels))

    def with_points(self, points: np.ndarray, normals: np.ndarray | None = None) -> "PointCloud":
        """The same sample with moved points (and, when the move turns surfaces, new normals)."""
        return replace(self, points=points, normals=self.normals if normals is None else normals)
