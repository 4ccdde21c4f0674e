"""The API: a thin FastAPI service over the Temporal client.

``create_app(settings)`` builds the app; ``app`` is the one uvicorn serves
(``uvicorn api.main:app``), configured from the environment (see
``escalation.settings``). The app's lifespan creates its one Temporal client
(lazily connected, with the worker's data converter), its register (the case
record: the API only reads it), its authenticator and its HMAC key; tests may
inject a client, a register and an authenticator instead.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from temporalio.client import Client

from api import problems
from api.auth import Authenticator, build_authenticator
from api.cases import load_secret
from api.limits import AccessLog, BodyLimit
from api.routes import codec, disagreements, forms, health, policies, reports, webhooks
from api.users import ensure_demo_users
from escalation.converter import data_converter
from escalation.settings import Settings, get_settings
from register import Register
from web import links
from web import routes as pages

log = logging.getLogger("escalation.api")

DESCRIPTION = """\
Professional disagreements under English safeguarding partnerships'
escalation policies, each one a durable Temporal workflow.

Every route but `/healthz` and `/readyz` needs `Authorization: Bearer <token>`.
A user sees and acts only on cases where their agency is a party, or on every
case of their partnership if they are in its business team; any other case
answers 404. Errors are problem details (RFC 9457, `application/problem+json`).
"""

TAGS = [
    {"name": "disagreements", "description": "Raise, list, read and act on cases."},
    {"name": "policies", "description": "The partnerships' escalation policies, as data."},
    {"name": "health", "description": "Liveness and readiness; no token needed."},
]


async def connect_client(settings: Settings) -> Client:
    """The API's client: the worker's data converter (and so its payload keys,
    from the same settings), connected on first use so
    the API starts (and answers /healthz) while Temporal is still coming up."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        lazy=True,
    )


def _log_to_stderr() -> None:
    """Uvicorn configures only its own loggers: without a handler of their
    own, the product's INFO lines (the access log, codec decodes) would be
    lost. Where logging is already set up (a host's config, the tests), it
    is left alone."""
    product = logging.getLogger("escalation")
    if product.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    product.addHandler(handler)
    product.setLevel(logging.INFO)


def create_app(
    settings: Settings | None = None,
    *,
    client: Client | None = None,
    authenticator: Authenticator | None = None,
    register: Register | None = None,
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _log_to_stderr()
        state = app.state
        if state.authenticator is None:
            if not settings.oidc_issuer and settings.demo_users:
                created = ensure_demo_users(settings.data_dir, settings.users_file)
                if created:
                    log.info(
                        "demo users ready; their tokens are in %s",
                        settings.data_dir / "demo-tokens.txt",
                    )
            state.authenticator = build_authenticator(settings)
        if state.secret is None:
            state.secret = load_secret(settings)
        if state.client is None:
            state.client = await connect_client(settings)
        owns_register = state.register is None
        if owns_register:
            # Connects on first use: a database that is down at start makes
            # /readyz and the lists say so, and the API still starts.
            state.register = Register.from_settings(settings)
        try:
            yield
        finally:
            if owns_register:
                state.register.close()
                state.register = None

    app = FastAPI(
        title="Safeguarding escalation API",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        # Served below with the app's own copies of Swagger UI and ReDoc:
        # FastAPI's defaults load them from a CDN, blank without internet.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.client = client
    app.state.authenticator = authenticator
    app.state.register = register
    app.state.secret = None
    problems.install(app)
    app.include_router(disagreements.router)
    app.include_router(policies.router)
    app.include_router(health.router)
    app.include_router(codec.router)
    app.include_router(forms.router)
    app.include_router(webhooks.router)
    app.include_router(reports.router)
    pages.install(app)
    app.include_router(links.router)
    install_assets(app)

    def refusal_headers(scope: MutableMapping[str, Any]) -> dict[str, str]:
        if str(scope.get("path", "")).startswith("/codec/"):
            return codec.cors_headers(Request(scope), settings)
        return {}

    app.add_middleware(BodyLimit, extra_headers=refusal_headers)
    # Outermost, so that refusals before routing are logged too.
    app.add_middleware(AccessLog)
    return app


def install_assets(app: FastAPI) -> None:
    """The pages' stylesheet and scripts, and /docs and /redoc, from
    web/static (built from node_modules by ``make install``)."""
    if pages.STATIC.is_dir():
        app.mount("/assets", StaticFiles(directory=pages.STATIC), name="assets")
    else:
        log.warning("no %s: run `make install` to build the pages' assets", pages.STATIC)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} – Swagger UI",
            swagger_js_url="/assets/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/assets/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/assets/swagger-ui/favicon-32x32.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} – ReDoc",
            redoc_js_url="/assets/redoc/redoc.standalone.js",
            redoc_favicon_url="/assets/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )


app = create_app()
