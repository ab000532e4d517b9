"""Export for TF Serving: the SavedModel and its signatures, warmup requests, the model repository."""
