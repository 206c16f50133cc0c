"""A model's logits as calibrated probabilities (temperature scaling). NumPy only."""

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Logits (N, K) for K > 1 classes, or (N,) / (N, 1) for one sigmoid output -> probs (N, K or 2)."""
    logits = np.asarray(logits, dtype=np.float64) / temperature
    if logits.ndim == 2 and logits.shape[1] > 1:
        return softmax(logits)
    p = 1.0 / (1.0 + np.exp(-logits.reshape(-1)))
    return np.stack([1 - p, p], axis=1)
