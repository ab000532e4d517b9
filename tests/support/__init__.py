"""Test helpers: the TF Serving test double, and scripts the tests run in subprocesses."""
