"""Score a CSV of network records: the rows plus score and is_anomaly; unscorable rows to a rejects file.

    python predict.py --model checkpoints/best_model.ckpt --input records.csv --output scored.csv
    python predict.py --model user/netad-model --input records.csv --output scored.csv   # from the Hub
"""

import sys

from netad.cli import predict_main

if __name__ == "__main__":
    sys.exit(predict_main())
