"""Training: the run (train), its run folder, callbacks, checkpoints, distribution, baselines, launch."""
