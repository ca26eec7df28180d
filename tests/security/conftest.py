"""The security tests reuse the real distributed deployment of the integration tests."""

from tests.integration.conftest import deployment, gateway, worker

__all__ = ["deployment", "gateway", "worker"]
