"""Tiny-checkpoint fixtures for the loader tests (see tests/support/fixtures.py)."""

from tests.support.fixtures import *  # noqa: F403
