"""Is a candidate's lead on validation more than noise? Candidates (a test size and its members) and class-prior
decision rules, each against the first candidate's argmax, with lesion-level 95% intervals of the paired difference.

    python benchmarks/contrasts.py 224:runs/members/member_1/best.pt,runs/members/member_2/best.pt \
        192:runs/l2_192/best.pt --powers 0,0.25,0.5 --tta dihedral --views runs/val_views --json benchmarks/contrasts.json

A candidate is scored as benchmarks/ensembles.py scores it (as `dermcli ensemble --input-size SIZE --tta TTA` ships
it), from the same cached view logits. A prior power t decides argmax_k p_k / prior_k^t, the prior being the training
split's class frequencies: t = 1 maximises balanced accuracy when p is calibrated, t = 0 is the shipped argmax. The
probabilities, so both AUCs, do not change with t. Each difference resamples lesions with the same draws for both
sides. Validation only: the test split is never read.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from dermcli.core.labels import malignant_score, malignant_targets, model_targets
from dermcli.data.label_set import chosen_table
from dermcli.data.split import load_split, select
from dermcli.evaluation import bootstrap
from dermcli.evaluation.evaluate import resolve_split_file
from dermcli.evaluation.metrics import multiclass_summary, roc_auc
from dermcli.models.checkpoint import read_checkpoint
from dermcli.training.ensemble import SHARED_AT_ANY_SIZE, check_members

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ensembles import member_views, subset_probs  # noqa: E402

DECISION_FIGURES = ("accuracy", "balanced_accuracy", "macro_f1")


def parse_candidate(text: str) -> tuple[int, list[Path]]:
    size, _, members = text.partition(":")
    return int(size), [Path(m) for m in members.split(",")]


def decided(probs: np.ndarray, prior: np.ndarray, power: float) -> np.ndarray:
    return (probs / prior ** power).argmax(axis=1)


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
    weights = [w for _, members in candidates for w in members]
    metas = {w: read_checkpoint(w)["meta"] for w in weights}
    splits = [load_split(resolve_split_file(w, None)) for w in weights]
    check_members(weights, [metas[w] for w in weights], splits, SHARED_AT_ANY_SIZE)  # one split, one class list
    first = metas[weights[0]]
    table = chosen_table({**first.get("config", {}), "data": str(args.data)})
    val, train = select(table, splits[0], "val"), select(table, splits[0], "train")
    y = np.array(model_targets(val["dx"], first))
    prior = np.bincount(model_targets(train["dx"], first), minlength=len(first["class_names"])) / len(train)
    w = bootstrap.group_weights(val["lesion_id"].to_numpy(), args.resamples, seed=0)
    k, rows, reference = len(prior), [], None
    for size, members in candidates:
        views = [member_views(m, val, size, args.tta, args.views) for m in members]
        _, probs = subset_probs(views, [metas[m]["temperature"] for m in members], y)
        aucs = {"macro_auc": multiclass_summary(y, probs)["macro_auc"],
                "malignant_auc": roc_auc(malignant_targets(y, first), malignant_score(probs, first))}
        for power in map(float, args.powers.split(",")):
            pred = decided(probs, prior, power)
            point = bootstrap.confusion_scores(bootstrap.weighted_confusion(y, pred, k, np.ones((1, len(y)))))
            resampled = bootstrap.confusion_scores(bootstrap.weighted_confusion(y, pred, k, w))
            reference = reference or resampled
            row = {"size": size, "members": [str(m) for m in members], "prior_power": power,
                   **{f: float(point[f][0]) for f in DECISION_FIGURES}, **aucs,
                   "difference_95": {f: bootstrap.interval(resampled[f] - reference[f]) for f in DECISION_FIGURES}}
            rows.append(row)
            print(f"{size} px, {' + '.join(m.parent.name for m in members)}, prior power {power:g}: "
                  + ", ".join(f"{f} {row[f]:.4f} ({row['difference_95'][f][0]:+.3f} to {row['difference_95'][f][1]:+.3f})"
                              for f in DECISION_FIGURES) + f", macro_auc {aucs['macro_auc']:.4f}, malignant_auc {aucs['malignant_auc']:.4f}",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
