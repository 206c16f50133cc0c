"""Training runs: configuration, inputs, losses, the loop, distillation, calibration, cross-validation, ensembles."""
