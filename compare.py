"""The classifier and every unsupervised detector on the same CV folds: a leaderboard.

    python compare.py                                        # config.yaml, every detector
    python compare.py --detectors iforest,pca,ae             # a subset (classifier: 'classifier')
    python compare.py --config configs/nsl_kdd.yaml --test-data ../shared/data/nsl-kdd/KDDTest+.txt
"""

import sys

from netad.cli import compare_main

if __name__ == "__main__":
    sys.exit(compare_main())
