"""Per-point input features for the network, chosen by name and concatenated in the order given.

`ones` (1 channel, the paper's choice), `xyz` (3: the normalised, augmented coordinates), `normals` (3),
`colors` (3, in [0, 1]). Asking for normals or colours of a source that has none is an error naming the source.
"""

from __future__ import annotations

import numpy as np

from .cloud import PointCloud

FEATURES = {"ones": 1, "xyz": 3, "normals": 3, "colors": 3}


def feature_channels(names: list[str] | tuple[str, ...]) -> int:
    """How many channels `names` give (what a model's first layer takes)."""
    check_feature_names(names)
    return sum(FEATURES[n] for n in names)


def check_feature_names(names: list[str] | tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in FEATURES]
    if unknown or not names:
        raise ValueError(f"features: {unknown or 'none given'}; choose from {', '.join(FEATURES)}")


def point_features(cloud: PointCloud, names: list[str] | tuple[str, ...]) -> np.ndarray:
    """float32 [P, C] for `cloud`, channels in the order of `names`."""
    check_feature_names(names)
    parts = []
    for name in names:
        if name == "ones":
            parts.append(np.ones((len(cloud), 1), np.float32))
        elif name == "xyz":
            parts.append(cloud.points)
        else:
            value = getattr(cloud, name)
            if value is None:
                from plinth.errors import ConfigError

                raise ConfigError(f"features: '{name}' asked for, but {cloud.source or 'this source'} has no {name}"
                                  f" (use features = [\"ones\"] or [\"xyz\"], or a source with {name})")
            parts.append(value)
    return np.concatenate(parts, axis=1).astype(np.float32, copy=False)
