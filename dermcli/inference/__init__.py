"""Running trained models: engines (ONNX Runtime, PyTorch), export, test-time augmentation, predict, explain."""
