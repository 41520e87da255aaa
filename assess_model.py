"""Figures and a report for a trained model. Not built yet: see the evaluation issue (#3)."""

import sys

from netad.cli import not_yet

if __name__ == "__main__":
    sys.exit(not_yet("assess_model.py", "python test.py (metrics on the held-out test rows)"))
