"""API users: who they are, the users file, and the demonstration users.

The embedded default authenticates bearer tokens against a YAML users file
(``<data dir>/users.yaml``, or ``ESCALATION_USERS_FILE``)::

    users:
      - id: merton-health-practitioner
        name: Priya Shah
        email: priya.shah@health.merton.example
        agency: merton-health          # the agency key used on cases
        partnership: merton            # a policy id
        role: practitioner             # practitioner | manager | business-team | operator
        token_sha256: 3f0c...          # SHA-256 (hex) of the bearer token

Only the SHA-256 of each token is stored. Tokens are long random strings
(``secrets.token_urlsafe(32)``), so an unsalted hash is enough: there is
nothing to guess. To add a user, generate a token, store its hash with
``hash_token`` and give the token to the person.

``ensure_demo_users`` creates demonstration users the first time the
embedded default runs, and writes their plaintext tokens to
``<data dir>/demo-tokens.txt`` (one ``user-id<TAB>token`` line each, with
``#`` comments) so that ``make run`` can print them and a developer can
copy them into ``curl -H "Authorization: Bearer ..."``; each later start
brings them up to date with ``DEMO_USERS``, keeping their tokens. Never use
demo users outside a developer's machine.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workflows.messages import Actor

UserRole = Literal["practitioner", "manager", "business-team", "operator"]
PARTY_ROLES: frozenset[str] = frozenset({"practitioner", "manager"})
TOKENS_FILE = "demo-tokens.txt"
USERS_FILE = "users.yaml"

Key = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]


class User(BaseModel):
    """An authenticated person. Practitioners and managers belong to one
    agency of one partnership; the business team to one partnership;
    operators run the stack and belong to none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1)
    email: str | None = None
    agency: Key | None = None
    partnership: Key | None = None
    role: UserRole

    @model_validator(mode="after")
    def _belongs(self) -> User:
        if self.role in PARTY_ROLES and (self.agency is None or self.partnership is None):
            raise ValueError(f"a {self.role} needs an agency and a partnership")
        if self.role == "business-team" and self.partnership is None:
            raise ValueError("a business-team user needs a partnership")
        return self

    def actor(self) -> Actor:
        """The identity that travels into the workflow with every action."""
        return Actor(
            id=self.id, name=self.name, email=self.email, agency=self.agency, role=self.role
        )


class StoredUser(User):
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    def public(self) -> User:
        return User.model_validate(self.model_dump(exclude={"token_sha256"}))


class UsersFileError(Exception):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def load_users(path: Path) -> list[StoredUser]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UsersFileError(f"{path}: no such file") from None
    except (OSError, yaml.YAMLError) as exc:
        raise UsersFileError(f"{path}: cannot be read ({type(exc).__name__})") from None
    rows = data.get("users") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise UsersFileError(f"{path}: expected a mapping with a 'users' list")
    users = []
    for i, row in enumerate(rows):
        try:
            users.append(StoredUser.model_validate(row))
        except ValidationError as exc:
            where = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'user'}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)
            )
            raise UsersFileError(f"{path}: users[{i}]: {where}") from None
    ids = [u.id for u in users]
    if len(set(ids)) != len(ids):
        raise UsersFileError(f"{path}: user ids must be unique")
    return users


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_users(path: Path, users: list[StoredUser]) -> None:
    header = (
        "# Users of the escalation API. Only the SHA-256 of each bearer token is kept.\n"
        "# Roles: practitioner, manager, business-team, operator.\n"
    )
    body = yaml.safe_dump(
        {"users": [u.model_dump(exclude_none=True) for u in users]},
        sort_keys=False,
        allow_unicode=True,
    )
    _write_private(path, header + body)


# --- Demonstration users ---------------------------------------------------------

# Every policy has a health practitioner who raises and a children's social care
# manager who answers, so a case of each can be run from the pages by a browser alone.
# Each manager's address is the one `make run`'s example directory
# (policies/data/directory.example.yaml) gives them, so the action links in
# their copies of a notice act for them.
DEMO_USERS: tuple[User, ...] = (
    User(
        id="merton-health-practitioner",
        name="Priya Shah",
        email="priya.shah@health.merton.example",
        agency="merton-health",
        partnership="merton",
        role="practitioner",
    ),
    User(
        id="merton-csc-manager",
        name="Tom Okafor",
        email="tom.okafor@merton-childrens-social-care.example.org",
        agency="merton-childrens-social-care",
        partnership="merton",
        role="manager",
    ),
    User(
        id="merton-police-practitioner",
        name="Dan Reid",
        email="dan.reid@police.merton.example",
        agency="merton-police",
        partnership="merton",
        role="practitioner",
    ),
    User(
        id="merton-business-team",
        name="Merton Safeguarding Partnership Business Team",
        email="business.team@mscp.merton.example",
        partnership="merton",
        role="business-team",
    ),
    User(
        id="cheshire-police-practitioner",
        name="Sam Lee",
        email="sam.lee@cheshire-west-police.example.org",
        agency="cheshire-west-police",
        partnership="cheshire",
        role="practitioner",
    ),
    User(
        id="cheshire-business-team",
        name="Pan-Cheshire Safeguarding Partnership Business Team",
        email="business.team@scp.cheshire.example",
        partnership="cheshire",
        role="business-team",
    ),
    User(
        id="staffordshire-health-practitioner",
        name="Amira Hussain",
        email="amira.hussain@health.staffordshire.example",
        agency="staffordshire-health",
        partnership="staffordshire-stoke",
        role="practitioner",
    ),
    User(
        id="staffordshire-csc-manager",
        name="Gareth Price",
        email="gareth.price@staffordshire-childrens-social-care.example.org",
        agency="staffordshire-childrens-social-care",
        partnership="staffordshire-stoke",
        role="manager",
    ),
    User(
        id="staffordshire-business-team",
        name="Staffordshire and Stoke-on-Trent Safeguarding Children Board manager",
        email="lscb.manager@scb.staffordshire.example",
        partnership="staffordshire-stoke",
        role="business-team",
    ),
    User(
        id="cheshire-west-health-practitioner",
        name="Ruth Ellison",
        email="ruth.ellison@health.cheshire-west.example",
        agency="cheshire-west-health",
        partnership="cheshire",
        role="practitioner",
    ),
    User(
        id="cheshire-west-csc-manager",
        name="Kwame Mensah",
        email="kwame.mensah@cheshire-west-childrens-social-care.example.org",
        agency="cheshire-west-childrens-social-care",
        partnership="cheshire",
        role="manager",
    ),
    User(
        id="wirral-health-practitioner",
        name="Siobhan Kelly",
        email="siobhan.kelly@health.wirral.example",
        agency="wirral-health",
        partnership="wirral",
        role="practitioner",
    ),
    User(
        id="wirral-csc-manager",
        name="Ian Roberts",
        email="ian.roberts@wirral-childrens-social-care.example.org",
        agency="wirral-childrens-social-care",
        partnership="wirral",
        role="manager",
    ),
    User(
        id="hillingdon-health-practitioner",
        name="Meera Patel",
        email="meera.patel@health.hillingdon.example",
        agency="hillingdon-health",
        partnership="hillingdon",
        role="practitioner",
    ),
    User(
        id="hillingdon-csc-manager",
        name="Lewis Grant",
        email="lewis.grant@hillingdon-childrens-social-care.example.org",
        agency="hillingdon-childrens-social-care",
        partnership="hillingdon",
        role="manager",
    ),
    User(
        id="operator",
        name="Olu Adeyemi",
        email="operator@escalation.example",
        role="operator",
    ),
)


def _read_tokens(path: Path) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        user_id, _, token = line.partition("\t")
        if token.strip():
            tokens[user_id.strip()] = token.strip()
    return tokens


def _tokens_lines(pairs: list[tuple[User, str]]) -> list[str]:
    lines = []
    for user, token in pairs:
        where = ", ".join(x for x in (user.role, user.agency, user.partnership) if x)
        lines.append(f"# {user.name} ({where})")
        lines.append(f"{user.id}\t{token}")
    return lines


def _tokens_text(pairs: list[tuple[User, str]]) -> str:
    lines = [
        "# Demonstration bearer tokens for the escalation API (development only).",
        "# One line per user: USER-ID<TAB>TOKEN. Use as: Authorization: Bearer TOKEN",
        "# users.yaml beside this file keeps only their SHA-256 hashes.",
    ]
    return "\n".join(lines + _tokens_lines(pairs)) + "\n"


def _stored(user: User, token_sha256: str) -> StoredUser:
    return StoredUser(**user.model_dump(), token_sha256=token_sha256)


def ensure_demo_users(data_dir: Path, users_file: Path | None = None) -> list[tuple[User, str]]:
    """The demonstration users and their tokens, creating them on first use.

    - No users file yet: create it with ``DEMO_USERS`` (hashed tokens) and
      write the plaintext tokens to ``<data_dir>/demo-tokens.txt``.
    - Users file and tokens file both present (the demonstration's own):
      bring the demo users up to date with ``DEMO_USERS``, keeping their
      tokens: a demo user whose token still matches takes its current name,
      address, agency and role (the action links in notices find a person by
      address, so a stale one would make their links act for nobody), and a
      demo user the file lacks is added with a new token. Other users are
      kept as they are. Returns the demo users whose token matches.
    - A users file without a tokens file is a deployment's own: leave it
      alone and return nothing.
    """
    users_path = users_file or data_dir / USERS_FILE
    tokens_path = data_dir / TOKENS_FILE
    if users_path.exists():
        if not tokens_path.exists():
            return []
        tokens = _read_tokens(tokens_path)
        current = {user.id: user for user in DEMO_USERS}
        stored_users = load_users(users_path)
        kept: list[StoredUser] = []
        out: list[tuple[User, str]] = []
        for stored in stored_users:
            token = tokens.get(stored.id)
            if token is not None and secrets.compare_digest(hash_token(token), stored.token_sha256):
                demo = current.get(stored.id)
                if demo is not None and stored.public() != demo:
                    stored = _stored(demo, stored.token_sha256)
                out.append((stored.public(), token))
            kept.append(stored)
        known = {stored.id for stored in stored_users}
        added = [(user, new_token()) for user in DEMO_USERS if user.id not in known]
        kept += [_stored(user, hash_token(token)) for user, token in added]
        if kept != stored_users:
            write_users(users_path, kept)
        if added:
            text = tokens_path.read_text(encoding="utf-8").rstrip("\n")
            _write_private(tokens_path, "\n".join([text, *_tokens_lines(added)]) + "\n")
        return out + added
    pairs = [(user, new_token()) for user in DEMO_USERS]
    write_users(users_path, [_stored(user, hash_token(token)) for user, token in pairs])
    _write_private(tokens_path, _tokens_text(pairs))
    return pairs
