"""Where code runs: devices and precision, and torchrun's processes."""
