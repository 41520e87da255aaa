"""Batch scoring and the REST API. Planned: issue #6."""
