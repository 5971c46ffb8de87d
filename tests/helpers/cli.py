"""Run the CLI in-process and read its JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass

from typer.testing import CliRunner

from tamdeploy.cli.app import app


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None

    def json(self) -> dict:
        return json.loads(self.stdout)


def invoke(*args: str) -> CliResult:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return CliResult(result.exit_code, result.stdout, result.stderr, result.exception)
