"""The network builder and the training model (MultiTaskModel)."""
