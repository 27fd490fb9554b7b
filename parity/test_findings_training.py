"""A multi-output (--task findings) training run in float64: the NumPy engine equals torch in lockstep.

The app's own engines (``chexvision.tracks``) train one MLP with three outputs on batches whose
labels hold masked entries (−1, U-Ignore), with a per-finding ``pos_weight`` vector and label
smoothing: after every step the losses, every weight and every optimizer state entry agree.
"""

from __future__ import annotations

import numpy as np

from chexvision.config import TrainConfig
from chexvision.tracks import make_engine, model_spec
from parity.helpers import assert_close

K, SIZE, BATCH = 3, 8, 16


def _batches(steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    fixed = []
    for _ in range(4):
        x = rng.standard_normal((BATCH, SIZE * SIZE))
        y = (rng.random((BATCH, K)) < [0.4, 0.2, 0.1]).astype(np.float64)
        y[rng.random((BATCH, K)) < 0.2] = -1.0  # masked entries
        fixed.append((x, y))
    return [fixed[s % len(fixed)] for s in range(steps)]


def test_findings_engines_in_lockstep_float64():
    cfg = TrainConfig(epochs=3, hidden=(12,), dropout=0.2, optimizer="adamw", lr=5e-3, weight_decay=1e-2,
                      label_smoothing=0.1, l2=1e-3, dtype="float64", scheduler="none")
    spec = model_spec("mlp", SIZE, cfg.hidden, cfg.dropout, out_features=K)
    pos_weight = [1.5, 4.0, 9.0]
    np_eng = make_engine("numpy", spec, dtype="float64")
    t_eng = make_engine("torch", spec, dtype="float64", lockstep=True)
    losses = []
    for eng in (np_eng, t_eng):
        eng.build_model(cfg.seed)
        eng.setup_training(cfg, 4, pos_weight)
    for epoch in range(3):
        for eng in (np_eng, t_eng):
            eng.begin_epoch(cfg.seed, epoch)
        for step, (x, y) in enumerate(_batches(4)):
            a = np_eng.train_step(x, y)
            b = t_eng.train_step(x, y)
            where = f"epoch {epoch} step {step}"
            assert_close(np.float64(a[0]), np.float64(b[0]), f"{where}: data loss", np.float64)
            assert_close(np.float64(a[1]), np.float64(b[1]), f"{where}: penalty", np.float64)
            ws_np, ws_t = np_eng.model_state(), t_eng.model_state()
            assert list(ws_np) == list(ws_t)
            for name in ws_np:
                assert_close(ws_np[name], ws_t[name], f"{where}: {name}", np.float64)
            losses.append(a[0])
    # optimizer states: the same moments per parameter, in the same order
    s_np, s_t = np_eng.optimizer.state_dict()["state"], t_eng.optimizer.state_dict()["state"]
    assert sorted(s_np) == sorted(s_t)
    for i in s_np:
        for key in ("exp_avg", "exp_avg_sq"):
            assert_close(np.asarray(s_np[i][key]), s_t[i][key], f"state {i} {key}", np.float64)
        assert float(s_np[i]["step"]) == float(s_t[i]["step"])
    # the scores of both engines agree and have one column per finding
    x = _batches(1)[0][0]
    ln, lt = np_eng.logits([(x, None)]), t_eng.logits([(x, None)])
    assert ln.shape == (BATCH, K)
    assert_close(ln, lt, "logits", np.float64)
    assert np.mean(losses[-4:]) < np.mean(losses[:4])  # it learns: not a vacuous match

