"""`dermcli compare`: is model B really better than model A on the same images?

Every difference B - A comes with a 95% paired bootstrap interval and p-value that resample lesions (the
same resamples for both models), plus DeLong's test for the two ROC-AUCs and McNemar's test for paired
correctness. Works from eval folders alone, like `report`.
"""

from pathlib import Path

import numpy as np

from dermcli.core.errors import DermcliError
from dermcli.core.files import ensure_writable_dir, write_text
from dermcli.evaluation import bootstrap
from dermcli.evaluation.formatting import num
from dermcli.evaluation.plots import overlaid_curves_plot
from dermcli.evaluation.report import decisions, json_text, load_eval
from dermcli.evaluation.stats import bootstrap_p, delong, mcnemar

METRICS = [("roc_auc", "ROC-AUC (malignant)"), ("pr_auc", "PR-AUC (malignant)"), ("accuracy", "Accuracy"),
           ("balanced_accuracy", "Balanced accuracy"), ("macro_f1", "Macro F1"),
           ("sensitivity", "Sensitivity"), ("specificity", "Specificity")]


def load_aligned(folders: list[Path]) -> list[dict]:
    """Each eval folder's info, name and arrays, rows in one image order; refuses folders of other images."""
    evals = []
    for folder in folders:
        info, predictions = load_eval(folder)
        predictions = predictions.sort_values("image_id", kind="stable").reset_index(drop=True)
        evals.append({"folder": str(folder), "info": info, "predictions": predictions, **decisions(info, predictions)})
    first = evals[0]
    for other in evals[1:]:
        a, b = first["predictions"], other["predictions"]
        only = sorted(set(b["image_id"]) ^ set(a["image_id"]))
        if only:
            where = other["folder"] if only[0] in set(b["image_id"]) else first["folder"]
            raise DermcliError(f"{other['folder']}: not the same images as {first['folder']} "
                               f"(image {only[0]} is only in {where}; {len(only)} differ)")
        for column in ("lesion_id",):
            differs = np.flatnonzero(a[column].to_numpy() != b[column].to_numpy())
            if len(differs):
                raise DermcliError(f"{other['folder']}: image {a['image_id'][differs[0]]} has {column} {b[column][differs[0]]!r}, "
                                   f"not {a[column][differs[0]]!r} as in {first['folder']}")
        same_classes = first["info"]["class_names"] == other["info"]["class_names"]
        differs = np.flatnonzero((first["y"] != other["y"]) if same_classes else (first["y_mal"] != other["y_mal"]))
        if len(differs):
            raise DermcliError(f"{other['folder']}: image {a['image_id'][differs[0]]} is labelled differently than in {first['folder']}")
    names = [Path(e["info"].get("weights") or e["folder"]).stem for e in evals]
    for e, name in zip(evals, names):
        e["name"] = name if names.count(name) == 1 else e["folder"]
    return evals


def basis(evals: list[dict]) -> str:
    """What accuracy, balanced accuracy and macro-F1 are of: the 7 classes if every model names them,
    else the malignant-vs-benign call at each model's own threshold (the one question all models answer)."""
    return "7-class" if all(e["info"]["task"] == "multiclass" for e in evals) else "malignant vs benign"


def compare(evals: list[dict], resamples: int = 1000, seed: int = 0) -> dict:
    """Each model of `load_aligned` against the first: per metric A, B, B - A, its 95% interval and p; DeLong; McNemar."""
    on = basis(evals)
    first = evals[0]
    w = bootstrap.group_weights(first["predictions"]["lesion_id"].to_numpy(), resamples, seed)
    w = np.vstack([np.ones((1, w.shape[1])), w])  # row 0: the data as it is
    values = [bootstrap.decision_figures(e, w, on_classes=on == "7-class") for e in evals]
    correct = [(e["y_pred"] == e["y"]) if on == "7-class" else (e["malignant_pred"] == e["y_mal"]) for e in evals]
    comparisons = []
    for e, v, right in zip(evals[1:], values[1:], correct[1:]):
        rows = {}
        for key, _ in METRICS:
            diff = v[key] - values[0][key]
            rows[key] = {"a": float(values[0][key][0]), "b": float(v[key][0]), "diff": float(diff[0]),
                         "ci": list(bootstrap.interval(diff[1:])), "p": bootstrap_p(diff[1:])}
        comparisons.append({"a": first["name"], "b": e["name"], "metrics": rows,
                            "delong": delong(first["y_mal"], first["score"], e["score"]), "mcnemar": mcnemar(correct[0], right)})
    return {"models": [{"name": e["name"], "folder": e["folder"], "model": e["info"]["model"], "task": e["info"]["task"],
                        "threshold": e["info"]["threshold"], "weights": e["info"].get("weights")} for e in evals],
            "images": len(first["y"]), "lesions": int(first["predictions"]["lesion_id"].nunique()),
            "malignant": int(first["y_mal"].sum()), "basis": on, "comparisons": comparisons,
            "bootstrap": {"resamples": resamples, "seed": seed, "unit": "lesion", "level": 0.95}}


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else num(p)


def _p_is(p: float) -> str:
    return "p " + (_p(p) if p < 0.001 else f"= {_p(p)}")


def markdown(result: dict) -> str:
    lines = [f"# Paired comparison on {result['images']} images of {result['lesions']} lesions ({result['malignant']} malignant)", "",
             f"Differences are B − A. 95% intervals and p-values: paired bootstrap over lesions ({result['bootstrap']['resamples']} "
             f"resamples, seed {result['bootstrap']['seed']}; both models scored on the same resamples). Accuracy, balanced accuracy and "
             f"macro F1 are of the {result['basis']} decisions; ROC-AUC and PR-AUC of the malignant score; sensitivity and specificity "
             "at each model's own validation-chosen threshold. DeLong's test treats images as independent; the bootstrap does not.", ""]
    thresholds = ", ".join(f"{m['name']} {num(m['threshold'], '.4f')}" for m in result["models"])
    lines += [f"Models: {', '.join(m['name'] + ' (' + m['model'] + ', ' + m['task'] + ')' for m in result['models'])}; thresholds: {thresholds}.", ""]
    for c in result["comparisons"]:
        lines += [f"## B = {c['b']} vs A = {c['a']}", "", "| Metric | A | B | B − A (95% CI) | p |", "|---|---|---|---|---|"]
        for key, label in METRICS:
            m = c["metrics"][key]
            ci = f" ({m['ci'][0]:+.3f} to {m['ci'][1]:+.3f})" if not np.isnan(m["ci"][0]) else ""
            lines.append(f"| {label} | {num(m['a'])} | {num(m['b'])} | {num(m['diff'], '+.3f')}{ci} | {_p(m['p'])} |")
        d, n = c["delong"], c["mcnemar"]
        auc_test = ("undefined (it needs two malignant and two benign images)" if np.isnan(d["auc_a"]) else
                  f"{d['auc_a']:.3f} vs {d['auc_b']:.3f}, difference {d['diff']:+.3f} (SE {d['se']:.3f}), z = {d['z']:.2f}, {_p_is(d['p'])}")
        lines += ["", f"DeLong's test, ROC-AUC (malignant): {auc_test}.",
                  f"McNemar's exact test, {result['basis']} correctness: A right and B wrong on {n['only_a_correct']} images, "
                  f"B right and A wrong on {n['only_b_correct']}; {_p_is(n['p'])}.", ""]
    return "\n".join(lines)


def write_compare(folders: list[Path], out: Path) -> dict:
    """compare.md, compare.json and compare_roc_pr.png in `out`; returns the result with its markdown."""
    if len(folders) < 2:
        raise DermcliError("compare needs at least two eval folders")
    evals = load_aligned([Path(f) for f in folders])
    out = ensure_writable_dir(Path(out))
    result = compare(evals)
    text = markdown(result)
    write_text(out / "compare.md", text)
    write_text(out / "compare.json", json_text(result))

    overlaid_curves_plot(out / "compare_roc_pr.png", [(e["name"], e["y_mal"], e["score"]) for e in evals],
                         f"{result['images']} images, {result['malignant']} malignant")
    return {**result, "markdown": text}
