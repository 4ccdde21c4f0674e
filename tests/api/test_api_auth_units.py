"""Users file, demo users, OIDC tokens, settings and the authorisation rules,
without a Temporal server."""

from __future__ import annotations

import secrets
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from api.auth import (
    AuthError,
    OidcAuthenticator,
    UsersFileAuthenticator,
    build_authenticator,
    may_access_case,
    raise_refusal,
)
from api.cases import derived_reference, random_reference, register_scope, request_fingerprint
from api.main import create_app
from api.users import (
    DEMO_USERS,
    TOKENS_FILE,
    StoredUser,
    User,
    UsersFileError,
    ensure_demo_users,
    hash_token,
    load_users,
    write_users,
)
from escalation.settings import Settings
from register.listing import Scope

ISSUER = "https://login.example/realms/escalation"
AUDIENCE = "escalation-api"


def settings(**env: str) -> Settings:
    return Settings(_env_file=None, **env)  # type: ignore[call-arg]


# --- Demo users and the users file ----------------------------------------------------------


def test_demo_users_are_created_once_with_only_hashes_stored(tmp_path: Path) -> None:
    pairs = ensure_demo_users(tmp_path)
    users = {user.id: user for user, _ in pairs}
    # Two agencies of one partnership, its business team, an operator, another partnership.
    assert users["merton-health-practitioner"].agency == "merton-health"
    assert users["merton-csc-manager"].agency == "merton-childrens-social-care"
    assert users["merton-csc-manager"].role == "manager"
    assert users["merton-business-team"].role == "business-team"
    assert users["operator"].role == "operator"
    assert users["cheshire-police-practitioner"].partnership == "cheshire"

    users_file = tmp_path / "users.yaml"
    text = users_file.read_text()
    for _, token in pairs:
        assert token not in text
        assert hash_token(token) in text
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    tokens_file = tmp_path / TOKENS_FILE
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    for user, token in pairs:
        assert f"{user.id}\t{token}" in tokens_file.read_text()

    again = ensure_demo_users(tmp_path)
    assert again == pairs
    stored = load_users(users_file)
    assert [u.id for u in stored] == [u.id for u in DEMO_USERS]


def test_demo_users_from_an_earlier_make_run_are_brought_up_to_date(tmp_path: Path) -> None:
    """A checkout that ran `make run` before a demo user's address changed, or
    before a demo user was added: the next start gives them their current
    details (the action links find people by address) and adds the missing
    ones, keeping every token and any user the developer added."""
    pairs = ensure_demo_users(tmp_path)
    tokens = {user.id: token for user, token in pairs}
    users_file = tmp_path / "users.yaml"
    earlier = [
        u.model_copy(update={"email": "ian.roberts@csc.wirral.example"})
        if u.id == "wirral-csc-manager"
        else u
        for u in load_users(users_file)
        if u.id != "hillingdon-csc-manager"
    ]
    own = StoredUser(
        id="alice", name="Alice", role="operator", token_sha256=hash_token("alice-token")
    )
    write_users(users_file, [*earlier, own])
    tokens_file = tmp_path / TOKENS_FILE
    tokens_file.write_text(
        "\n".join(
            f"{user_id}\t{token}"
            for user_id, token in tokens.items()
            if user_id != "hillingdon-csc-manager"
        )
        + "\nalice\talice-token\n"
    )

    now = {user.id: (user, token) for user, token in ensure_demo_users(tmp_path)}
    assert set(now) == {u.id for u in DEMO_USERS} | {"alice"}
    wirral = next(u for u in DEMO_USERS if u.id == "wirral-csc-manager")
    assert now["wirral-csc-manager"] == (wirral, tokens["wirral-csc-manager"])
    added, token = now["hillingdon-csc-manager"]
    assert token != tokens["hillingdon-csc-manager"]
    assert f"hillingdon-csc-manager\t{token}" in tokens_file.read_text()
    assert "alice\talice-token" in tokens_file.read_text()
    stored = {u.id: u for u in load_users(users_file)}
    assert stored["alice"] == own
    assert stored["wirral-csc-manager"].email == wirral.email
    assert stored["hillingdon-csc-manager"].token_sha256 == hash_token(token)
    for user_id, (_user, kept) in now.items():
        if user_id not in ("hillingdon-csc-manager", "alice"):
            assert kept == tokens[user_id]
    # Up to date: the next start writes nothing.
    before = (users_file.read_text(), tokens_file.read_text())
    assert ensure_demo_users(tmp_path) == list(now.values())
    assert (users_file.read_text(), tokens_file.read_text()) == before


def test_a_deployments_own_users_file_is_left_alone(tmp_path: Path) -> None:
    own = StoredUser(
        id="alice",
        name="Alice",
        agency="wirral-police",
        partnership="wirral",
        role="manager",
        token_sha256=hash_token("alice-token"),
    )
    write_users(tmp_path / "users.yaml", [own])
    assert ensure_demo_users(tmp_path) == []
    assert not (tmp_path / TOKENS_FILE).exists()
    assert [u.id for u in load_users(tmp_path / "users.yaml")] == ["alice"]


def test_users_file_problems_are_reported_by_field(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text("users:\n  - id: bob\n    name: Bob\n    role: practitioner\n")
    with pytest.raises(UsersFileError, match=r"users\[0\]"):
        load_users(path)
    path.write_text("users: 3\n")
    with pytest.raises(UsersFileError, match="'users' list"):
        load_users(path)


async def test_users_file_authenticator_checks_hashes_and_reloads(tmp_path: Path) -> None:
    pairs = ensure_demo_users(tmp_path)
    auth = UsersFileAuthenticator(tmp_path / "users.yaml")
    user, token = pairs[0]
    assert await auth.authenticate(token) == user
    with pytest.raises(AuthError):
        await auth.authenticate(token + "x")
    with pytest.raises(AuthError):
        await auth.authenticate(hash_token(token))  # the hash is not a token

    newcomer = StoredUser(
        id="new-manager",
        name="New Manager",
        agency="merton-police",
        partnership="merton",
        role="manager",
        token_sha256=hash_token("fresh-token-" + "x" * 30),
    )
    stored = load_users(tmp_path / "users.yaml")
    time.sleep(0.01)
    write_users(tmp_path / "users.yaml", [*stored, newcomer])
    assert (await auth.authenticate("fresh-token-" + "x" * 30)).id == "new-manager"


def test_user_roles_need_their_memberships() -> None:
    with pytest.raises(ValidationError):
        User(id="p", name="P", role="practitioner", partnership="merton")
    with pytest.raises(ValidationError):
        User(id="b", name="B", role="business-team")
    assert User(id="o", name="O", role="operator").actor().role == "operator"


# --- OIDC --------------------------------------------------------------------------------


class StaticJwks(jwt.PyJWKClient):
    """A JWKS client that serves keys from memory instead of the network."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        super().__init__("https://login.example/jwks")
        self._static = jwks

    def fetch_data(self) -> Any:
        return self._static


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def oidc(signing_key: rsa.RSAPrivateKey) -> OidcAuthenticator:
    public = jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key(), as_dict=True)
    public.update({"kid": "key-1", "use": "sig", "alg": "RS256"})
    return OidcAuthenticator(
        ISSUER, AUDIENCE, claim_prefix="esc_", jwks_client=StaticJwks({"keys": [public]})
    )


def token(key: rsa.RSAPrivateKey, **changes: Any) -> str:
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "8c1f-oidc-user",
        "iat": now,
        "exp": now + 300,
        "name": "Kim Patel",
        "email": "kim.patel@police.merton.example",
        "esc_agency": "merton-police",
        "esc_partnership": "merton",
        "esc_role": "manager",
    }
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "key-1"})


async def test_oidc_token_becomes_a_user(
    oidc: OidcAuthenticator, signing_key: rsa.RSAPrivateKey
) -> None:
    user = await oidc.authenticate(token(signing_key))
    assert user == User(
        id="8c1f-oidc-user",
        name="Kim Patel",
        email="kim.patel@police.merton.example",
        agency="merton-police",
        partnership="merton",
        role="manager",
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "another-api"},
        {"iss": "https://evil.example"},
        {"exp": 1_000_000_000},
        {"sub": None},
    ],
)
async def test_oidc_refuses_bad_tokens(
    oidc: OidcAuthenticator, signing_key: rsa.RSAPrivateKey, changes: dict[str, Any]
) -> None:
    with pytest.raises(AuthError) as refused:
        await oidc.authenticate(token(signing_key, **changes))
    assert refused.value.status == 401


async def test_oidc_refuses_a_foreign_signature_and_a_token_without_a_role(
    oidc: OidcAuthenticator, signing_key: rsa.RSAPrivateKey
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthError):
        await oidc.authenticate(token(stranger))
    with pytest.raises(AuthError):
        await oidc.authenticate("not.a.jwt")
    with pytest.raises(AuthError) as no_role:
        await oidc.authenticate(token(signing_key, esc_role=None))
    assert no_role.value.status == 403


async def test_oidc_through_the_api(
    oidc: OidcAuthenticator, signing_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    app = create_app(
        settings(ESCALATION_DATA_DIR=str(tmp_path)),
        client=object(),
        authenticator=oidc,  # type: ignore[arg-type]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        good = {"Authorization": f"Bearer {token(signing_key)}"}
        assert (await http.get("/policies", headers=good)).status_code == 200
        expired = {"Authorization": f"Bearer {token(signing_key, exp=1_000_000_000)}"}
        response = await http.get("/policies", headers=expired)
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        roleless = {"Authorization": f"Bearer {token(signing_key, esc_role=None)}"}
        response = await http.get("/policies", headers=roleless)
        assert response.status_code == 403
        assert response.json()["type"] == "/problems/forbidden"


def test_the_authenticator_follows_the_settings(tmp_path: Path) -> None:
    assert isinstance(
        build_authenticator(settings(ESCALATION_DATA_DIR=str(tmp_path))), UsersFileAuthenticator
    )
    chosen = build_authenticator(
        settings(ESCALATION_OIDC_ISSUER=ISSUER, ESCALATION_OIDC_AUDIENCE=AUDIENCE)
    )
    assert isinstance(chosen, OidcAuthenticator)
    with pytest.raises(ValueError, match="AUDIENCE"):
        build_authenticator(settings(ESCALATION_OIDC_ISSUER=ISSUER))
    # docker-compose passes unset variables through as empty strings.
    assert settings(ESCALATION_OIDC_ISSUER="").oidc_issuer is None


# --- Settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    ["changeme", "change-me", "CHANGEME-CHANGEME-CHANGEME-CHANGEME", "a" * 40, "short-but-real"],
)
def test_placeholder_and_short_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValidationError) as refused:
        settings(ESCALATION_API_SECRET=secret)
    assert secret not in str(refused.value)


def test_a_real_secret_is_accepted() -> None:
    secret = secrets.token_urlsafe(32)
    got = settings(ESCALATION_API_SECRET=secret).api_secret
    assert got is not None and got.get_secret_value() == secret
    assert settings(ESCALATION_API_SECRET="").api_secret is None


# --- Authorisation rules and references --------------------------------------------------


def _user(role: str, agency: str | None = None, partnership: str | None = None) -> User:
    return User(id=f"u-{role}", name=role, role=role, agency=agency, partnership=partnership)  # type: ignore[arg-type]


def test_who_may_access_a_case() -> None:
    parties = ["merton-health", "merton-childrens-social-care"]
    assert may_access_case(_user("practitioner", "merton-health", "merton"), "merton", parties)
    assert not may_access_case(_user("manager", "merton-police", "merton"), "merton", parties)
    assert not may_access_case(_user("manager", "merton-health", "cheshire"), "merton", parties)
    assert may_access_case(_user("business-team", None, "merton"), "merton", parties)
    assert not may_access_case(_user("business-team", None, "cheshire"), "merton", parties)
    assert may_access_case(_user("operator"), "merton", parties)
    assert not may_access_case(_user("business-team", None, "merton"), None, parties)


def test_who_may_raise() -> None:
    practitioner = _user("practitioner", "merton-health", "merton")
    assert raise_refusal(practitioner, "merton", "merton-health") is None
    assert "own agency" in (raise_refusal(practitioner, "merton", "merton-police") or "")
    assert "partnership" in (raise_refusal(practitioner, "cheshire", "merton-health") or "")
    assert raise_refusal(_user("business-team", None, "merton"), "merton", "merton-police") is None
    assert raise_refusal(_user("operator"), "wirral", "wirral-police") is None


def test_references() -> None:
    key = b"k" * 32
    ref = derived_reference(key, "merton", "alice", "key-1")
    assert ref == derived_reference(key, "merton", "alice", "key-1")
    assert ref != derived_reference(key, "merton", "bob", "key-1")
    assert ref != derived_reference(key, "merton", "alice", "key-2")
    assert ref != derived_reference(b"j" * 32, "merton", "alice", "key-1")
    assert ref.startswith("MER-") and len(ref) == 12
    assert random_reference("staffordshire-stoke").startswith("STA-")
    assert random_reference("merton") != random_reference("merton")
    assert request_fingerprint(key, "alice", "{}") != request_fingerprint(key, "bob", "{}")


def test_register_scope_follows_the_role() -> None:
    """The register's scope is the same rule as may_access_case: a party's
    user their agency's cases, the business team its partnership's, an
    operator every one."""
    assert register_scope(_user("practitioner", "merton-health", "merton")) == Scope(
        partnership="merton", agency="merton-health"
    )
    assert register_scope(_user("business-team", None, "merton")) == Scope(partnership="merton")
    assert register_scope(_user("operator")) == Scope()
