"""ModelNet40 (or ModelNet10) from a local folder, in either layout users have:

- `off`: `ModelNet40/<class>/{train,test}/<class>_0001.off` meshes, sampled to points by triangle area (with
  face normals);
- `resampled`: `modelnet40_normal_resampled/<class>/<class>_0001.txt` (x,y,z,nx,ny,nz per line) with
  `modelnet40_shape_names.txt`, `modelnet40_train.txt` and `modelnet40_test.txt` (ModelNet10: `modelnet10_*`).

`scan_modelnet` lists the files (cheap: no file is opened), `read_split` loads one split as `PointCloud`s.
A folder that is neither layout is a `ConfigError` naming it; so is a class with no files in a split, and a class
whose every file in a split is bad. Single bad files (empty or degenerate meshes, NaN, wrong format, listed but
missing) and folders that are not classes are counted in `BadFiles`, reported with their paths and skipped.
"""

from __future__ import annotations

import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .badfiles import BadFileError, BadFiles
from .cloud import PointCloud
from .off import read_off
from .sampling import sample_triangles

SPLITS = ("train", "test")
KNOWN_ROOTS = ("ModelNet40", "ModelNet10", "modelnet40_normal_resampled", "modelnet10_normal_resampled")


def _error(msg: str):
    from plinth.errors import ConfigError

    return ConfigError(f"modelnet40: {msg}")


@dataclass
class ModelNetFiles:
    root: Path
    layout: str
    classes: list[str]
    files: dict[str, list[tuple[Path, int]]]  # split -> (file, class index), sorted
    bad: BadFiles = field(default_factory=BadFiles)  # problems found while listing
    excluded: list[str] = field(default_factory=list)  # classes present but left out by `classes`


def detect_layout(root: str | Path) -> tuple[Path, str]:
    """(the folder that holds the classes, "off" or "resampled"); a ConfigError naming the path otherwise."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise _error(f"{root}: no such folder")
    for _ in range(2):
        if sorted(root.glob("*_shape_names.txt")):
            return root, "resampled"
        subdirs = [p for p in sorted(root.iterdir()) if p.is_dir()]
        if any((p / s).is_dir() for p in subdirs for s in SPLITS):
            return root, "off"
        inner = [p for p in subdirs if p.name in KNOWN_ROOTS]
        if len(inner) != 1:
            break
        root = inner[0]
    seen = ", ".join(p.name for p in sorted(root.iterdir())[:8]) or "nothing"
    raise _error(f"{root}: not a ModelNet folder in either layout: expected <class>/train/*.off and "
                 f"<class>/test/*.off (the .off layout), or modelnet40_shape_names.txt with modelnet40_train.txt "
                 f"and modelnet40_test.txt (modelnet40_normal_resampled); found {seen}")


def scan_modelnet(root: str | Path, layout: str = "auto", classes: list[str] | None = None) -> ModelNetFiles:
    found_root, found = detect_layout(root)
    if layout not in ("auto", found):
        raise _error(f"{found_root}: layout = '{layout}' but the folder is in the '{found}' layout")
    scan = _scan_resampled if found == "resampled" else _scan_off
    result = scan(found_root, classes)
    for split in SPLITS:
        have = {k for _, k in result.files[split]}
        empty = [c for k, c in enumerate(result.classes) if k not in have]
        if empty:
            raise _error(f"{found_root}: class(es) {', '.join(empty)} have no files in the '{split}' split")
    return result


def _keep(all_classes: list[str], classes: list[str] | None, root: Path) -> tuple[list[str], list[str]]:
    if classes is None:
        return all_classes, []
    unknown = [c for c in classes if c not in all_classes]
    if unknown:
        raise _error(f"{root}: classes {unknown} are not in this dataset (it has {', '.join(all_classes)})")
    return list(classes), [c for c in all_classes if c not in classes]


def _scan_off(root: Path, classes: list[str] | None) -> ModelNetFiles:
    bad = BadFiles()
    class_dirs = []
    for p in sorted(root.iterdir()):
        if not p.is_dir():
            continue
        if any((p / s).is_dir() for s in SPLITS):
            class_dirs.append(p.name)
        else:
            bad.add(p, "not a class folder (no train/ or test/ inside)")
    keep, excluded = _keep(class_dirs, classes, root)
    files: dict[str, list[tuple[Path, int]]] = {s: [] for s in SPLITS}
    for k, name in enumerate(keep):
        for split in SPLITS:
            folder = root / name / split
            for f in sorted(folder.iterdir()) if folder.is_dir() else []:
                if f.is_file() and f.suffix.lower() == ".off":
                    files[split].append((f, k))
                else:
                    bad.add(f, "not an .off file")
    return ModelNetFiles(root, "off", keep, files, bad, excluded)


def _scan_resampled(root: Path, classes: list[str] | None) -> ModelNetFiles:
    bad = BadFiles()
    names_file = sorted(root.glob("*_shape_names.txt"))[0]
    prefix = names_file.name[: -len("_shape_names.txt")]
    all_classes = [ln.strip() for ln in names_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    keep, excluded = _keep(all_classes, classes, root)
    index = {c: k for k, c in enumerate(keep)}
    for p in sorted(root.iterdir()):
        if p.is_dir() and p.name not in all_classes:
            bad.add(p, f"unknown class folder (not in {names_file.name})")
    files: dict[str, list[tuple[Path, int]]] = {s: [] for s in SPLITS}
    for split in SPLITS:
        listing = root / f"{prefix}_{split}.txt"
        if not listing.is_file():
            raise _error(f"{root}: {listing.name} is missing (the resampled layout lists each split's files there)")
        for ln in listing.read_text(encoding="utf-8").splitlines():
            entry = ln.strip()
            if not entry:
                continue
            cls = entry.rsplit("_", 1)[0]
            f = root / cls / f"{entry}.txt"
            if cls not in all_classes:
                bad.add(f, f"listed in {listing.name} with unknown class '{cls}'")
            elif cls in index:
                if f.is_file():
                    files[split].append((f, index[cls]))
                else:
                    bad.add(f, f"listed in {listing.name} but missing")
    return ModelNetFiles(root, "resampled", keep, files, bad, excluded)


def load_shape(path: Path, layout: str, label: int, num_points: int, seed: int, source: str) -> PointCloud:
    """One file as a PointCloud of at most `num_points` points with normals; BadFileError when unusable. The
    random draw depends only on (seed, source), so results do not depend on file order or worker count."""
    rng = np.random.default_rng([seed, zlib.crc32(source.encode())])
    if layout == "off":
        vertices, faces = read_off(path)
        try:
            points, normals = sample_triangles(vertices, faces, num_points, rng)
        except ValueError as exc:
            raise BadFileError(f"degenerate mesh: {exc}") from None
    else:
        points, normals = _read_resampled(path)
        if len(points) > num_points:
            pick = np.sort(rng.choice(len(points), num_points, replace=False))
            points, normals = points[pick], normals[pick] if normals is not None else None
    return PointCloud(points=points, normals=normals, label=label, source=source)


def _read_resampled(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        text = path.read_bytes().decode("ascii")
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        cols = len(first.replace(",", " ").split())
        values = np.array(text.replace(",", " ").split(), dtype=np.float32)
    except (UnicodeDecodeError, ValueError):
        raise BadFileError("not a text file of comma-separated numbers") from None
    if cols < 3 or len(values) == 0 or len(values) % cols:
        raise BadFileError(f"expected rows of x,y,z[,nx,ny,nz]; got {len(values)} numbers in rows of {cols}")
    rows = values.reshape(-1, cols)
    if not np.isfinite(rows[:, :6]).all():
        raise BadFileError("NaN or infinite values")
    return rows[:, :3].copy(), (rows[:, 3:6].copy() if cols >= 6 else None)


def _load_one(args: tuple) -> PointCloud | tuple[str, str]:
    path, layout, label, num_points, seed, source = args
    try:
        return load_shape(path, layout, label, num_points, seed, source)
    except BadFileError as exc:
        return str(path), str(exc)
    except OSError as exc:
        return str(path), f"cannot read: {exc.strerror or exc}"
    except Exception as exc:  # noqa: BLE001 - whatever else a broken file triggers, it is that file's problem
        return str(path), f"unreadable ({type(exc).__name__}: {exc})"


def read_split(files: ModelNetFiles, split: str, num_points: int = 4096, seed: int = 0, workers: int = 1,
               bad: BadFiles | None = None) -> Iterator[PointCloud]:
    """The split's shapes in file order; bad files go to `bad` (default: `files.bad`) and are skipped. After the
    last shape, a class left with no readable file in this split is a ConfigError naming it."""
    bad = files.bad if bad is None else bad
    jobs = [(p, files.layout, k, num_points, seed, str(p.relative_to(files.root))) for p, k in files.files[split]]
    seen: set[int] = set()
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        results = pool.map(_load_one, jobs, chunksize=8) if pool else map(_load_one, jobs)
        for res in results:
            if isinstance(res, PointCloud):
                seen.add(res.label)
                yield res
            else:
                bad.add(*res)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    empty = [c for k, c in enumerate(files.classes) if k not in seen]
    if empty:
        raise _error(f"{files.root}: every '{split}' file of class(es) {', '.join(empty)} is bad:\n{bad.summary()}")
