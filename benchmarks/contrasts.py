"""Is a candidate's lead on validation more than noise? Candidates (a test size and its members) and class-prior
decision rules, each against the first candidate's argmax, with lesion-level 95% intervals of the paired difference.

    python benchmarks/contrasts.py 224:runs/members/member_1/best.pt,runs/members/member_2/best.pt \
        192:runs/l2_192/best.pt --powers 0,0.25,0.5 --tta dihedral --views runs/val_views --json benchmarks/contrasts.json

A candidate is scored as benchmarks/ensembles.py scores it (as `dermcli ensemble --input-size SIZE --tta TTA` ships
it), from the same cached view logits. A prior power t decides argmax_k p_k / prior_k^t, the prior being the training
split's class frequencies: t = 1 maximises balanced accuracy when p is calibrated to the training prior, t = 0 is the
shipped argmax. Members trained with class weights (sqrt: about prior^-0.5) have part of that correction in p already,
and their temperatures were fitted on these validation images. The probabilities, so both AUCs, do not
change with t. Each difference resamples lesions with the same draws for both sides. Validation only: the test split
is never read.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from dermcli.core.labels import model_targets
from dermcli.data.split import select
from dermcli.evaluation import bootstrap
from dermcli.evaluation.metrics import multiclass_summary

try:  # imported as benchmarks.contrasts (the tests), or run as a script from anywhere
    from benchmarks.ensembles import candidates_split, malignant_auc, member_views, subset_probs
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ensembles import candidates_split, malignant_auc, member_views, subset_probs

DECISION_FIGURES = ("accuracy", "balanced_accuracy", "macro_f1")


def parse_candidate(text: str) -> tuple[int, list[Path]]:
    size, _, members = text.partition(":")
    return int(size), [Path(m) for m in members.split(",")]


def decided(probs: np.ndarray, prior: np.ndarray, power: float) -> np.ndarray:
    return (probs / prior ** power).argmax(axis=1)


def training_prior(table, split, meta: dict) -> np.ndarray:
    """The class frequencies of the training split, in the model's class order; every class must be there (a
    prior of 0 would divide by zero)."""
    counts = np.bincount(model_targets(select(table, split, "train")["dx"], meta), minlength=len(meta["class_names"]))
    if not counts.all():
        raise SystemExit(f"no training image of {', '.join(np.array(meta['class_names'])[counts == 0])}: its prior would be 0")
    return counts / counts.sum()


def decision_rows(y: np.ndarray, candidates: list[tuple[dict, np.ndarray]], prior: np.ndarray, powers: list[float],
                  w: np.ndarray) -> list[dict]:
    """A row per candidate (its row so far, its probabilities) and prior power: the decision figures, and 95% intervals
    of their paired difference to the first candidate's argmax over the resample weights `w` (one draw of lesions
    per row of w, the same draws for every row)."""
    if 0 not in powers:
        raise SystemExit("--powers must include 0: the reference is the first candidate's argmax")
    rows, resampled = [], []
    for row, probs in candidates:
        for power in powers:
            pred = decided(probs, prior, power)
            point = bootstrap.confusion_scores(bootstrap.weighted_confusion(y, pred, len(prior), np.ones((1, len(y)))))
            resampled.append(bootstrap.confusion_scores(bootstrap.weighted_confusion(y, pred, len(prior), w)))
            rows.append({**row, "prior_power": power, **{f: float(point[f][0]) for f in DECISION_FIGURES}})
    reference = resampled[powers.index(0)]
    for row, scores in zip(rows, resampled):
        row["difference_95"] = {f: bootstrap.interval(scores[f] - reference[f]) for f in DECISION_FIGURES}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("candidates", nargs="+", help="SIZE:A.pt[,B.pt...]; the first is the reference.")
    parser.add_argument("--powers", default="0", help="Prior powers, comma-separated (0: argmax).")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ham10000"))
    parser.add_argument("--tta", default="dihedral", help="none, flips or dihedral.")
    parser.add_argument("--views", type=Path, default=Path("runs/val_views"), help="Where the members' view logits are kept.")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="Also write the rows here.")
    args = parser.parse_args()
    candidates = [parse_candidate(c) for c in args.candidates]
    weights = list(dict.fromkeys(w for _, members in candidates for w in members))
    metas, table, split = candidates_split(weights, args.data)
    metas, first = dict(zip(weights, metas)), metas[0]
    val = select(table, split, "val")
    y = np.array(model_targets(val["dx"], first))
    scored = []
    for size, members in candidates:
        views = [member_views(m, val, size, args.tta, args.views) for m in members]
        _, probs = subset_probs(views, [metas[m]["temperature"] for m in members], y)
        scored.append(({"size": size, "members": [str(m) for m in members], "macro_auc": multiclass_summary(y, probs)["macro_auc"],
                        "malignant_auc": malignant_auc(y, probs, first)}, probs))
    rows = decision_rows(y, scored, training_prior(table, split, first), [float(p) for p in args.powers.split(",")],
                         bootstrap.group_weights(val["lesion_id"].to_numpy(), args.resamples, seed=0))
    for row in rows:
        print(f"{row['size']} px, {' + '.join(Path(m).parent.name for m in row['members'])}, prior power {row['prior_power']:g}: "
              + ", ".join(f"{f} {row[f]:.4f} ({row['difference_95'][f][0]:+.3f} to {row['difference_95'][f][1]:+.3f})"
                          for f in DECISION_FIGURES) + f", macro_auc {row['macro_auc']:.4f}, malignant_auc {row['malignant_auc']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
