"""The `pointcloud` evaluator: accuracy, mean class accuracy, mIoU with 95% intervals in plinth.metrics/v1."""

from plinth.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__, {"PointcloudEvaluator": "evaluator", "PointcloudEvaluatorConfig": "evaluator"})
