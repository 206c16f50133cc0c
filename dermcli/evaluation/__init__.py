"""Figures that survive review: metrics, bootstrap intervals, tests, evaluation, reports, comparison, cards, plots."""
