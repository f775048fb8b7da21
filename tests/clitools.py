"""Run the CLI in-process and capture what it prints (rich writes to stderr)."""

from __future__ import annotations

import pytest

from fertrain.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out + captured.err
