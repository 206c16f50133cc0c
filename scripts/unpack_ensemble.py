"""Unpack an ensemble checkpoint's members into checkpoints of their own, each with the ensemble's split.csv
beside it, so that `dermcli ensemble` can combine them with new members (chosen on validation):

    python scripts/unpack_ensemble.py weights/lite0_ensemble_ham10000_7class.pt runs/members
    -> runs/members/member_1/best.pt, runs/members/member_1/split.csv, ...
"""

import argparse
import shutil
from pathlib import Path

from dermcli.evaluation.evaluate import resolve_split_file
from dermcli.models.checkpoint import read_checkpoint, write_payload

KEPT = ("training_resolution", "malignant", "data_classes", "data_malignant", "split_seed")  # what members share with their ensemble


def unpack(ensemble: Path, out: Path) -> list[Path]:
    payload = read_checkpoint(ensemble)
    meta = payload["meta"]
    members = meta["model_options"]["members"]
    split = resolve_split_file(ensemble, None)
    written = []
    for i, member in enumerate(members):
        prefix = f"members.{i}."
        state = {k[len(prefix):]: v for k, v in payload["state_dict"].items() if k.startswith(prefix)}
        folder = Path(out) / f"member_{i + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        member_meta = {**{k: v for k, v in member.items() if k != "weights"}, **{k: meta[k] for k in KEPT if k in meta},
                       "config": {"data": meta["config"]["data"]}, "unpacked_from": str(ensemble)}
        write_payload(folder / "best.pt", {**{k: v for k, v in payload.items() if k not in ("state_dict", "meta", "ood")},
                                           "meta": member_meta, "state_dict": state})
        shutil.copy(split, folder / "split.csv")
        written.append(folder / "best.pt")
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ensemble", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    for path in unpack(args.ensemble, args.out):
        print(path)
