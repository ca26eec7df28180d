"""Feature attributions of a model version's answers: ``POST /v1/models/{name}/explain``."""
