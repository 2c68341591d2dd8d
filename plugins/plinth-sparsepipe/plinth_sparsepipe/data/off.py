"""Object File Format (.off) meshes, as ModelNet40 ships them, including its header quirk.

    OFF                 OFF8 6 0 / OFF 8 6 0     <- ModelNet40 puts the counts on the OFF line in many files
    8 6 0               x y z ...
    x y z  (8 lines)
    3 i j k  (faces; polygons of n > 3 vertices are split into a fan of triangles; extra tokens such as colours
    are ignored)
Comments (`#` to the end of a line) and blank lines are skipped. Every problem raises `BadFileError` with the
reason, so a reader can skip the file and report it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .badfiles import BadFileError


def read_off(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices float64 [V, 3] and triangles int64 [F, 3] of an .off file."""
    try:
        text = Path(path).read_bytes().decode("ascii")
    except UnicodeDecodeError:
        raise BadFileError("not an ASCII OFF file (binary or another format)") from None
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].upper().startswith("OFF"):
        raise BadFileError(f"not an OFF file: first line is {lines[0][:40]!r}" if lines else "empty file")
    head = lines[0][3:].split()
    body = lines[1:]
    if not head:
        if not body:
            raise BadFileError("no vertex/face counts after the OFF line")
        head, body = body[0].split(), body[1:]
    try:
        nv, nf = int(head[0]), int(head[1])
    except (ValueError, IndexError):
        raise BadFileError(f"bad counts line {' '.join(head)!r}; expected 'vertices faces edges'") from None
    if nv < 3 or nf < 1:
        raise BadFileError(f"empty mesh ({nv} vertices, {nf} faces)")
    if len(body) < nv + nf:
        raise BadFileError(f"truncated: header says {nv} vertices + {nf} faces, file has {len(body)} lines")
    vertices = _vertices(body[:nv])
    faces = _faces(body[nv:nv + nf], nv)
    return vertices, faces


def _vertices(lines: list[str]) -> np.ndarray:
    try:
        rows = [ln.split() for ln in lines]
        if all(len(r) == 3 for r in rows):
            v = np.array(" ".join(lines).split(), dtype=np.float64).reshape(-1, 3)
        else:
            v = np.array([r[:3] for r in rows], dtype=np.float64)
    except ValueError:
        raise BadFileError("a vertex line does not hold three numbers") from None
    if not np.isfinite(v).all():
        raise BadFileError("NaN or infinite vertex coordinates")
    return v


def _faces(lines: list[str], nv: int) -> np.ndarray:
    try:
        flat = np.array(" ".join(lines).split(), dtype=np.int64)
    except ValueError:
        raise BadFileError("a face line holds something other than integers") from None
    if len(flat) == 4 * len(lines) and (flat[::4] == 3).all():  # all triangles, nothing after them: vectorised
        faces = flat.reshape(-1, 4)[:, 1:]
    else:
        faces = _polygon_faces(lines)
    if faces.min() < 0 or faces.max() >= nv:
        raise BadFileError(f"a face refers to a vertex outside 0..{nv - 1}")
    return faces


def _polygon_faces(lines: list[str]) -> np.ndarray:
    try:
        rows = [[int(t) for t in ln.split()] for ln in lines]
    except ValueError:
        raise BadFileError("a face line holds something other than integers") from None
    tris = []
    for r in rows:
        n = r[0] if r else 0
        if n < 3 or len(r) < n + 1:
            raise BadFileError(f"bad face line {' '.join(map(str, r))!r}")
        idx = r[1:n + 1]
        tris.extend([idx[0], idx[i], idx[i + 1]] for i in range(1, n - 1))
    return np.array(tris, dtype=np.int64)


def write_off(path: str | Path, vertices: np.ndarray, faces: np.ndarray, counts_on_off_line: bool = False) -> None:
    """Write a triangle mesh as OFF (for tests and tools); `counts_on_off_line` reproduces ModelNet40's quirk."""
    head = f"OFF{len(vertices)} {len(faces)} 0\n" if counts_on_off_line else f"OFF\n{len(vertices)} {len(faces)} 0\n"
    body = "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in vertices)
    body += "".join("3 " + " ".join(str(int(i)) for i in f) + "\n" for f in faces)
    Path(path).write_text(head + body, encoding="ascii")
