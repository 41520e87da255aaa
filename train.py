"""Train the anomaly classifier.

    python train.py --use-cv                      # stratified k-fold CV, then a final model
    python train.py                               # one train/validation split
    python train.py --use-cv --set training.num_epochs=3
    python train.py --resume checkpoints/<run>    # continue an interrupted run

See `python train.py --help`. All logic lives in the installed `netad` package.
"""

import sys

from netad.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
