"""Fixtures for the batch tests: the tiny checkpoints, for the XY Sweep cells run as jobs."""

from tests.support.model_root import tiny_model_root, tiny_models  # noqa: F401
