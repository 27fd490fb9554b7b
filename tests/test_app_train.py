"""``python -m chexvision train``: artifacts, schedule, resume after a kill, NaN stop, no torch.

Every run goes through ``chexvision.cli.main(argv)`` on a small synthetic set (32×32 images,
a 1024-64-16-1 MLP), so a run takes a second or two.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from chexvision import checkpoint as ckpt
from chexvision.cli import main
from chexvision.config import TrainConfig, parse_threshold
from chexvision.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
# 2,000 synthetic 32×32 images (generated once per process), a 1024-64-16-1 MLP: about a second per run
SMALL = ["--dataset", "synthetic", "--synthetic-size", "2000", "--image-size", "32", "--hidden", "64,16",
         "--batch-size", "64", "--lr", "3e-3", "--no-progress"]


def train_args(out, cache, *extra, epochs=4, track="numpy") -> list[str]:
    return ["train", *SMALL, "--cache", str(cache), "--out", str(out), "--epochs", str(epochs), "--track", track,
            *map(str, extra)]


def history_without_time(run: Path) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in json.loads((run / "history.json").read_text())]


def assert_same_files(a: Path, b: Path, name: str) -> None:
    """Two .npz files hold the same arrays, bit for bit."""
    za, zb = ckpt.read_npz(a / name), ckpt.read_npz(b / name)
    assert list(za) == list(zb), f"{name}: keys differ"
    for k in za:
        assert za[k].dtype == zb[k].dtype and za[k].shape == zb[k].shape, f"{name}:{k}"
        np.testing.assert_array_equal(za[k], zb[k], err_msg=f"{name}:{k}")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def numpy_run(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("runs") / "numpy"
    assert main(train_args(out, cache, "--threshold", "sensitivity:0.9")) == 0
    return out


# -- a run's artifacts -----------------------------------------------------------------------------
def test_run_layout_and_checkpoint_contents(numpy_run):
    for name in ("best", "last"):
        d = numpy_run / name
        for f in (ckpt.MODEL_FILE, ckpt.STANDARDIZER_FILE, ckpt.CONFIG_FILE, ckpt.META_FILE):
            assert (d / f).is_file(), f"{name}/{f} missing"
    assert (numpy_run / "last" / ckpt.STATE_JSON).is_file() and (numpy_run / "last" / ckpt.STATE_NPZ).is_file()
    assert not (numpy_run / "best" / ckpt.STATE_JSON).exists(), "best/ needs no resume state"
    assert not list(numpy_run.glob("*.new")) and not list(numpy_run.glob("*.old"))

    weights = ckpt.read_npz(numpy_run / "best" / ckpt.MODEL_FILE)
    assert {k: v.shape for k, v in weights.items()} == {
        "layers.0.weight": (64, 1024), "layers.0.bias": (64,), "layers.3.weight": (16, 64), "layers.3.bias": (16,),
        "layers.6.weight": (1, 16), "layers.6.bias": (1,)}
    assert all(v.dtype == np.float32 for v in weights.values())
    config = json.loads((numpy_run / "best" / ckpt.CONFIG_FILE).read_text())
    assert config["format"] == ckpt.FORMAT and config["train"]["hidden"] == [64, 16]
    assert config["model"]["kind"] == "mlp" and config["model"]["in_features"] == 1024
    assert config["data"]["dataset"] == "synthetic"


def test_history_is_complete_and_learns(numpy_run):
    history = json.loads((numpy_run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    for h in history:
        for key in ("train_loss", "train_data_loss", "train_reg_loss", "val_loss", "val_accuracy", "val_auc", "lr"):
            assert math.isfinite(h[key]), f"epoch {h['epoch']}: {key}={h[key]}"
        assert h["train_loss"] == pytest.approx(h["train_data_loss"] + h["train_reg_loss"])
        assert h["train_reg_loss"] == 0.0  # no --l1/--l2
    assert history[-1]["val_auc"] > 0.85, history
    assert history[-1]["train_data_loss"] < history[0]["train_data_loss"]


def test_best_checkpoint_is_the_best_validation_auc(numpy_run):
    history = json.loads((numpy_run / "history.json").read_text())
    # the default rule: the highest validation AUC averaged over the last 3 epochs, first of ties
    window = json.loads((numpy_run / "best" / ckpt.CONFIG_FILE).read_text())["train"]["select_window"]
    aucs = [h["val_auc"] for h in history]
    best_epoch = 1 + int(np.argmax([np.mean(aucs[max(0, i + 1 - window):i + 1]) for i in range(len(aucs))]))
    meta = json.loads((numpy_run / "best" / ckpt.META_FILE).read_text())
    assert meta["epoch"] == best_epoch and meta["val_auc"] == history[best_epoch - 1]["val_auc"]
    # the stored threshold is the one chosen on validation with the configured rule
    assert meta["threshold"]["method"] == "sensitivity" and meta["threshold"]["method_value"] == 0.9
    assert 0.0 < meta["threshold"]["value"] < 1.0
    assert json.loads((numpy_run / "last" / ckpt.META_FILE).read_text())["epoch"] == 4


def test_learning_rate_warmup_then_cosine_per_epoch(numpy_run):
    lr = [h["lr"] for h in json.loads((numpy_run / "history.json").read_text())]
    base, start = 3e-3, TrainConfig.warmup_start_factor  # --lr 3e-3 in SMALL
    # LinearLR for 1 epoch from base·start, then CosineAnnealingLR(T_max = 4 − 1) from base
    expected = [base * start] + [base * (1 + math.cos(math.pi * t / 3)) / 2 for t in range(3)]
    np.testing.assert_allclose(lr, expected, rtol=1e-12)


def test_per_step_schedule_and_penalty_reported(tmp_path, cache):
    out = tmp_path / "run"
    assert main(train_args(out, cache, "--scheduler-interval", "step", "--warmup-epochs", "1", "--l2", "1e-3",
                           "--optimizer", "sgd", "--lr", "0.05", epochs=2)) == 0
    history = json.loads((out / "history.json").read_text())
    assert history[0]["lr"] == pytest.approx(0.05 * TrainConfig.warmup_start_factor)
    assert history[1]["lr"] == pytest.approx(0.05)  # warm-up over the first epoch's steps, then cosine from base
    assert all(h["train_reg_loss"] > 0 for h in history)


def test_weight_decay_on_weights_only():
    from chexvision.tracks import make_engine, model_spec

    cfg = TrainConfig(hidden=(8, 4), weight_decay=0.01)
    spec = model_spec("mlp", 4, cfg.hidden, cfg.dropout)
    for track in ("numpy", "torch"):
        engine = make_engine(track, spec)
        engine.build_model(0)
        engine.setup_training(cfg, steps_per_epoch=3)
        groups = engine.optimizer.param_groups
        decayed = [tuple(p.shape) for g in groups if g["weight_decay"] > 0 for p in g["params"]]
        plain = [tuple(p.shape) for g in groups if g["weight_decay"] == 0 for p in g["params"]]
        assert decayed == [(8, 16), (4, 8), (1, 4)], track
        assert plain == [(8,), (4,), (1,)], track


# -- resume ------------------------------------------------------------------------------------------
def _last_epoch(run: Path) -> int:
    try:
        return json.loads((run / "last" / ckpt.META_FILE).read_text())["epoch"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_resume_after_kill_equals_uninterrupted_run_bit_for_bit(tmp_path, cache, numpy_run):
    """Kill a subprocess run during epoch 3 (whatever it is doing), resume, compare with numpy_run."""
    out = tmp_path / "killed"
    argv = train_args(out, cache, "--threshold", "sensitivity:0.9")
    proc = subprocess.Popen([sys.executable, "-m", "chexvision", *argv], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _last_epoch(out) < 2:
        assert proc.poll() is None, f"training ended early: {proc.stderr.read().decode()}"
        assert time.monotonic() < deadline, "no epoch-2 checkpoint within 120 s"
        time.sleep(0.01)
    time.sleep(0.02)  # somewhere early in epoch 3 (an epoch takes ~0.3 s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _last_epoch(out) in (2, 3), "the kill should have come during epoch 3"
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0

    assert history_without_time(out) == history_without_time(numpy_run)
    for name in ("best", "last"):
        assert_same_files(out / name, numpy_run / name, ckpt.MODEL_FILE)
        assert json.loads((out / name / ckpt.META_FILE).read_text()) == \
            json.loads((numpy_run / name / ckpt.META_FILE).read_text())
    assert_same_files(out / "last", numpy_run / "last", ckpt.STATE_NPZ)  # optimizer moments too


def test_resume_torch_after_interrupt_matches_uninterrupted(tmp_path, cache, monkeypatch):
    """The torch track resumes too (interrupted in-process at the start of epoch 3)."""
    from chexvision import train

    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(train_args(full, cache, track="torch", epochs=3)) == 0
    original = train.Trainer._epoch

    def interrupted(self, epoch, steps):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, epoch, steps)

    monkeypatch.setattr(train.Trainer, "_epoch", interrupted)
    assert main(train_args(cut, cache, track="torch", epochs=3)) == 130
    monkeypatch.setattr(train.Trainer, "_epoch", original)
    assert _last_epoch(cut) == 2
    assert main(["train", "--resume", str(cut), "--no-progress"]) == 0
    a, b = history_without_time(cut), history_without_time(full)
    assert [h["epoch"] for h in a] == [1, 2, 3]
    for ha, hb in zip(a, b):
        for k in ha:
            assert ha[k] == pytest.approx(hb[k], rel=1e-6, abs=1e-7), k  # float tolerance (torch kernels)
    wa, wb = ckpt.read_npz(cut / "last" / ckpt.MODEL_FILE), ckpt.read_npz(full / "last" / ckpt.MODEL_FILE)
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_resume_of_a_finished_run_does_nothing(numpy_run, capsys):
    before = (numpy_run / "last" / ckpt.MODEL_FILE).read_bytes()
    assert main(["train", "--resume", str(numpy_run), "--no-progress"]) == 0
    assert "nothing to resume" in capsys.readouterr().out
    assert (numpy_run / "last" / ckpt.MODEL_FILE).read_bytes() == before


def test_resume_refuses_changed_options(numpy_run, capsys):
    assert main(["train", "--resume", str(numpy_run), "--lr", "0.1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--lr" in err


def test_existing_run_needs_resume_or_overwrite(numpy_run, cache, tmp_path, capsys):
    assert main(train_args(numpy_run, cache, epochs=1)) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err
    copy = tmp_path / "copy"
    shutil.copytree(numpy_run, copy)
    # an evaluation of the old run (ours: our schema, listing its files) goes with it
    (copy / "metrics.json").write_text(json.dumps({"schema": "chexvision.metrics/1", "files": ["metrics.json"]}))
    assert main(train_args(copy, cache, "--overwrite", epochs=1)) == 0
    assert len(json.loads((copy / "history.json").read_text())) == 1
    assert not (copy / "metrics.json").exists()


# -- divergence -------------------------------------------------------------------------------------
def test_absurd_learning_rate_stops_with_epoch_and_step(tmp_path, cache, capsys):
    out = tmp_path / "nan"
    code = main(train_args(out, cache, "--lr", "1e30", "--optimizer", "sgd", "--scheduler", "none", epochs=2))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "diverged at epoch 1/2, step" in err and "no checkpoint was written" in err
    assert not (out / "last").exists() and not (out / "last.new").exists()


def test_nan_later_keeps_the_last_good_checkpoint(tmp_path, cache, capsys, monkeypatch):
    from chexvision.tracks import numpy_track

    original_step, original_begin = numpy_track.Engine.train_step, numpy_track.Engine.begin_epoch
    seen = {"epoch": 0, "step": 0}

    def begin(self, seed, epoch):
        seen.update(epoch=epoch, step=0)
        return original_begin(self, seed, epoch)

    def poisoned(self, x, y):  # the 3rd step of epoch 2 returns a NaN loss
        seen["step"] += 1
        data, reg = original_step(self, x, y)
        return (math.nan, reg) if (seen["epoch"], seen["step"]) == (1, 3) else (data, reg)

    monkeypatch.setattr(numpy_track.Engine, "begin_epoch", begin)
    monkeypatch.setattr(numpy_track.Engine, "train_step", poisoned)
    out = tmp_path / "nan-later"
    assert main(train_args(out, cache, epochs=3)) == 2
    err = capsys.readouterr().err
    assert "diverged at epoch 2/3, step 3/" in err and "(epoch 1) is kept" in err
    assert _last_epoch(out) == 1 and (out / "best" / ckpt.MODEL_FILE).is_file()
    assert len(json.loads((out / "history.json").read_text())) == 1


# -- early stopping, no torch -----------------------------------------------------------------------
def test_patience_stops_early(tmp_path, cache, capsys):
    out = tmp_path / "patience"
    # a learning rate so small the validation ranking cannot change: no epoch beats the first
    assert main(train_args(out, cache, "--lr", "1e-12", "--dropout", "0", "--no-augment", "--patience", "2",
                           epochs=6)) == 0
    assert "early stop" in capsys.readouterr().out
    assert len(json.loads((out / "history.json").read_text())) == 3
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0  # stopped runs stay stopped
    assert len(json.loads((out / "history.json").read_text())) == 3


def test_numpy_training_never_imports_torch(tmp_path, cache):
    code = (
        "import sys; sys.modules['torch'] = None  # any import of torch now fails\n"
        "from chexvision.cli import main\n"
        f"rc = main({train_args(tmp_path / 'notorch', cache, epochs=1)!r})\n"
        "assert 'torch' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]\n"
        "sys.exit(rc)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "notorch" / "best" / ckpt.MODEL_FILE).is_file()


# -- checkpoint format units --------------------------------------------------------------------------
def _write_dir(d: Path, tag: str) -> None:
    d.mkdir(parents=True)
    (d / "tag").write_text(tag)


@pytest.mark.parametrize(
    "present, survivor",
    [
        (("last", "last.new"), "old"),  # a new write cut short: discard it
        (("last.old", "last.new"), "new"),  # killed between the two renames: promote the complete new
        (("last.old",), "old"),  # (cannot happen, but) keep what there is
        (("last.new",), None),  # the very first write cut short: nothing valid yet
        (("last", "last.old"), "new-in-place"),  # killed before deleting .old: keep last
    ],
    ids=["half-new", "between-renames", "only-old", "first-write", "stale-old"],
)
def test_recover_keeps_a_complete_checkpoint(tmp_path, present, survivor):
    tags = {"last": "new-in-place" if "last.old" in present else "old", "last.new": "new", "last.old": "old"}
    for name in present:
        _write_dir(tmp_path / name, tags[name])
    ckpt.recover(tmp_path / "last")
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if survivor is None else ["last"])
    if survivor is not None:
        assert (tmp_path / "last" / "tag").read_text() == survivor


def test_checkpoint_swap_replaces_atomically(tmp_path):
    target = tmp_path / "ck"
    for i in range(3):
        ckpt.write_checkpoint_dir(target, lambda d, i=i: (d / "tag").write_text(str(i)))
        assert (target / "tag").read_text() == str(i)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_flatten_state_round_trip_torch_and_numpy():
    import torch

    m = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.8, 0.9))
    m(torch.ones(4, 3)).sum().backward()
    opt.step()
    state = opt.state_dict()
    tree, arrays = ckpt.flatten_state(state, "opt", to_array=lambda t: t.numpy() if torch.is_tensor(t) else None)
    text = json.dumps(tree)  # JSON-able, no pickle
    back = ckpt.unflatten_state(json.loads(text), arrays, from_array=torch.from_numpy)
    assert back["param_groups"][0]["betas"] == (0.8, 0.9)
    assert list(back["state"]) == [0, 1]
    for k in state["state"]:
        for name, v in state["state"][k].items():
            torch.testing.assert_close(back["state"][k][name], v, rtol=0, atol=0)
    plain = {"a": np.float32(1.5), "b": [np.arange(3), (1, "x")], "rng": np.random.default_rng(3).bit_generator.state}
    tree, arrays = ckpt.flatten_state(plain, "p")
    back = ckpt.unflatten_state(json.loads(json.dumps(tree)), arrays)
    assert back["a"] == np.float32(1.5) and back["a"].dtype == np.float32
    np.testing.assert_array_equal(back["b"][0], np.arange(3))
    assert back["b"][1] == (1, "x") and back["rng"] == plain["rng"]


def test_config_checks_and_threshold_specs():
    assert parse_threshold("youden") == ("youden", None)
    assert parse_threshold("fixed:0.5") == ("fixed", 0.5)
    assert parse_threshold("sensitivity:0.9") == ("sensitivity", 0.9)
    for bad in ("fixed", "sensitivity:2", "youden:1", "median"):
        with pytest.raises(UserError, match="--threshold"):
            parse_threshold(bad)
    with pytest.raises(UserError, match="--lr"):
        TrainConfig(lr=0)
    with pytest.raises(UserError, match="torch track only"):
        TrainConfig(track="numpy", device="cuda")
    cfg = TrainConfig(hidden=(5, 3), pos_weight="auto")
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.slow
def test_quick_start_defaults_learn_the_task_in_under_a_minute(tmp_path):
    """The README's first command, with every default: measured ~14 s on an idle 2-core machine."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "chexvision", "train", "--dataset", "synthetic", "--no-progress"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr
    assert seconds < 60, f"quick start took {seconds:.1f} s"
    run = tmp_path / "runs" / "synthetic-numpy"
    assert main(["evaluate", "--checkpoint", str(run), "--n-boot", "100", "--no-progress"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["roc_auc"] >= 0.9, metrics["test"]["roc_auc"]
