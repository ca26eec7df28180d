"""The Open Inference Protocol (KServe "V2", REST), so that ``tritonclient[http]`` and
KServe-style clients work unchanged, over the same prediction service as ``/v1``.

- ``tensors``: the protocol's tensors: requests (JSON and the binary tensor data extension)
  read, inputs decoded to float32 batches, answers written;
- ``signature``: what a version takes and gives in the protocol's terms (``input``;
  ``probabilities`` and ``predictions``);
- ``service``: metadata, readiness and inference over ``predictions.sync.PredictPath``;
- ``lane``: every ``/v2`` route, served from ASGI in front of FastAPI.
"""
