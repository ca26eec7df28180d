from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from aiaas.config import Settings


def test_defaults_are_the_embedded_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("AIAAS_DATABASE_URL", "AIAAS_ARTIFACTS_URL", "AIAAS_BROKER_URL", "AIAAS_ENV"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.env == "development"
    assert settings.resolved_database_url == "sqlite:///var/aiaas.db"
    assert settings.resolved_artifacts_url == "var/artifacts"
    assert settings.broker_url is None


def test_environment_switches_to_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+psycopg://aiaas:pw@db:5432/aiaas"
    monkeypatch.setenv("AIAAS_DATABASE_URL", url)
    assert Settings().resolved_database_url == url


def test_development_generates_a_secret_once_and_keeps_it(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    first = settings.with_secret_key()
    path = tmp_path / "var" / "secret_key"
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.secret) >= 32
    assert Settings(var_dir=tmp_path / "var").with_secret_key().secret == first.secret


def test_production_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="AIAAS_SECRET_KEY must be set"):
        Settings(env="production", var_dir=tmp_path)
    assert not (tmp_path / "secret_key").exists()


def test_production_accepts_an_explicit_secret(tmp_path: Path) -> None:
    key = "Qm3v_T8xLp2RzW9-nKc4HyB7dJf1sGa6eU0o"
    settings = Settings(env="production", var_dir=tmp_path, secret_key=SecretStr(key))
    assert settings.with_secret_key().secret == key


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(secret_key=SecretStr("short"))


@pytest.mark.parametrize(
    "key",
    [
        "a" * 32,
        "abcd" * 10,
        "change-me-to-at-least-32-random-characters",  # deploy/k8s/secret.example.yaml
        "my-EXAMPLE-secret-Qm3vT8xLp2RzW9nKc4HyB7dJf1",
    ],
)
def test_production_refuses_example_and_low_entropy_secrets(tmp_path: Path, key: str) -> None:
    with pytest.raises(
        ValidationError, match=r"AIAAS_SECRET_KEY (is an example|is too predictable)"
    ):
        Settings(env="production", var_dir=tmp_path, secret_key=SecretStr(key))
    # Development and tests keep any key of 32 characters.
    assert Settings(env="development", var_dir=tmp_path, secret_key=SecretStr(key)).secret_key


def test_production_accepts_generated_secrets(tmp_path: Path) -> None:
    import secrets

    for key in (secrets.token_urlsafe(48), secrets.token_hex(16), secrets.token_hex(32)):
        assert Settings(env="production", var_dir=tmp_path, secret_key=SecretStr(key))


def test_every_setting_is_in_the_operations_table() -> None:
    """docs/operations.md says every setting is listed (the quotas in their own table): a new
    one must be written down."""
    from aiaas.config import Settings

    text = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    rows = "\n".join(line for line in text.splitlines() if line.startswith("|"))
    missing = [name for name in Settings.model_fields if f"`AIAAS_{name.upper()}`" not in rows]
    assert missing == []
