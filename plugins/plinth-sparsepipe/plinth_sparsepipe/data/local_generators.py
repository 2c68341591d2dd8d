"""Generators that turn local files into the same Parquet datasets as the procedural ones, so the trainer reads
one format: `modelnet40` (a ModelNet40/ModelNet10 folder, either layout) and `ply_points` (labelled PLY point
sets). Folders and files are checked at `plinth validate`; the cache key includes every input file's path, size
and modification time, so an edited folder is read again. Relative paths are relative to the current directory."""

from __future__ import annotations

import glob
import hashlib
import logging
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import Field, model_validator

from plinth.fileparams import file_field
from plinth.context import StageContext
from plinth.errors import ConfigError

from .badfiles import BadFileError, BadFiles
from .cloud import PointCloud
from .generator_base import SPLITS, CachedConfig, PointCloudGenerator, write_splits
from .modelnet import read_split, scan_modelnet
from .ply import read_ply, split_blocks

log = logging.getLogger("plinth.sparsepipe.data")


def _fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _as_validation_error(check, *args) -> None:
    """Run a ConfigError-raising check inside a pydantic validator (which wants ValueError), same message."""
    try:
        check(*args)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _report(bad: BadFiles, stage: str) -> None:
    if bad:
        log.warning("%s: %s", stage, bad.summary())


class ModelNet40Config(CachedConfig):
    root: str = file_field(description="a ModelNet40 (or ModelNet10) folder: the .off layout or modelnet40_normal_resampled")
    layout: Literal["auto", "off", "resampled"] = Field("auto", description="checked against the folder")
    classes: list[str] | None = Field(None, description="keep only these classes, in this label order")
    num_points: int = Field(4096, ge=16,
                            description="points per shape (meshes: sampled by area; text: a random subset)")
    normals: bool = Field(True, description="store normals (face normals for meshes)")
    seed: int = 0
    workers: int = Field(1, ge=1, description="processes reading files in parallel")

    @model_validator(mode="after")
    def _check(self) -> "ModelNet40Config":
        _as_validation_error(scan_modelnet, self.root, self.layout, self.classes)
        return self


class ModelNet40Generator(PointCloudGenerator):
    """ModelNet40 from a local folder as `<stage>.train` / `<stage>.test` point-cloud datasets."""

    Config = ModelNet40Config
    component = "modelnet40"
    task = "classification"

    def fingerprint(self) -> Any:
        files = scan_modelnet(self.config.root, self.config.layout, self.config.classes).files
        return _fingerprint([p for s in SPLITS for p, _ in files[s]])

    def build(self, folder: Path, ctx: StageContext) -> dict[str, Any]:
        c = self.config
        files = scan_modelnet(c.root, c.layout, c.classes)
        fields = ("normals",) if c.normals else ()

        def clouds(split: str) -> Iterator[PointCloud]:
            for cloud in read_split(files, split, c.num_points, c.seed, c.workers):
                if c.normals and cloud.normals is None:
                    files.bad.add(files.root / cloud.source, "no normals in the file (set normals = false)")
                    continue
                yield cloud if c.normals else PointCloud(cloud.points, label=cloud.label, source=cloud.source)

        splits = write_splits(folder, ctx, self.task, files.classes, fields,
                              {s: (len(files.files[s]), clouds(s)) for s in SPLITS})
        _report(files.bad, ctx.stage)
        return {"task": self.task, "classes": files.classes, "fields": ["points", *fields], "splits": splits,
                "source": {"root": str(files.root), "layout": files.layout, "excluded_classes": files.excluded},
                "bad_files": files.bad.to_json()}


def _expand(patterns: list[str], key: str) -> list[Path]:
    out: list[Path] = []
    for pat in patterns:
        hits = sorted(Path(p) for p in glob.glob(str(Path(pat).expanduser()), recursive=True))
        if not hits:
            where = "" if Path(pat).expanduser().is_absolute() else f" (relative to {Path.cwd()})"
            raise ConfigError(f"ply_points: {key}: '{pat}' matches no file{where}")
        out += [p for p in hits if p.is_file()]
    return out


class PlyPointsConfig(CachedConfig):
    train: list[str] = file_field(kind="glob", description="PLY files or glob patterns for the training split "
                                  "(relative to the pipeline file)")
    test: list[str] = file_field(kind="glob", description="PLY files or glob patterns for the test split")
    label_property: str = Field("label", description="the per-point integer label property; -1 = unlabelled")
    classes: list[str] | None = Field(None, description="names of labels 0..K-1 (default class_0, class_1, ...)")
    fields: list[Literal["normals", "colors"]] = Field(default_factory=list, description="per-point fields to keep")
    block_size: float | None = Field(None, gt=0, description="cut each file into x-y blocks of this size")
    min_points: int = Field(64, ge=1, description="blocks with fewer points are dropped")

    @model_validator(mode="after")
    def _check(self) -> "PlyPointsConfig":
        _as_validation_error(_expand, self.train, "train")
        _as_validation_error(_expand, self.test, "test")
        return self


class PlyPointsGenerator(PointCloudGenerator):
    """Labelled PLY point sets as `<stage>.train` / `<stage>.test` segmentation datasets."""

    Config = PlyPointsConfig
    component = "ply_points"
    task = "segmentation"

    def fingerprint(self) -> Any:
        return _fingerprint(_expand(self.config.train, "train") + _expand(self.config.test, "test"))

    def build(self, folder: Path, ctx: StageContext) -> dict[str, Any]:
        c = self.config
        bad = BadFiles()
        loaded = {s: self._read(_expand(getattr(c, s), s), bad) for s in SPLITS}
        top = max((int(x.point_labels.max()) for s in SPLITS for x in loaded[s]), default=-1)
        classes = c.classes or [f"class_{k}" for k in range(top + 1)]
        if not classes:
            raise ConfigError(f"ply_points: no labelled point in any file ({bad.summary()})")
        for s in SPLITS:
            keep = []
            for cloud in loaded[s]:
                if cloud.point_labels.max() >= len(classes):
                    bad.add(cloud.source, f"label {cloud.point_labels.max()} but `classes` names {len(classes)}")
                else:
                    keep.append(cloud)
            if not keep:
                raise ConfigError(f"ply_points: no usable file in the {s} split:\n{bad.summary()}")
            loaded[s] = keep
        splits = write_splits(folder, ctx, self.task, classes, tuple(c.fields),
                              {s: (len(loaded[s]), iter(loaded[s])) for s in SPLITS})
        _report(bad, ctx.stage)
        return {"task": self.task, "classes": classes, "ignore_label": -1, "fields": ["points", *c.fields],
                "splits": splits, "bad_files": bad.to_json()}

    def _read(self, paths: list[Path], bad: BadFiles) -> list[PointCloud]:
        c = self.config
        out = []
        for p in paths:
            try:
                cloud = read_ply(p, c.label_property)
                missing = [f for f in c.fields if getattr(cloud, f) is None]
                if missing:
                    raise BadFileError(f"no {', '.join(missing)} (asked for by `fields`)")
            except BadFileError as exc:
                bad.add(p, str(exc))
                continue
            except OSError as exc:
                bad.add(p, f"cannot read: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - a broken file is that file's problem, never the run's
                bad.add(p, f"unreadable ({type(exc).__name__}: {exc})")
                continue
            cloud.normals = cloud.normals if "normals" in c.fields else None
            cloud.colors = cloud.colors if "colors" in c.fields else None
            out += split_blocks(cloud, c.block_size, c.min_points) if c.block_size else [cloud]
        return out
