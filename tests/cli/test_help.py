"""Every command's --help reads like a well-kept CLI: usage with upper-case arguments, flags without a type
placeholder, docstrings reflowed to the terminal's width."""

from __future__ import annotations

import re

import pytest
from helpers.cli import invoke

from tamdeploy.cli.app import COMMANDS

NAMES = [command.__name__ for command in COMMANDS]


@pytest.mark.parametrize("name", NAMES)
def test_help_has_no_type_placeholders_or_braces(name):
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "<bool>" not in text and not re.search(r"<(str|int|path|float)>", text)
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "[OPTIONS]" in usage
    assert "--json" in text and "--help" in text


def test_top_level_help_lists_the_commands_in_workflow_order():
    text = invoke("--help").stdout
    positions = [text.index(f" {name} ") for name in NAMES]
    assert positions == sorted(positions) and "--version" in text


def test_wrapped_docstrings_are_reflowed():
    # export's second paragraph was cut after "batch" and continued with "1" on a line of its own
    lines = [line.strip(" │") for line in invoke("export", "--help").stdout.splitlines()]
    assert not any(line.strip() in {"1", "and", "3,"} for line in lines)
