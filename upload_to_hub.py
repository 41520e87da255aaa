"""Publish a trained model to the Hugging Face Hub. Not built yet: see the Hub issue (#5)."""

import sys

from netad.cli import not_yet

if __name__ == "__main__":
    sys.exit(not_yet("upload_to_hub.py", "the checkpoint file itself (checkpoints/best_model.ckpt)"))
