"""Configuration, from the environment (or a `.env` file beside the project).

Every variable the worker, API and `make run` read is a field here, with its
environment name and meaning, so `docker-compose.yml` and the README can be
checked against one place.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that look like a secret someone forgot to set. A deployment that
# ships one of them is refused at start-up rather than run with it.
_PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "changethis",
        "secret",
        "password",
        "example",
        "placeholder",
        "replace-me",
        "replaceme",
        "todo",
        "xxx",
        "test",
        "default",
    }
)
MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

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
    report_schedules: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("ESCALATION_REPORT_SCHEDULES"),
        description="A partnership's own cadence for its quarterly report, as JSON of policy id "
        'to cron expression, e.g. {"wirral": "CRON_TZ=Europe/London 0 9 5 1,4,7,10 *"}; '
        "default: 09:00 local on the first working day of each quarter.",
    )
    extra_closures: list[date] = Field(
        default_factory=list,
        validation_alias=AliasChoices("ESCALATION_EXTRA_CLOSURES"),
        description='Extra non-working dates as a JSON list, e.g. ["2026-12-29","2026-12-30"].',
    )
    worker_sandbox: bool = Field(
        default=False,
        validation_alias=AliasChoices("ESCALATION_WORKER_SANDBOX"),
        description="Run the disagreement workflow in the Temporal SDK's sandbox. Off by "
        "default: the tests always run it sandboxed, and in the worker the sandbox cost "
        "18 ms of CPU per new case and 93 KiB per cached case (README, Performance).",
    )
    worker_processes: int = Field(
        default=2,
        ge=1,
        le=32,
        validation_alias=AliasChoices("ESCALATION_WORKER_PROCESSES"),
        description="Worker processes `escalation run` (make run) starts on the one task "
        "queue. A Python worker runs on one core at a time (its threads share one "
        "interpreter lock); two use both cores of a small machine, and a close-of-business "
        "burst or a manager's resolution waits less (README, Performance). Each takes about "
        "145 MiB when idle.",
    )
    worker_cached_cases: int = Field(
        default=5000,
        ge=1,
        validation_alias=AliasChoices("ESCALATION_WORKER_CACHED_CASES"),
        description="Open cases the worker keeps in memory (about 250 KiB each). A case "
        "beyond it is replayed from its history when it next acts, and a full cache made "
        "new cases wait seconds for their first workflow task (README, Performance).",
    )
    worker_sticky_timeout: float = Field(
        default=5.0,
        gt=0,
        le=600,
        validation_alias=AliasChoices("ESCALATION_WORKER_STICKY_TIMEOUT"),
        description="Seconds a case's next step may wait for the worker that holds it "
        "before any worker takes it: how long a case waits after its worker crashed. "
        "A step that waits longer on a busy worker is replayed from the case's history "
        "by whichever worker takes it, so a longer timeout spares a close-of-business "
        "burst that work (60 s: 1,000 deadlines at once all notified within 11.8 s, "
        "against 16.1 s at 5 s) and makes recovery from a crash that much slower "
        "(README, Performance).",
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ESCALATION_DATABASE_URL"),
        description="The register (the case record) as a SQLAlchemy URL, e.g. "
        "postgresql+psycopg://user:password@host/escalation. Unset: the embedded default, "
        "a SQLite file at <data dir>/register.sqlite3.",
    )

    # --- API -----------------------------------------------------------------
    api_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ESCALATION_API_SECRET"),
        description="Key (at least 32 characters) that derives case references from "
        "Idempotency-Key headers, fingerprints raise requests, signs page sessions and the "
        "action links in notices. Unset in the embedded default: one is generated once and "
        "kept in <data dir>/api-secret. Required in production, where every API replica and "
        "worker must share it.",
    )
    users_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("ESCALATION_USERS_FILE"),
        description="YAML file of API users (name, email, agency, partnership, role and a "
        "SHA-256 hash of their bearer token). Default: <data dir>/users.yaml.",
    )
    demo_users: bool = Field(
        default=True,
        validation_alias=AliasChoices("ESCALATION_DEMO_USERS"),
        description="Create demonstration users (tokens in <data dir>/demo-tokens.txt) when "
        "the users file does not exist and no OIDC issuer is configured. Turn off in "
        "production.",
    )
    oidc_issuer: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ESCALATION_OIDC_ISSUER"),
        description="Issuer URL of the identity provider. When set, the API accepts only "
        "OIDC JWTs signed by a key from the issuer's JWKS, instead of the users file.",
    )
    oidc_audience: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ESCALATION_OIDC_AUDIENCE"),
        description="Audience (aud) that OIDC tokens must carry; required with an issuer.",
    )
    oidc_jwks_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ESCALATION_OIDC_JWKS_URL"),
        description="JWKS URL of the issuer; discovered from "
        "<issuer>/.well-known/openid-configuration when unset.",
    )
    oidc_claim_prefix: str = Field(
        default="",
        validation_alias=AliasChoices("ESCALATION_OIDC_CLAIM_PREFIX"),
        description="Prefix of the custom claims that carry a user's agency, partnership and "
        "role (e.g. 'https://escalation.example/' for namespaced claims).",
    )
    oidc_client_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ESCALATION_OIDC_CLIENT_ID"),
        description="The pages' client id at the identity provider: with an issuer, the "
        "pages sign people in by the authorization-code flow with PKCE; unset, they cannot.",
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ESCALATION_OIDC_CLIENT_SECRET"),
        description="The pages' client secret at the identity provider, if it gave one "
        "(a confidential client); unset for a public client, which PKCE protects.",
    )
    public_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ESCALATION_PUBLIC_URL"),
        description="Public base URL of the API, used for the case link and the action links "
        "in notices (e.g. https://escalation.merton.example). The worker needs it too: "
        "without it, notices carry no action links.",
    )
    action_link_days: float = Field(
        default=7.0,
        gt=0,
        le=30,
        validation_alias=AliasChoices("ESCALATION_ACTION_LINK_DAYS"),
        description="How long the action link in a notice (acknowledge, confirm the outcome "
        "in writing) works, in days: a working week and its weekend by default, longer than "
        "any acknowledgement or confirmation the policies allow. The worker signs links "
        "with ESCALATION_API_SECRET, so it needs the API's secret and public URL.",
    )
    raise_wait_seconds: float = Field(
        default=10.0,
        ge=0,
        le=60,
        validation_alias=AliasChoices("ESCALATION_API_RAISE_WAIT"),
        description="How long a retried POST /disagreements (same Idempotency-Key) waits "
        "for the existing case's state before answering 202 Accepted instead of 200 OK.",
    )
    action_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=300,
        validation_alias=AliasChoices("ESCALATION_API_ACTION_TIMEOUT"),
        description="How long the API waits for the workflow to answer an action or a query.",
    )

    # --- Payload encryption (escalation/codec.py) ----------------------------
    codec_keys: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ESCALATION_CODEC_KEYS"),
        description="Payload encryption key ring: 'id:base64key[,id2:base64key...]', each "
        "key 32 random bytes in base64 (`python -m escalation.codec new-key`). The first "
        "key encrypts; all of them decrypt, so old keys stay listed after a rotation.",
    )
    codec_key_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("ESCALATION_CODEC_KEY_FILE"),
        description='JSON key file {"keys": [{"id": ..., "key": <base64>}, ...]} instead of '
        "ESCALATION_CODEC_KEYS (first key encrypts). Neither set: <data dir>/codec-keys.json.",
    )
    codec_generate_key: bool = Field(
        default=True,
        validation_alias=AliasChoices("ESCALATION_CODEC_GENERATE_KEY"),
        description="With no key configured, create <data dir>/codec-keys.json (mode 0600) on "
        "first use (the embedded default). Turn off in production: a missing key is then an "
        "error instead of a new key that nothing else shares.",
    )
    codec_cors_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:8233", "http://127.0.0.1:8233"],
        validation_alias=AliasChoices("ESCALATION_CODEC_CORS_ORIGINS"),
        description="Origins (JSON list) of the Temporal UI allowed to call the codec "
        "endpoint from the browser.",
    )

    @field_validator("codec_key_file", mode="before")
    @classmethod
    def _blank_path_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_secret")
    @classmethod
    def _real_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        if not text:
            return None
        squashed = text.lower().replace("-", "").replace("_", "")
        if (
            text.lower() in _PLACEHOLDER_SECRETS
            or len(set(text)) < 8
            or any(word in squashed for word in ("changeme", "changethis", "replaceme"))
            or "placeholder" in squashed
        ):
            raise ValueError("ESCALATION_API_SECRET is a placeholder; set a real random secret")
        if len(text) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"ESCALATION_API_SECRET must be at least {MIN_SECRET_LENGTH} characters "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return SecretStr(text)

    @field_validator(
        "oidc_issuer",
        "oidc_audience",
        "oidc_jwks_url",
        "oidc_client_id",
        "public_url",
        "database_url",
    )
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        # docker-compose passes `${VAR:-}` through as an empty string.
        if value is None or not value.strip():
            return None
        return value.strip()

    # --- Notices: role directory, SendGrid, delivery events --------
    directory_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("ESCALATION_DIRECTORY_FILE"),
        description="YAML role directory: who holds each role the policies name "
        "(`escalation directory check FILE`). Required with SENDGRID_API_KEY.",
    )
    example_directory: bool = Field(
        default=True,
        validation_alias=AliasChoices("ESCALATION_EXAMPLE_DIRECTORY"),
        description="With no directory file and no SendGrid key (development), address the "
        "outbox's .eml files with the example directory's invented example.org people.",
    )
    sendgrid_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SENDGRID_API_KEY"),
        description="SendGrid API key (mail send permission). Unset: notices go to the file "
        "outbox under the data folder instead.",
    )
    sendgrid_eu_residency: bool = Field(
        default=False,
        validation_alias=AliasChoices("SENDGRID_EU_RESIDENCY"),
        description="Send through SendGrid's EU region (api.eu.sendgrid.com; needs an EU "
        "subuser's key).",
    )
    sendgrid_sandbox: bool = Field(
        default=False,
        validation_alias=AliasChoices("SENDGRID_SANDBOX"),
        description="SendGrid sandbox mode: requests are validated, nothing is delivered.",
    )
    sendgrid_host: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ESCALATION_SENDGRID_HOST"),
        description="Another base URL for the SendGrid API (a relay or a test double); "
        "overrides the EU residency host.",
    )
    sender_email: str = Field(
        default="escalation@example.org",
        validation_alias=AliasChoices("ESCALATION_SENDER_EMAIL"),
        description="From address of notices: a sender verified in SendGrid.",
    )
    sender_name: str = Field(
        default="Safeguarding escalation service",
        validation_alias=AliasChoices("ESCALATION_SENDER_NAME"),
        description="From name of notices.",
    )
    sendgrid_webhook_public_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SENDGRID_WEBHOOK_PUBLIC_KEY"),
        description="Verification key of SendGrid's signed event webhook (base64, as SendGrid "
        "shows it, or PEM). Unset: POST /webhooks/sendgrid answers 503.",
    )
    sendgrid_activity_lag_seconds: int = Field(
        default=120,
        ge=0,
        validation_alias=AliasChoices("SENDGRID_ACTIVITY_LAG"),
        description="How long SendGrid's Email Activity may take to show a copy it accepted. "
        "A retry that finds a copy posted but not recorded as accepted (the worker died in "
        "between) asks Email Activity; a copy not found there is sent again only once its "
        "post is older than this. SendGrid documents no figure; 2 minutes is a safe margin.",
    )
    sendgrid_webhook_max_age_seconds: int = Field(
        default=3 * 24 * 3600,
        ge=0,
        validation_alias=AliasChoices("SENDGRID_WEBHOOK_MAX_AGE"),
        description="Refuse webhook requests signed longer ago than this (0: no limit). "
        "SendGrid retries a failed post for up to 72 hours.",
    )

    @field_validator("directory_file", mode="before")
    @classmethod
    def _blank_directory_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("sendgrid_host", "sendgrid_webhook_public_key")
    @classmethod
    def _blank_text_is_unset(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return value.strip()

    @field_validator("sendgrid_api_key")
    @classmethod
    def _real_sendgrid_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        if not text:
            return None
        squashed = text.lower().replace("-", "").replace("_", "")
        if text.lower() in _PLACEHOLDER_SECRETS or any(
            word in squashed for word in ("changeme", "changethis", "replaceme", "placeholder")
        ):
            raise ValueError("SENDGRID_API_KEY is a placeholder; set the real key or unset it")
        if not text.startswith("SG.") or len(text) < 20:
            raise ValueError("SENDGRID_API_KEY does not look like a SendGrid key ('SG.…')")
        return SecretStr(text)

    @property
    def register_url(self) -> str:
        """The register's database URL: the configured one, else the embedded
        default's SQLite file under the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'register.sqlite3').resolve()}"

    @property
    def webhook_events_path(self) -> Path:
        return self.data_dir / "sendgrid-events.sqlite3"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def users_path(self) -> Path:
        return self.users_file or self.data_dir / "users.yaml"


@cache
def get_settings() -> Settings:
    return Settings()
