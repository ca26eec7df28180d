"""LitServe serving the same model with its own dynamic batching.

Runs in its own virtualenv (``bench/.venv-litserve``)::

    bench/.venv-litserve/bin/python -m bench.references.litserve_app --port 8000
"""

from __future__ import annotations

import argparse

import litserve as ls
import torch

from bench.references._model import load_model


class ModelAPI(ls.LitAPI):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        self.model = load_model()

    # No annotations on decode_request/encode_response: LitServe reads them to build the route.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return torch.tensor(request["inputs"], dtype=torch.float32)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        # x is the default batch(): the requests' [1, 784] tensors stacked to [B, 1, 784].
        with torch.inference_mode():
            return torch.softmax(self.model(x), dim=-1)

    def encode_response(self, output):  # type: ignore[no-untyped-def]
        return {"outputs": output.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-timeout", type=float, default=0.005)
    args = parser.parse_args()
    api = ModelAPI(max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=30)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
