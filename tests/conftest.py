"""Fixtures for every test; shared helpers live in the ``helpers`` package (tests/helpers)."""

from __future__ import annotations

import pytest
from helpers.cli import invoke


@pytest.fixture
def cli():
    return invoke
