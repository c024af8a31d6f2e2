"""Fixtures shared by the node tests: tiny checkpoints in a model root the nodes can find."""

from tests.support.model_root import tiny_flow_root, tiny_model_root, tiny_models  # noqa: F401
