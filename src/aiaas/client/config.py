"""Where the SDK finds the server and the key: arguments, then ``AIAAS_BASE_URL`` /
``AIAAS_API_KEY``, then the CLI's config file (``aiaas login`` writes it).

The file is ``$XDG_CONFIG_HOME/aiaas/config.toml`` (``~/.config/aiaas/config.toml``), or the
path in ``AIAAS_CONFIG``; it holds a secret, so it is written with mode 0600.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Config:
    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = None


def config_path() -> Path:
    explicit = os.environ.get("AIAAS_CONFIG")
    if explicit:
        return Path(explicit)
    home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(home) / "aiaas" / "config.toml"


def read_file(path: Path | None = None) -> Config:
    """The config file's values; defaults where it is missing."""
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return Config()
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    base_url = data.get("base_url", DEFAULT_BASE_URL)
    api_key = data.get("api_key")
    if not isinstance(base_url, str) or not (api_key is None or isinstance(api_key, str)):
        raise ValueError(f"{path}: base_url and api_key must be strings")
    return Config(base_url=base_url, api_key=api_key)


def resolve(base_url: str | None = None, api_key: str | None = None) -> Config:
    """Each value from the first place that has it: the arguments, the environment, the file."""
    base_url = base_url or os.environ.get("AIAAS_BASE_URL")
    api_key = api_key or os.environ.get("AIAAS_API_KEY")
    if base_url is None or api_key is None:
        stored = read_file()
        base_url = base_url or stored.base_url
        api_key = api_key or stored.api_key
    return Config(base_url=base_url.rstrip("/"), api_key=api_key)


def write_file(config: Config, path: Path | None = None) -> Path:
    """Store ``config`` for later runs, readable by its owner only."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # JSON strings (ASCII, \\u escapes) are valid TOML basic strings.
    lines = [f"base_url = {json.dumps(config.base_url)}"]
    if config.api_key is not None:
        lines.append(f"api_key = {json.dumps(config.api_key)}")
    text = "\n".join(lines) + "\n"
    # 0600 before the key is written, an older file with a wider mode included: never a
    # moment where another user could read the key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    return path
