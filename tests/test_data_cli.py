"""`python -m chexvision preprocess` and the data options: one clear line per mistake, exit 2."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from chexvision.cli import main
from chexvision.data import add_data_arguments, data_config, open_dataset
from chexvision.data.fake import make_nih
from chexvision.errors import UserError


def _run(capsys, *argv):
    code = main(["preprocess", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("chexvision preprocess: error:"), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_preprocess_fake_nih_with_a_bad_file(tmp_path, capsys):
    info = make_nih(tmp_path / "nih", n=60)
    (tmp_path / "nih" / info["paths"][5]).write_bytes(b"")  # zero bytes
    code, out, err = _run(capsys, "--dataset", "nih", "--data-dir", str(tmp_path / "nih"), "--cache",
                          str(tmp_path / "c"), "--workers", "1", "--quiet", "--val-fraction", "0.2")
    assert code == 0, err
    assert "dataset nih: 59 images" in out and "official split" in out
    assert "skipped, unreadable               1  (1 empty file)" in out
    report = (tmp_path / "c" / "bad_files.csv").read_text()
    assert info["names"][5] in report and "empty file" in report


@pytest.mark.parametrize("argv,needles", [
    (["--dataset", "nih", "--data-dir", "{tmp}/nope"], ["--data-dir", "no such file or folder"]),
    (["--dataset", "nih"], ["needs --data-dir"]),
    (["--dataset", "chexpert", "--data-dir", "{tmp}"], ["no CheXpert train.csv"]),
    (["--dataset", "folder", "--data-dir", "{tmp}"], ["expected normal/ and abnormal/"]),
    (["--val-fraction", "1.5", "--dataset", "folder", "--data-dir", "{tmp}"], ["--val-fraction must be between"]),
    (["--image-size", "0", "--dataset", "folder", "--data-dir", "{tmp}"], ["--image-size must be"]),
], ids=["missing-dir", "no-data-dir", "no-train-csv", "empty-folder", "bad-fraction", "bad-size"])
def test_user_errors_are_one_line(tmp_path, capsys, argv, needles):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = _run(capsys, *argv, "--cache", str(tmp_path / "c"))
    assert code == 2
    _one_line_error(err, *needles)


def test_csv_missing_column_is_one_line(tmp_path, capsys):
    info = make_nih(tmp_path, n=8, variant="v2020")
    info["label_file"].write_text(info["label_file"].read_text().replace("Finding Labels", "Findings"))
    code, _, err = _run(capsys, "--dataset", "nih", "--data-dir", str(tmp_path), "--cache", str(tmp_path / "c"))
    assert code == 2
    _one_line_error(err, "missing column 'Finding Labels'", "Data_Entry_2017_v2020.csv")


def test_synthetic_needs_no_preprocessing(capsys):
    code, out, _ = _run(capsys)
    assert code == 0 and "nothing to preprocess" in out


def test_data_config_is_json_and_reopens_the_same_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_nih(tmp_path / "nih", n=60)
    p = argparse.ArgumentParser()
    add_data_arguments(p)
    args = p.parse_args(["--dataset", "nih", "--data-dir", "nih", "--workers", "1", "--val-fraction", "0.2"])
    cfg = data_config(args)
    assert cfg["data_dir"] == str(tmp_path / "nih") and cfg["cache"].startswith(str(tmp_path / "cache" / "nih-64px-"))
    a = open_dataset(cfg, progress=False)
    b = open_dataset(json.loads(json.dumps(cfg)), progress=False)
    assert np.array_equal(np.asarray(a.images), np.asarray(b.images)) and np.array_equal(a.splits, b.splits)


def test_data_config_defaults_and_synthetic():
    p = argparse.ArgumentParser()
    add_data_arguments(p)
    cfg = data_config(p.parse_args([]))
    assert cfg["dataset"] == "synthetic" and cfg["image_size"] == 64 and cfg["cache"] is None
    assert cfg["synthetic_size"] == 2000 and cfg["seed"] == 0 and cfg["val_fraction"] == 0.1
    json.dumps(cfg)
    with pytest.raises(UserError, match="unknown data setting"):
        open_dataset({"dataset": "synthetic", "colour": "blue"})
