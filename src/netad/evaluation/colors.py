"""The figures' colours, shared by :mod:`netad.evaluation.plots` and the drift figure."""

NORMAL_COLOR = "#4C72B0"
ANOMALY_COLOR = "#DD5143"
THRESHOLD_COLOR = "#222222"
