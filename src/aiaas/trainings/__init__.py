"""Training jobs: a dataset and an architecture (or a base version) in, a new model version out."""
