"""The distributed trainer, its tasks and its data pipeline."""
