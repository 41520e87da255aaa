"""Figures and an HTML report for a trained model, or for every fold model of a CV run.

    python assess_model.py                                   # checkpoints/best_model.ckpt
    python assess_model.py --use-folds                       # the fold models of that model's CV run
    python assess_model.py --use-folds --run checkpoints/<run>
    python assess_model.py --checkpoint ... --data other.csv --output reports/other
"""

import sys

from netad.cli import assess_main

if __name__ == "__main__":
    sys.exit(assess_main())
