"""The bench command's mechanics (fast) and one real quick run of every section (slow)."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types

import pytest

from chexvision import bench
from chexvision.cli import main


@pytest.fixture
def fake_section(monkeypatch):
    """A registered section whose rows we know, so the table and the JSON can be checked exactly."""
    mod = types.ModuleType("chexvision_fake_section")
    mod.__spec__ = importlib.machinery.ModuleSpec("chexvision_fake_section", None)
    mod.TITLE = "fake section"
    mod.run = lambda quick: [{"case": "a", "ms": 1.5, "ratio": 2.0}, {"case": "bb", "ms": 123456.0}]
    monkeypatch.setitem(sys.modules, "chexvision_fake_section", mod)
    monkeypatch.setitem(bench.SECTIONS, "fake", "chexvision_fake_section")
    return mod


def test_table_and_json(fake_section, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--only", "fake", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "== fake section" in printed
    lines = [ln for ln in printed.splitlines() if ln.strip()]
    header = lines[lines.index(next(ln for ln in lines if ln.startswith("== fake"))) + 1]
    assert header.split() == ["case", "ms", "ratio"]
    assert "123,456" in printed and "1.5" in printed
    data = json.loads(out.read_text())
    assert data["quick"] is True
    assert data["sections"]["fake"] == fake_section.run(True)


def test_unknown_section_is_one_line_error(capsys):
    assert main(["bench", "--only", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown bench section" in err[0] and "nope" in err[0]


def test_format_table_aligns_columns():
    text = bench.format_table([{"a": 1, "b": "x"}, {"a": 22.25, "c": None}])
    rows = text.splitlines()
    assert rows[0].split() == ["a", "b", "c"]
    assert len({len(r) for r in rows}) == 1  # every row padded to the same width


@pytest.mark.slow
def test_quick_bench_runs_every_section(tmp_path):
    """python -m chexvision bench --quick: every section prints and the JSON holds NumPy/torch ratios."""
    pytest.importorskip("torch")
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--json", str(out)]) == 0
    sections = json.loads(out.read_text())["sections"]
    assert set(sections) == set(bench.SECTIONS)
    for name, rows in sections.items():
        assert rows, f"section {name} returned no rows"
    engines = {r.get("engine") for r in sections["mlp"]}
    assert {"numpy", "torch Adam", "torch Adam fused"} <= engines
