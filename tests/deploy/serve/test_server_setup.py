"""``tamdeploy serve --setup`` without creating an environment: what it installs tamdeploy from."""

from __future__ import annotations

import subprocess
from pathlib import Path

import tamdeploy
from tamdeploy.deploy.serve.server import _pip_reason, _tamdeploy_source


def test_the_server_environment_installs_a_copy_of_the_checkout(tmp_path):
    """pip builds a local directory in place: installing from a copy keeps build/ (and files deleted since
    the last build, which setuptools would install again) out of the user's checkout."""
    checkout = Path(tamdeploy.__file__).resolve().parent.parent
    source = Path(_tamdeploy_source(tmp_path))
    assert source.parent == tmp_path
    assert (source / "pyproject.toml").read_bytes() == (checkout / "pyproject.toml").read_bytes()
    # every file git tracks is there (the package deploy/build too: only the top-level build/ is left out)
    tracked = subprocess.run(["git", "ls-files"], cwd=checkout, capture_output=True, text=True, check=True).stdout
    missing = [name for name in tracked.splitlines() if (checkout / name).exists() and not (source / name).exists()]
    assert missing == [] and (source / "deploy" / "build" / "pipeline.py").is_file()
    assert not {".git", ".venv", "build", "runs", "tamdeploy.egg-info"} & {p.name for p in source.iterdir()}
    assert not list(source.rglob("__pycache__"))


def test_a_failed_pip_step_says_what_pip_said():
    stderr = ("  error: subprocess-exited-with-error\n"
              "  x Getting requirements to build editable did not run successfully.\n"
              "  error: package directory 'deploy/build' does not exist\n"
              "note: This error originates from a subprocess, and is likely not a problem with pip.\n")
    assert _pip_reason(stderr) == "error: package directory 'deploy/build' does not exist"
    assert _pip_reason("") == "(no output)"
