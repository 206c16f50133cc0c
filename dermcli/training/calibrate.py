"""After training: fit the calibration (temperature, decision threshold) on validation and the unusual-image
statistics on the training split, and store them in best.pt."""

from pathlib import Path

import numpy as np

from dermcli.core.labels import has_binary_view, malignant_score, malignant_targets
from dermcli.evaluation.metrics import fit_temperature, temperature_note, threshold_for_sensitivity
from dermcli.models.checkpoint import num_outputs, read_checkpoint, save_checkpoint
from dermcli.models.outputs import probabilities
from dermcli.models.registry import get_backend
from dermcli.models.unusual import PASS_RATE as OOD_PASS_RATE
from dermcli.models.unusual import pass_threshold
from dermcli.training.config import TrainConfig
from dermcli.training.objectives import validation_metrics
from dermcli.training.unusual import fit_statistics


def calibrate(best_path: Path, cfg: TrainConfig, val_in, y_val: np.ndarray, log, train_set) -> Path:
    """Fit temperature scaling and the decision threshold on validation only, and the out-of-distribution
    statistics on `train_set` (unaugmented training inputs, targets) with their threshold on validation;
    store them in best.pt."""
    best = read_checkpoint(best_path)
    model = get_backend(cfg.model).build(num_outputs(cfg.task, best["meta"]["class_names"]), cfg.model_options())
    model.load_state_dict(best["state_dict"])
    _, trainable = get_backend(cfg.model).split_frozen(model, cfg.freeze)
    ood, logits, distances = fit_statistics(trainable, train_set, val_in)
    ood_threshold = pass_threshold(distances)
    temperature = fit_temperature(logits, y_val)
    if note := temperature_note(temperature):
        log(note)
    probs = probabilities(logits, temperature)
    meta = best["meta"]
    # no benign/malignant view (classes outside the known-names table, no --malignant): no threshold to tune
    threshold = (threshold_for_sensitivity(malignant_targets(y_val, meta), malignant_score(probs, meta), cfg.target_sensitivity)
                 if has_binary_view(meta) else None)
    meta = {**best["meta"], "temperature": temperature, "threshold": threshold,
            "ood_threshold": ood_threshold, "ood_pass_rate": OOD_PASS_RATE,
            "val_metrics": validation_metrics(y_val, logits, cfg.task, temperature)}
    save_checkpoint(best_path, model, meta, ood=ood)
    chosen = f"threshold {threshold:.4f} for sensitivity {cfg.target_sensitivity:.2f}" if threshold is not None else "no malignant threshold"
    log(f"best epoch {meta['epoch']}: temperature {temperature:.3f}, {chosen} "
        f"on val; unusual-image distance above {ood_threshold:.2f} ({OOD_PASS_RATE:.1%} of val below)")
    return best_path
