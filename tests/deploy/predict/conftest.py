"""The labelled set and trained model, made once for the predict, eval and Ray tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.labelled_set import make_labelled_set


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> dict[str, Path]:
    return make_labelled_set(tmp_path_factory.mktemp("labelled"))
