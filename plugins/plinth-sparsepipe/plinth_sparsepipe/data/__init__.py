"""Point-cloud data for plinth-sparsepipe: datasets on disk, the transforms, and what the trainer iterates.

The trainer's whole API:

    from plinth_sparsepipe.data import PointCloudDataset, collate, Augment
    train = PointCloudDataset(ctx.input("dataset").path, voxel_size=0.02, num_points=4096,
                              features=("ones",), augment=Augment(rotate_axis="z"), seed=0)
    loader = DataLoader(train, batch_size=32, shuffle=True, collate_fn=collate)
    train.set_epoch(epoch)                       # new augmentation draws each epoch
    batch["input"]   SparseTensor (coords int32 [N, 4], feats [N, C]);  model(in_channels=train.in_channels,
    batch["labels"]  int64 [B]                                          num_classes=train.num_classes)
    segmentation:    batch["voxel_labels"] [N] (loss), batch["point_labels"] / ["point_to_voxel"] (per-point score)
    dense baseline:  DenseGridDataset(path, resolution=32, num_points=2048) + dense_collate -> [B, 1, 32, 32, 32]

Datasets on disk (`store`): `load_split(path) -> PointCloudSet` (`ds[i] -> PointCloud`, `.classes`, `.task`),
`write_split`, `write_meta`. Readers: `scan_modelnet` / `read_split` (ModelNet40, both layouts), `read_off`,
`read_ply`. Procedural: `make_shape`, `make_scene`, `SHAPE_CLASSES`. Transforms: `normalize_unit_cube`,
`normalize_per_axis`, `voxelize`, `farthest_point_sample`, `random_sample`, `sample_triangles`, `Augment`,
`point_features`, `occupancy_grid`. Generators (pipeline components): `shapes`, `scenes`, `modelnet40`,
`ply_points`. Names resolve on first use, so importing this package imports neither torch nor pyarrow.
"""

from __future__ import annotations

from plinth.lazy import lazy_exports

_EXPORTS = {
    "PointCloud": "cloud", "IGNORE_LABEL": "cloud",
    "BadFiles": "badfiles", "BadFileError": "badfiles",
    "normalize_unit_cube": "normalization", "normalize_per_axis": "normalization", "normalize": "normalization",
    "voxelize": "voxels", "Voxels": "voxels", "voxel_majority": "voxels",
    "farthest_point_sample": "sampling", "random_sample": "sampling", "sample_triangles": "sampling",
    "Augment": "augment", "point_features": "features", "feature_channels": "features", "FEATURES": "features",
    "SHAPE_CLASSES": "shapes", "ShapeStyle": "shapes", "make_shape": "shapes",
    "SceneStyle": "scenes", "make_scene": "scenes",
    "PointCloudSet": "store", "load_split": "store", "write_split": "store", "write_meta": "store", "SCHEMA": "store",
    "read_off": "off", "write_off": "off", "read_ply": "ply", "write_ply": "ply", "split_blocks": "ply",
    "scan_modelnet": "modelnet", "read_split": "modelnet", "detect_layout": "modelnet",
    "PointCloudDataset": "torch_dataset", "collate": "torch_dataset",
    "DenseGridDataset": "dense", "dense_collate": "dense", "occupancy_grid": "dense",
    "ShapesGenerator": "procedural", "ScenesGenerator": "procedural",
    "ModelNet40Generator": "local_generators", "PlyPointsGenerator": "local_generators",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
