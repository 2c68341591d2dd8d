"""plinth-teacher: teacher-guided alignment data (paper A's data construction) for SFT and KTO."""

__version__ = "0.1.0"
