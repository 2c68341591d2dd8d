"""What every point-cloud generator shares: the cache knobs, the cached build, the two splits as `dataset`
artifacts (`<stage>.train`, `<stage>.test`, Parquet files with `meta.json` beside them), and the metrics line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar, Iterable

from pydantic import Field

from plinth.artifacts import Artifact
from plinth.components import ComponentConfig, Generator
from plinth.context import StageContext

from .cache import build_or_reuse, cache_key
from .cloud import PointCloud
from .store import write_meta, write_split

SPLITS = ("train", "test")
PROGRESS_EVERY = 64


class CachedConfig(ComponentConfig):
    cache: bool = Field(True, description="reuse a dataset built earlier with the same config (and inputs)")
    cache_dir: str | None = Field(None, description="where built datasets are kept (default RUN_DIR/cache/<stage>); "
                                  "point two pipelines at one folder to share them")


class PointCloudGenerator(Generator):
    """Subclasses set `component` and `task` and write both splits in `build`."""

    outputs = {split: "dataset" for split in SPLITS}
    input_kinds: ClassVar[dict] = {}  # built from files and settings alone
    component: ClassVar[str] = ""
    task: ClassVar[str] = ""

    def fingerprint(self) -> Any:
        """What the dataset depends on besides the config (e.g. the input files); part of the cache key."""
        return None

    def build(self, folder: Path, ctx: StageContext) -> dict[str, Any]:
        """Write train.parquet and test.parquet into `folder`; return the meta (classes, splits, fields, ...)."""
        raise NotImplementedError

    def generate(self, ctx: StageContext) -> dict[str, Artifact]:
        c = self.config
        config = c.model_dump(mode="json", exclude={"cache", "cache_dir"})
        key = cache_key(self.component, config, self.fingerprint())
        root = (Path(c.cache_dir).expanduser() if c.cache_dir else ctx.cache_dir) if c.cache else None

        def build(folder: Path) -> None:
            t0 = time.perf_counter()
            meta = self.build(folder, ctx)
            meta["generator"] = {"component": self.component, "config": config, "cache_key": key,
                                 "seconds": round(time.perf_counter() - t0, 3)}
            write_meta(folder, meta)

        hit = build_or_reuse(root, self.component, key, ctx.output_dir, build)
        meta = json.loads((ctx.output_dir / "meta.json").read_text(encoding="utf-8"))
        ctx.log_metrics({f"{s}_rows": meta["splits"][s]["rows"] for s in SPLITS}
                        | {"cached": hit, "build_seconds": meta["generator"]["seconds"],
                           "bad_files": len(meta.get("bad_files", []))})
        return {s: ctx.artifact("dataset", f"{s}.parquet", rows=meta["splits"][s]["rows"], task=meta["task"],
                                num_classes=len(meta["classes"]), cached=hit) for s in SPLITS}


def write_splits(folder: Path, ctx: StageContext, task: str, classes: list[str], fields: tuple[str, ...],
                 splits: dict[str, tuple[int | None, Iterable[PointCloud]]]) -> dict[str, Any]:
    """Write each split (expected size or None, clouds) with progress; the `splits` part of meta.json."""
    out = {}
    for split, (total, clouds) in splits.items():
        with ctx.progress(total, f"{ctx.stage} {split}") as prog:
            def counted(it=clouds):
                i = 0
                for i, cloud in enumerate(it, 1):
                    if i % PROGRESS_EVERY == 0:
                        prog.update(PROGRESS_EVERY)
                    yield cloud
                if i % PROGRESS_EVERY:
                    prog.update(i % PROGRESS_EVERY)
            stats = write_split(folder / f"{split}.parquet", counted(), task, classes, fields)
        out[split] = stats.to_json(classes)
    return out
