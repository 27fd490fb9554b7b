"""``python -m chexvision convert --pth X.pth --out Y.npz``: a torch state_dict to our ``.npz``.

So the NumPy track can serve, or start from, weights trained with torch elsewhere (a Kaggle GPU,
torchvision's ImageNet densenet121) on a machine without torch: the ``.npz`` holds the same names,
shapes and dtypes (torchvision's legacy ``norm.1``-style names renamed), no pickle. Reading the
``.pth`` needs torch (``torch.load(weights_only=True)``: tensors only, no code runs). The result
is what ``train --pretrained Y.npz`` reads on either track.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError

HELP = "convert a torch .pth state_dict into a .npz the NumPy track reads without torch"


def add_arguments(p) -> None:
    p.add_argument("--pth", metavar="FILE", required=True, help="torch state_dict (.pth/.pt), read with weights_only=True")
    p.add_argument("--out", metavar="FILE", required=True, help="the .npz to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args) -> int:
    out = Path(args.out)
    if out.suffix.lower() != ".npz":
        raise UserError(f"--out {out}: give a file name ending in .npz")
    if out.exists() and not args.overwrite:
        raise UserError(f"--out {out} exists; pass --overwrite to replace it")
    if out.is_dir():
        raise UserError(f"--out {out} is a directory")
    if not Path(args.pth).is_file():
        raise UserError(f"--pth {args.pth}: no such file")
    from numpy_nn.serialization import save

    from .densenet import _torch_io

    state = _torch_io(args.pth).read_pth(args.pth)
    save(state, out)
    n = sum(int(v.size) for v in state.values())
    print(f"wrote {out}: {len(state)} arrays, {n:,} values")
    return 0
