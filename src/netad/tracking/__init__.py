"""Experiment tracking: TensorBoard and Weights & Biases loggers, and publishing figures and tables to them."""
