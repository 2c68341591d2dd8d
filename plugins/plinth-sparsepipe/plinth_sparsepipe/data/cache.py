"""A generated dataset is built once per full config and reused: by a re-run, by a later stage with the same
config, and by a second pipeline pointed at the same `cache_dir`.

The key is a sha256 of (component, schema version, builder version, full config without the cache knobs, and any
fingerprint of the inputs, e.g. a ModelNet folder's listing). An entry is a folder written under a temporary name
and renamed when complete, so a killed build never leaves a half entry that looks finished. Outputs are hard
links to the entry's files (copies across file systems), so a stage's `out/` owns its files either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

BUILDER_VERSION = 1  # bump when a generator's output changes for the same config


def cache_key(component: str, config: dict[str, Any], extra: Any = None) -> str:
    from .store import SCHEMA

    blob = json.dumps({"component": component, "schema": SCHEMA, "builder": BUILDER_VERSION, "config": config,
                       "inputs": extra}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def build_or_reuse(cache_root: Path | None, name: str, key: str, out_dir: Path,
                   build: Callable[[Path], None]) -> bool:
    """Fill `out_dir` with the dataset for `key`: from the cache entry when it exists (returns True), else by
    calling `build(folder)` (into the cache when `cache_root` is set, else straight into `out_dir`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if cache_root is None:
        build(out_dir)
        return False
    cache_root.mkdir(parents=True, exist_ok=True)
    entry = cache_root / f"{name}-{key[:20]}"
    hit = (entry / "meta.json").is_file()
    if not hit:
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{entry.name}-", dir=cache_root))
        try:
            build(tmp)
            try:
                os.rename(tmp, entry)
            except OSError:  # built meanwhile by another process: keep theirs
                if not (entry / "meta.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    for f in sorted(entry.iterdir()):
        target = out_dir / f.name
        target.unlink(missing_ok=True)
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)
    return hit
