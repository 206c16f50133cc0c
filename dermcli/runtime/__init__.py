"""Where code runs: devices and precision, and torchrun's processes; where a run's figures are logged (TensorBoard, MLflow)."""
