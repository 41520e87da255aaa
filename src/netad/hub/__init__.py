"""Model export and Hugging Face Hub publishing (safetensors + JSON, no pickle). Planned: issue #5."""
