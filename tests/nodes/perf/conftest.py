"""Tiny-checkpoint fixtures for the performance-policy tests (see tests/support/fixtures.py)."""

from tests.support.fixtures import *  # noqa: F403
