"""Where the API is and which key to send: environment first, then a profile file.

The profile file (``$MEMEFORGE_CONFIG`` or ``~/.config/memeforge/config.toml``)::

    [default]
    api = "http://127.0.0.1:8000"

    [prod]
    api = "https://memes.example.com"
    key = "mf_..."
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_API = "http://127.0.0.1:8000"


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Config:
    api: str
    key: str | None


def config_path() -> Path:
    explicit = os.environ.get("MEMEFORGE_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "memeforge" / "config.toml"


def _profile(name: str) -> dict[str, str]:
    path = config_path()
    if not path.exists():
        if name != "default":
            raise ConfigError(f"profile {name!r} asked for, but {path} does not exist")
        return {}
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from err
    profile = profiles.get(name)
    if profile is None:
        if name != "default":
            raise ConfigError(f"no profile [{name}] in {path}")
        return {}
    if not isinstance(profile, dict):
        raise ConfigError(f"[{name}] in {path} is not a table")
    return {k: str(v) for k, v in profile.items() if k in ("api", "key")}


def load_config(profile: str = "default") -> Config:
    """MEMEFORGE_API / MEMEFORGE_KEY win over the profile; the profile over the default.
    MEMEFORGE_API_KEY (what ``make run`` prints) stands in for MEMEFORGE_KEY."""
    stored = _profile(profile)
    api = os.environ.get("MEMEFORGE_API") or stored.get("api") or DEFAULT_API
    key = (
        os.environ.get("MEMEFORGE_KEY")
        or os.environ.get("MEMEFORGE_API_KEY")
        or stored.get("key")
        or None
    )
    return Config(api=api.rstrip("/"), key=key)
