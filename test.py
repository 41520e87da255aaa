"""Evaluate a trained model on the test rows held out at training time (or on --data).

    python test.py                                       # checkpoints/best_model.ckpt
    python test.py --checkpoint checkpoints/<run>/fold_0/best.ckpt
    python test.py --config configs/nsl_kdd.yaml --checkpoint ... --data ../shared/data/nsl-kdd/KDDTest+.txt

Prints the metrics with 95 % bootstrap intervals, appends a row to test_results.csv and logs
Metrics/* and figures to TensorBoard (and W&B when the config enables it).
"""

import sys

from netad.cli import test_main

if __name__ == "__main__":
    sys.exit(test_main())
