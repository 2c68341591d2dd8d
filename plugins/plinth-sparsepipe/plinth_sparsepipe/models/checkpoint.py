"""The trained-model artifact: a folder with `model.safetensors` (the state dict) and `config.json`.

    config.json = {"schema": "plinth.pointcloud-checkpoint/v1",
                   "model": {"name", "in_channels", "num_classes", "options"},   # model.config()
                   ...whatever the trainer adds: "task", "classes", "data" (how inputs were made), "training"}

Any safetensors reader opens the weights; `load_checkpoint` rebuilds the model from the config and loads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHECKPOINT_SCHEMA = "plinth.pointcloud-checkpoint/v1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def save_checkpoint(folder: str | Path, model, **extra: Any) -> Path:
    """Write the model's weights and config into `folder` (created); the config is written last."""
    from safetensors.torch import save

    from plinth.rundir import write_bytes_atomic, write_json_atomic

    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_bytes_atomic(folder / WEIGHTS, save(state, metadata={"schema": CHECKPOINT_SCHEMA,
                                                               "model": model.options.name}))
    write_json_atomic(folder / CONFIG, {"schema": CHECKPOINT_SCHEMA, "model": model.config(), **extra})
    return folder


def read_config(folder: str | Path) -> dict[str, Any]:
    """config.json of a checkpoint folder, with errors that name the file."""
    from plinth import ConfigError

    path = Path(folder) / CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{folder}: not a point-cloud checkpoint (no {CONFIG})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None
    if config.get("schema") != CHECKPOINT_SCHEMA or "model" not in config:
        raise ConfigError(f"{path}: schema is {config.get('schema')!r}, expected {CHECKPOINT_SCHEMA!r}")
    if not (Path(folder) / WEIGHTS).exists():
        raise ConfigError(f"{folder}: checkpoint has {CONFIG} but no {WEIGHTS}")
    return config


def load_checkpoint(folder: str | Path, device: str = "cpu"):
    """(model in eval mode on `device`, config dict)."""
    from safetensors.torch import load_file

    from .build import model_from_config

    config = read_config(folder)
    model = model_from_config(config["model"])
    model.load_state_dict(load_file(str(Path(folder) / WEIGHTS), device=str(device)))
    return model.to(device).eval(), config
