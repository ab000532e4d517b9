"""Evaluation: scoring a model per task, robustness, transfer (Δm), inspection of gates and weights."""
