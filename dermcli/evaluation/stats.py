"""Paired tests for two models scored on the same images. Pure functions on arrays; no I/O.

- DeLong's test for two correlated ROC-AUCs (DeLong, DeLong & Clarke-Pearson, Biometrics 1988), computed
  with the midrank algorithm of Sun & Xu (IEEE Signal Processing Letters 2014).
- McNemar's exact test for paired correctness.
- The two-sided p-value of a paired bootstrap difference.
"""

import math

import numpy as np


def _midranks(x: np.ndarray) -> np.ndarray:
    """Ranks of each row of x (2-D), ties sharing their mean rank (1-based)."""
    ranks = np.empty(x.shape, dtype=np.float64)
    for i, row in enumerate(x):
        order = np.argsort(row, kind="stable")
        _, first, counts = np.unique(row[order], return_index=True, return_counts=True)
        ranks[i, order] = np.repeat(first + (counts + 1) / 2, counts)  # mean of ranks first+1 .. first+counts
    return ranks


def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))  # = 2 * (1 - Phi(|z|))


def delong(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> dict:
    """AUCs of two scores of the same cases, the variance of their difference and DeLong's z and p (two-sided).

    y (N,) in {0, 1}; scores (N,). Returns auc_a, auc_b, diff (b - a), se, z, p. With both classes absent or
    a zero variance (identical scores), p is 1 when the AUCs are equal.
    """
    scores = np.stack([score_a, score_b]).astype(np.float64)
    positives, negatives = scores[:, y == 1], scores[:, y == 0]
    m, n = positives.shape[1], negatives.shape[1]
    if m < 2 or n < 2:
        return {"auc_a": float("nan"), "auc_b": float("nan"), "diff": float("nan"), "se": float("nan"), "z": float("nan"), "p": float("nan")}
    rank_pos, rank_neg = _midranks(positives), _midranks(negatives)
    rank_all = _midranks(np.concatenate([positives, negatives], axis=1))
    aucs = (rank_all[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v_pos = (rank_all[:, :m] - rank_pos) / n  # each positive's share of negatives it outranks (structural components)
    v_neg = 1 - (rank_all[:, m:] - rank_neg) / m  # each negative's share of positives that outrank it
    covariance = np.cov(v_pos) / m + np.cov(v_neg) / n
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    diff = float(aucs[1] - aucs[0])
    se = float(np.sqrt(max(variance, 0.0)))
    if se < 1e-12:
        z, p = (0.0, 1.0) if abs(diff) < 1e-12 else (float("inf") * np.sign(diff), 0.0)
    else:
        z = diff / se
        p = normal_two_sided_p(z)
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "diff": diff, "se": se, "z": float(z), "p": p}


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's exact (binomial) test: do A and B err on different images more often one way than the other?

    only_a: images A gets right and B wrong; only_b: the reverse. p is two-sided, 1 when they never disagree.
    """
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    n = only_a + only_b
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n  # exact, in integers until the division
    p = 1.0 if n == 0 else min(1.0, 2 * tail)
    return {"only_a_correct": only_a, "only_b_correct": only_b, "p": p}


def bootstrap_p(differences: np.ndarray) -> float:
    """Two-sided p-value of H0: difference = 0, from paired bootstrap differences (B,): twice the smaller
    share of resamples on either side of zero (zero counts on both sides), capped at 1. NaNs are left out."""
    d = differences[~np.isnan(differences)]
    if len(d) == 0:
        return float("nan")
    return float(min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0))))
