"""ModelNet40 in both layouts, written here as tiny real files: meshes with the OFF header quirk, the resampled
text files with their split lists, and the bad files a real download has."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError

from plinth.errors import ConfigError
from plinth.testing import make_context
from plinth_sparsepipe.data import BadFileError, BadFiles, ModelNet40Generator, load_split, read_off, read_split
from plinth_sparsepipe.data import scan_modelnet

CUBE_V = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
CUBE_QUADS = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


def cube_off(head: str = "OFF\n8 6 0\n", scale: float = 1.0) -> str:
    verts = "".join(f"{x * scale} {y * scale} {z * scale}\n" for x, y, z in CUBE_V)
    return head + verts + "".join("4 " + " ".join(map(str, q)) + "\n" for q in CUBE_QUADS)


TETRA = "OFF\n# a comment\n\n4 4 6\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3 255 0 0\n3 0 2 3\n3 1 2 3\n"


@pytest.mark.parametrize("head", ["OFF\n8 6 0\n", "OFF8 6 0\n", "OFF 8 6 0\n"])
def test_read_off_header_variants_and_quads(tmp_path, head):
    f = tmp_path / "cube.off"
    f.write_text(cube_off(head))
    v, faces = read_off(f)
    assert v.shape == (8, 3) and faces.shape == (12, 3)  # quads split into two triangles each
    a, b, c = (v[faces[:, i]] for i in range(3))
    assert np.linalg.norm(np.cross(b - a, c - a), axis=1).sum() / 2 == pytest.approx(24.0)  # 6 faces of 2 x 2


def test_read_off_comments_colours_and_bad_files(tmp_path):
    f = tmp_path / "t.off"
    f.write_text(TETRA)
    v, faces = read_off(f)
    assert v.shape == (4, 3) and faces.shape == (4, 3)
    cases = {
        "empty mesh": "OFF\n0 0 0\n",
        "not an OFF file": "ply\nformat ascii 1.0\n",
        "NaN": "OFF\n3 1 0\n0 0 0\nnan 0 0\n0 1 0\n3 0 1 2\n",
        "truncated": "OFF\n8 6 0\n0 0 0\n",
        "outside 0..2": "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n",
        "bad counts": "OFF\nfoo bar\n",
    }
    for why, text in cases.items():
        f.write_text(text)
        with pytest.raises(BadFileError, match=why):
            read_off(f)
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(BadFileError, match="not an ASCII OFF"):
        read_off(f)


def make_off_layout(root, bad=True):
    """chair (2 train, 1 test), table (1 train, 1 test: the quirk header), plus bad files."""
    for cls, split, name, text in [
        ("chair", "train", "chair_0001.off", cube_off()),
        ("chair", "train", "chair_0002.off", cube_off("OFF8 6 0\n", 2.0)),
        ("chair", "test", "chair_0003.off", TETRA),
        ("table", "train", "table_0001.off", cube_off("OFF 8 6 0\n", 0.5)),
        ("table", "test", "table_0002.off", cube_off("OFF8 6 0\n")),
    ]:
        (root / cls / split).mkdir(parents=True, exist_ok=True)
        (root / cls / split / name).write_text(text)
    if bad:
        (root / "chair" / "train" / "chair_0009.off").write_text("OFF\n0 0 0\n")  # empty
        (root / "table" / "train" / "table_0009.off").write_text(  # degenerate: all points on a line
            "OFF\n3 1 0\n0 0 0\n1 1 1\n2 2 2\n3 0 1 2\n")
        (root / "table" / "train" / "notes.txt").write_text("hello")
        (root / "__MACOSX").mkdir()  # not a class folder
    return root


def test_off_layout_reads_samples_by_area_and_reports_bad_files(tmp_path):
    root = make_off_layout(tmp_path / "ModelNet40")
    files = scan_modelnet(tmp_path)  # the parent folder is accepted too
    assert files.layout == "off" and files.classes == ["chair", "table"] and files.root == root
    train = list(read_split(files, "train", num_points=500, seed=0))
    assert [c.source for c in train] == ["chair/train/chair_0001.off", "chair/train/chair_0002.off",
                                         "table/train/table_0001.off"]
    for cloud, half in zip(train, (1.0, 2.0, 0.5)):
        assert cloud.points.shape == (500, 3) and cloud.normals.shape == (500, 3)
        np.testing.assert_allclose(np.abs(cloud.points).max(1), half, rtol=1e-5)  # every point on the cube
        on_x = np.isclose(np.abs(cloud.points[:, 0]), half, rtol=1e-5)
        assert abs(on_x.mean() - 1 / 3) < 4 * math.sqrt(2 / 9 / 500)  # 2 of 6 equal faces
    reasons = {p.split("ModelNet40/")[1]: r for p, r in files.bad.items}
    assert reasons["chair/train/chair_0009.off"].startswith("empty mesh")
    assert reasons["table/train/table_0009.off"].startswith("degenerate mesh")
    assert reasons["table/train/notes.txt"] == "not an .off file"
    assert "not a class folder" in reasons["__MACOSX"]
    again = list(read_split(scan_modelnet(root), "train", num_points=500, seed=0, workers=2))
    np.testing.assert_array_equal(again[1].points, train[1].points)  # same draw in a worker pool


def test_off_layout_class_errors_name_the_class(tmp_path):
    root = make_off_layout(tmp_path / "m", bad=False)
    (root / "sofa" / "train").mkdir(parents=True)
    (root / "sofa" / "train" / "sofa_0001.off").write_text(cube_off())
    with pytest.raises(ConfigError, match="class\\(es\\) sofa have no files in the 'test' split"):
        scan_modelnet(root)
    (root / "sofa" / "test").mkdir()
    (root / "sofa" / "test" / "sofa_0002.off").write_text("OFF\nNaN\n")
    files = scan_modelnet(root)
    with pytest.raises(ConfigError, match="every 'test' file of class\\(es\\) sofa is bad"):
        list(read_split(files, "test", num_points=64))
    with pytest.raises(ConfigError, match="\\['bed'\\] are not in this dataset"):
        scan_modelnet(root, classes=["chair", "bed"])
    sub = scan_modelnet(root, classes=["table", "chair"])
    assert sub.classes == ["table", "chair"] and sub.excluded == ["sofa"]


def test_missing_folder_and_wrong_layout_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nowhere'}: no such folder"):
        scan_modelnet(tmp_path / "nowhere")
    (tmp_path / "stuff" / "a").mkdir(parents=True)
    (tmp_path / "stuff" / "x.off").write_text(cube_off())
    with pytest.raises(ConfigError, match=f"{tmp_path / 'stuff'}: not a ModelNet folder in either layout"):
        scan_modelnet(tmp_path / "stuff")
    make_off_layout(tmp_path / "m", bad=False)
    with pytest.raises(ConfigError, match="layout = 'resampled' but the folder is in the 'off' layout"):
        scan_modelnet(tmp_path / "m", layout="resampled")


def make_resampled_layout(root):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "modelnet40_shape_names.txt").write_text("airplane\nnight_stand\n")
    (root / "modelnet40_train.txt").write_text("airplane_0001\nairplane_0002\nnight_stand_0001\nnight_stand_0007\n")
    (root / "modelnet40_test.txt").write_text("airplane_0003\nnight_stand_0002\nguitar_0001\n")
    for name, n in [("airplane_0001", 50), ("airplane_0002", 30), ("airplane_0003", 40), ("night_stand_0001", 20),
                    ("night_stand_0002", 25)]:
        cls = name.rsplit("_", 1)[0]
        (root / cls).mkdir(exist_ok=True)
        rows = np.column_stack([rng.random((n, 3)), np.tile([0.0, 0.0, 1.0], (n, 1))])
        (root / cls / f"{name}.txt").write_text("\n".join(",".join(f"{v:.6f}" for v in r) for r in rows) + "\n")
    (root / "airplane" / "airplane_0002.txt").write_text("0.1,0.2,nan,0,0,1\n")  # NaN
    (root / "guitar").mkdir()  # a class folder the names file does not know
    return root


def test_resampled_layout_reads_lists_and_reports_bad_entries(tmp_path):
    root = make_resampled_layout(tmp_path / "modelnet40_normal_resampled")
    files = scan_modelnet(root)
    assert files.layout == "resampled" and files.classes == ["airplane", "night_stand"]
    train = list(read_split(files, "train", num_points=32))
    assert [(c.source, len(c), c.label) for c in train] == [("airplane/airplane_0001.txt", 32, 0),
                                                            ("night_stand/night_stand_0001.txt", 20, 1)]
    np.testing.assert_array_equal(train[0].normals, np.tile([0, 0, 1], (32, 1)))
    reasons = sorted(r for _, r in files.bad.items)
    assert reasons == ["NaN or infinite values", "listed in modelnet40_test.txt with unknown class 'guitar'",
                       "listed in modelnet40_train.txt but missing", "unknown class folder (not in "
                       "modelnet40_shape_names.txt)"]
    (root / "modelnet40_test.txt").unlink()
    with pytest.raises(ConfigError, match="modelnet40_test.txt is missing"):
        scan_modelnet(root)


def test_modelnet40_generator_both_layouts(tmp_path):
    make_off_layout(tmp_path / "off")
    ctx = make_context(tmp_path / "run", stage="mn")
    out = ModelNet40Generator({"root": str(tmp_path / "off"), "num_points": 128}).generate(ctx)
    train = load_split(out["train"].path)
    assert len(train) == 3 and train.classes == ["chair", "table"] and train.normals is not None
    meta = json.loads((ctx.output_dir / "meta.json").read_text())
    assert meta["splits"]["train"]["per_class"] == {"chair": 2, "table": 1}
    assert len(meta["bad_files"]) == 4 and meta["source"]["layout"] == "off"
    assert ModelNet40Generator({"root": str(tmp_path / "off"), "num_points": 128}).generate(ctx)["train"].meta["cached"]
    (tmp_path / "off" / "chair" / "test" / "chair_0004.off").write_text(cube_off())  # the folder changed: rebuild
    out = ModelNet40Generator({"root": str(tmp_path / "off"), "num_points": 128}).generate(ctx)
    assert out["test"].meta["rows"] == 3 and not out["test"].meta["cached"]

    make_resampled_layout(tmp_path / "txt")
    ctx = make_context(tmp_path / "run", stage="mn2")
    out = ModelNet40Generator({"root": str(tmp_path / "txt"), "num_points": 16, "normals": False}).generate(ctx)
    test = load_split(out["test"].path)
    assert len(test) == 2 and test.normals is None and len(test[0]) == 16
    with pytest.raises(ValidationError, match="no such folder"):
        ModelNet40Generator({"root": str(tmp_path / "missing")})


def test_bad_files_summary_lists_paths():
    bad = BadFiles()
    for i in range(12):
        bad.add(f"/d/f{i}.off", "empty mesh")
    text = bad.summary(limit=3)
    assert text.startswith("12 bad file(s) skipped:") and "/d/f0.off: empty mesh" in text and "9 more" in text


def test_an_unexpected_error_in_one_file_skips_only_that_file(tmp_path, monkeypatch):
    from plinth_sparsepipe.data import modelnet

    root = make_off_layout(tmp_path / "m", bad=False)
    real = modelnet.read_off

    def flaky(path):
        if path.name == "chair_0002.off":
            raise ZeroDivisionError("surprise")
        return real(path)

    monkeypatch.setattr(modelnet, "read_off", flaky)
    files = scan_modelnet(root)
    train = list(read_split(files, "train", num_points=16))
    assert [c.source for c in train] == ["chair/train/chair_0001.off", "table/train/table_0001.off"]
    assert files.bad.items == [(str(root / "chair/train/chair_0002.off"), "unreadable (ZeroDivisionError: surprise)")]
