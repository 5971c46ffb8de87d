"""``tamdeploy serve --setup`` without creating an environment: what it installs tamdeploy from."""

from __future__ import annotations

from pathlib import Path

import tamdeploy
from tamdeploy.deploy.serve.server import _tamdeploy_source


def test_the_server_environment_installs_a_copy_of_the_checkout(tmp_path):
    """pip builds a local directory in place: installing from a copy keeps build/ (and files deleted since
    the last build, which setuptools would install again) out of the user's checkout."""
    checkout = Path(tamdeploy.__file__).resolve().parent.parent
    source = Path(_tamdeploy_source(tmp_path))
    assert source.parent == tmp_path
    assert (source / "pyproject.toml").read_bytes() == (checkout / "pyproject.toml").read_bytes()
    assert (source / "deploy" / "serve" / "server.py").is_file() and (source / "plugins" / "contract.py").is_file()
    assert not {".git", ".venv", "build", "runs", "tamdeploy.egg-info"} & {p.name for p in source.iterdir()}
