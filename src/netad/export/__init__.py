"""Exporting a trained model: the model folder (weights, config, card), ONNX, and publishing to the Hub."""
