"""Which members, at which test size: the validation figures of every subset of some checkpoints, at each size.

    python benchmarks/ensembles.py A.pt B.pt C.pt --sizes 192,224 --tta dihedral --data ../shared/data/ham10000 \
        --views runs/val_views --json benchmarks/ensembles.json

Validation only: the test split is never read, so the default can be chosen here and tested once. A subset of one is
a model alone at a test size other than its training one (FixRes: trained on random resized crops, a model sees
objects larger than whole images show them, and a larger test size matches the two). Each subset is scored as
`dermcli ensemble --input-size SIZE --tta TTA` would ship it: the mean of its members' probabilities (each at its
own temperature), views averaged at the temperature fitted to them on these same validation images. Every member's
view logits are computed once per size and kept in --views (keyed by checkpoint, size and views).
"""

import argparse
import hashlib
import itertools
import json
import os
from pathlib import Path

import numpy as np

from dermcli.core.labels import malignant_score, malignant_targets, model_targets
from dermcli.data.cache import cache_key, cached_images
from dermcli.data.label_set import chosen_table
from dermcli.data.split import load_split, select
from dermcli.evaluation.evaluate import resolve_split_file
from dermcli.evaluation.metrics import calibrated_mean, multiclass_summary, roc_auc
from dermcli.inference.runners import TorchRunner
from dermcli.inference.tta import view_outputs
from dermcli.models.checkpoint import read_checkpoint
from dermcli.models.outputs import probabilities
from dermcli.training.ensemble import SHARED_AT_ANY_SIZE, check_members

# Issue 24's bars for the default, on test; shown here against validation only to rank candidates
BARS = {"accuracy": 0.85, "balanced_accuracy": 0.75, "macro_f1": 0.72, "macro_auc": 0.96, "malignant_auc": 0.94}


def member_views(weights: Path, val, size: int, tta: str, store: Path) -> np.ndarray:
    """(views, N, K) validation logits of one checkpoint at `size`; computed once (per checkpoint file, images,
    size and views), then read."""
    images = cache_key(val["path"].tolist(), size)
    key = hashlib.sha256(f"{weights.resolve()}:{weights.stat().st_mtime_ns}:{images}:{tta}".encode()).hexdigest()[:16]
    path = store / f"{weights.parent.name}_{weights.stem}_{size}_{tta}_{key}.npy"
    if not path.is_file():
        runner = TorchRunner.load(weights)
        logits = view_outputs(TorchRunner(runner.model, {**runner.meta, "input_size": size}), cached_images(val["path"].tolist(), size), tta)[0]
        store.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial.npy")
        np.save(partial, logits)
        partial.replace(path)
    return np.load(path)


def subset_probs(views: list[np.ndarray], temperatures: list[float], y: np.ndarray) -> tuple[float, np.ndarray]:
    """The temperature and probabilities of the members' mean, calibrated over the views. The mean is
    models.ensemble.Ensemble's output for several classes (this table is of the 7-class default)."""
    mean = [np.log(np.clip(np.mean([probabilities(v[i], t) for v, t in zip(views, temperatures)], axis=0), 1e-12, 1))
            for i in range(len(views[0]))]
    return calibrated_mean(mean, y)


def malignant_auc(y: np.ndarray, probs: np.ndarray, meta: dict) -> float:
    return roc_auc(malignant_targets(y, meta), malignant_score(probs, meta))


def subset_figures(views: list[np.ndarray], temperatures: list[float], y: np.ndarray, meta: dict) -> dict:
    """Figures of subset_probs."""
    temperature, probs = subset_probs(views, temperatures, y)
    summary = multiclass_summary(y, probs)
    return {**{k: summary[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")},
            "malignant_auc": malignant_auc(y, probs, meta), "temperature": temperature}


def candidates_split(weights: list[Path], data: Path):
    """The checkpoints' metas, the image table and the split they share (checked: one split, one class list)."""
    metas = [read_checkpoint(w)["meta"] for w in weights]
    splits = [load_split(resolve_split_file(w, None)) for w in weights]
    check_members(weights, metas, splits, SHARED_AT_ANY_SIZE)
    return metas, chosen_table({**metas[0].get("config", {}), "data": str(data)}), splits[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ham10000"))
    parser.add_argument("--sizes", default="224", help="Test sizes, comma-separated.")
    parser.add_argument("--tta", default="dihedral", help="none, flips or dihedral.")
    parser.add_argument("--views", type=Path, default=Path("runs/val_views"), help="Where the members' view logits are kept.")
    parser.add_argument("--json", type=Path, help="Also write the rows here.")
    args = parser.parse_args()
    metas, table, split = candidates_split(args.weights, args.data)
    first = metas[0]
    val = select(table, split, "val")
    y = np.array(model_targets(val["dx"], first))
    rows = []
    for size in map(int, args.sizes.split(",")):
        views = [member_views(w, val, size, args.tta, args.views) for w in args.weights]
        for chosen in (c for n in range(1, len(views) + 1) for c in itertools.combinations(range(len(views)), n)):
            row = {"members": [str(args.weights[i]) for i in chosen], "size": size, "tta": args.tta,
                   **subset_figures([views[i] for i in chosen], [metas[i]["temperature"] for i in chosen], y, first)}
            row["bars_met"] = sum(row[k] >= bar for k, bar in BARS.items())
            rows.append(row)
            print(f"{size} px, {' + '.join(Path(m).parent.name or m for m in row['members'])}: "
                  + ", ".join(f"{k} {row[k]:.4f}" for k in BARS) + f", bars met {row['bars_met']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
