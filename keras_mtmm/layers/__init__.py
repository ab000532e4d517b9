"""Keras layers: modality encoders, fusion strategies, sharing architectures, task heads."""
