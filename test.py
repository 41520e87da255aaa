"""Evaluate a trained model on the test rows held out at training time (or on --data).

    python test.py                                       # checkpoints/best_model.ckpt
    python test.py --checkpoint checkpoints/<run>/fold_0/best.ckpt
    python test.py --checkpoint ... --data other.csv     # any labelled CSV of the same schema
"""

import sys

from netad.cli import test_main

if __name__ == "__main__":
    sys.exit(test_main())
