"""Datasets: built-ins, uploads and feedback, the data trainings learn from."""
