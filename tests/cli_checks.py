"""Checks shared by the command-line tests: a user's mistake is one line on stderr, never a traceback."""

from __future__ import annotations


def one_line_error(capsys, *needles: str) -> str:
    """Assert stderr holds exactly one line, no traceback, and every needle; return that line."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, f"expected one line on stderr, got:\n{err}"
    assert "Traceback" not in err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    return err
