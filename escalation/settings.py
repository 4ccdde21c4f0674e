"""Configuration, from the environment (or a `.env` file beside the project).

Every variable the worker, API and `make run` read is a field here, with its
environment name and meaning, so `docker-compose.yml` and the README can be
checked against one place.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    temporal_address: str = Field(
        default="localhost:7233",
        validation_alias=AliasChoices("TEMPORAL_ADDRESS"),
        description="host:port of the Temporal frontend.",
    )
    temporal_namespace: str = Field(
        default="default",
        validation_alias=AliasChoices("TEMPORAL_NAMESPACE"),
        description="Temporal namespace holding the cases.",
    )
    task_queue: str = Field(
        default="escalation",
        validation_alias=AliasChoices("ESCALATION_TASK_QUEUE"),
        description="Task queue the worker polls and the API starts cases on.",
    )
    data_dir: Path = Field(
        default=Path(".data"),
        validation_alias=AliasChoices("ESCALATION_DATA_DIR"),
        description="Local data folder of the embedded default (Temporal's SQLite file, outbox).",
    )
    extra_closures: list[date] = Field(
        default_factory=list,
        validation_alias=AliasChoices("ESCALATION_EXTRA_CLOSURES"),
        description='Extra non-working dates as a JSON list, e.g. ["2026-12-29","2026-12-30"].',
    )

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"


@cache
def get_settings() -> Settings:
    return Settings()
