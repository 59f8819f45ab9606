"""Settings from the environment and a `.env` file, checked once, all of them at a time."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from db.engine import DATABASE_FILE
from orchestration.runs import RunSettings
from orchestration.states import SelectionOrder


class ConfigError(Exception):
    """A missing or wrong setting; the message is one line naming it and how to fix it."""


class Settings(BaseSettings):
    # A blank value (`DISCORD_TOKEN=`) counts as not set; names not ours are warned about.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    discord_token: SecretStr | None = None
    discord_guild_id: int | None = None
    curator_role_id: int | None = None
    run_category_id: int | None = None
    comfy_url: str = "http://127.0.0.1:8188"
    database_url: str = ""  # blank: a SQLite file under DATA_DIR (`database_url_for`)
    data_dir: Path = Path("data")
    max_children_per_node: int = Field(3, ge=1)
    target_leaf_nodes: int = Field(10, ge=1)
    run_budget: int = Field(200, ge=1)
    top_k: int = Field(3, ge=1)
    selection_order: SelectionOrder = SelectionOrder.breadth_first
    gates: bool = True
    tick_seconds: float = Field(30.0, gt=0)
    log_level: str = "INFO"

    @field_validator("comfy_url")
    @classmethod
    def _urls(cls, value: str) -> str:
        for url in value.split(","):
            if not url.strip().startswith(("http://", "https://")):
                raise ValueError(f"'{url.strip()}' is not an http:// or https:// URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"use one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        if not value:
            return value
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                "it is not a database URL; e.g. sqlite+aiosqlite:///data/comfy-curator.db, or "
                "leave it out for a SQLite file under DATA_DIR"
            ) from None
        backend = url.get_backend_name()
        if backend != "sqlite":
            raise ValueError(
                f"{backend} is not supported yet: the bot keeps its data in SQLite "
                "(sqlite+aiosqlite:///path/to/file.db, or leave DATABASE_URL out for a file "
                "under DATA_DIR)"
            )
        if url.get_driver_name() != "aiosqlite":
            raise ValueError(f"the bot reads SQLite through aiosqlite: write "
                             f"{url.set(drivername='sqlite+aiosqlite').render_as_string()}")
        return value

    @model_validator(mode="after")
    def _database_under_data_dir(self) -> Settings:
        if not self.database_url:
            self.database_url = database_url_for(self.data_dir)
        return self

    @property
    def uses_default_database(self) -> bool:
        return self.database_url == database_url_for(self.data_dir)

    @property
    def comfy_urls(self) -> list[str]:
        """One URL per GPU worker."""
        return [u.strip().rstrip("/") for u in self.comfy_url.split(",") if u.strip()]

    def run_settings(self) -> RunSettings:
        return RunSettings(
            max_children=self.max_children_per_node,
            target_leaves=self.target_leaf_nodes,
            order=self.selection_order,
            gates=self.gates,
            budget=self.run_budget,
            top_k=self.top_k,
        )


def database_url_for(data_dir: Path) -> str:
    """The SQLite file the bot keeps under DATA_DIR when DATABASE_URL does not say otherwise."""
    return f"sqlite+aiosqlite:///{data_dir / DATABASE_FILE}"


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REQUIRED_BY_RUN = ("discord_token", "discord_guild_id", "curator_role_id")
_HINTS = {
    "discord_token": "the bot token from the Discord developer portal (docs/discord.md)",
    "discord_guild_id": "the id of your server (right-click it → Copy Server ID)",
    "curator_role_id": "the id of the role allowed to vote and approve",
}
_WHERE = "in the environment or in .env (see .env.example and docs/configuration.md)"


def _problems(lines: list[str], what: str) -> str:
    if len(lines) == 1:
        return f"{lines[0]}: fix it {_WHERE}."
    return f"{len(lines)} settings are {what}: {'; '.join(lines)}. Fix them {_WHERE}."


def load_settings(env_file: Path | None = Path(".env")) -> Settings:
    """Read the settings; every wrong one is named in one line a person can act on."""
    try:
        return Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as err:
        lines = []
        for problem in err.errors():
            name = str(problem["loc"][0]).upper() if problem["loc"] else "a setting"
            message = str(problem["msg"]).removeprefix("Value error, ")
            lines.append(f"{name} is not valid ({message}; got {problem.get('input')!r})")
        raise ConfigError(_problems(lines, "wrong")) from err


def require(settings: Settings, *names: str) -> None:
    """Refuse to start without the settings a command needs, naming every one missing."""
    missing = [
        f"{name.upper()} is not set (give {_HINTS.get(name, 'a value')})"
        for name in names
        if getattr(settings, name) in (None, "")
        or (isinstance(getattr(settings, name), SecretStr)
            and not getattr(settings, name).get_secret_value())
    ]
    if missing:
        raise ConfigError(_problems(missing, "missing"))


def _env_file_names(env_file: Path | None) -> list[str]:
    if env_file is None or not env_file.is_file():
        return []
    names = []
    for line in env_file.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            names.append(line.split("=", 1)[0].removeprefix("export ").strip())
    return names


def unknown_settings(env_file: Path | None = Path(".env")) -> list[str]:
    """Names that look like a setting but are none (a typo is otherwise silently ignored): every
    unknown name in .env, and names in the environment close to one of ours."""
    known = [name.upper() for name in Settings.model_fields]
    warnings = []
    for name in _env_file_names(env_file):
        if name.upper() not in known:
            close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else " (see .env.example)"
            warnings.append(f"{name} in {env_file} is not a setting{hint}")
    for name in os.environ:
        close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.85)
        if close and name.upper() not in known:
            warnings.append(f"{name} in the environment is not a setting; did you mean "
                            f"{close[0]}?")
    return warnings

