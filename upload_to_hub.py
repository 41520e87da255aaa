"""Export a checkpoint (model.safetensors, config.json, model card) and publish it to the Hugging Face Hub.

    python upload_to_hub.py --checkpoint checkpoints/best_model.ckpt --repo-id user/netad-model
    python upload_to_hub.py --dry-run --repo-id user/netad-model      # export and list, upload nothing

The token comes from --token, else HF_TOKEN, else the cached login; it is never printed or written.
"""

import sys

from netad.cli import upload_main

if __name__ == "__main__":
    sys.exit(upload_main())
