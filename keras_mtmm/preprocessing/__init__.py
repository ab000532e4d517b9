"""The Preprocessor: raw inputs -> model features, adapted on the training split."""
