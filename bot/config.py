"""Settings from the environment and a `.env` file, checked once at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from db.engine import DEFAULT_DATABASE_URL
from orchestration.runs import RunSettings
from orchestration.states import SelectionOrder


class ConfigError(Exception):
    """A missing or wrong setting; the message is one line naming it and how to fix it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    discord_token: SecretStr | None = None
    discord_guild_id: int | None = None
    curator_role_id: int | None = None
    run_category_id: int | None = None
    comfy_url: str = "http://127.0.0.1:8188"
    database_url: str = DEFAULT_DATABASE_URL
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


def load_settings(env_file: Path | None = Path(".env")) -> Settings:
    """Read the settings, turning pydantic's report into one line a person can act on."""
    try:
        return Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as err:
        first = err.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "a setting"
        given = first.get("input")
        raise ConfigError(
            f"{name} is not valid ({first['msg']}; got {given!r}): fix it in the environment "
            "or in .env (see docs/configuration.md)."
        ) from err


def require(settings: Settings, *names: str) -> None:
    """Refuse to start without the settings a command needs, naming the first one missing."""
    hints = {
        "discord_token": "the bot token from the Discord developer portal (docs/discord.md)",
        "discord_guild_id": "the id of your server (right-click it → Copy Server ID)",
        "curator_role_id": "the id of the role allowed to vote and approve",
    }
    for name in names:
        if getattr(settings, name) in (None, ""):
            raise ConfigError(f"{name.upper()} is not set: give {hints.get(name, 'a value')} "
                              "in the environment or in .env.")
