"""The `iotistic` command.

Cloud imports (FastAPI, SQLAlchemy, Alembic, uvicorn) happen inside the commands that need them, so
`iotistic --help` stays fast and a device installed with `iotistic[agent]` only can still load this module.

Exit codes: 0 success, 1 the operation failed (e.g. database unreachable, duplicate user), 2 bad usage or
invalid configuration. Errors are one line on stderr, without a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.text import Text

import iotistic

if TYPE_CHECKING:
    from iotistic.core.settings import CloudSettings

app = typer.Typer(
    name="iotistic",
    help="Iotistic IoT platform: cloud API, database, users and licences.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)
admin_app = typer.Typer(help="Manage users from the command line (e.g. the first owner).", no_args_is_help=True)
license_app = typer.Typer(help="Licence keys and licences (RS256 JWTs) for operators and tests.",
                          no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(license_app, name="license")

# soft_wrap: never break a line (commands shown to the user must stay copy-pastable when piped).
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

EXIT_FAILED = 1
EXIT_USAGE = 2

DEFAULT_LICENSE_DAYS = 365


class RoleChoice(StrEnum):
    owner = "owner"
    admin = "admin"
    operator = "operator"
    viewer = "viewer"


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """One line on stderr, then exit."""
    line = " ".join(str(message).split())
    err.print(Text.assemble(("error: ", "bold red"), line))
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"iotistic {iotistic.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Iotistic IoT platform: cloud API, database, users and licences."""


# Shared helpers ------------------------------------------------------------------------------------------------

def _load_settings() -> CloudSettings:
    """Settings from the environment; invalid configuration is one line and exit code 2."""
    try:
        from iotistic.core.settings import ConfigError, load_cloud_settings
    except ImportError as exc:  # pragma: no cover - only without the cloud extra
        fail(f"the cloud API is not installed ({exc.name} missing): pip install 'iotistic[cloud]'", EXIT_USAGE)
    try:
        return load_cloud_settings()
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


def _cloud_imports_available() -> None:
    try:
        import alembic  # noqa: F401
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        fail(f"the cloud API is not installed ({exc.name} missing): pip install 'iotistic[cloud]'", EXIT_USAGE)


def _display_url(url: str) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _prepare_storage(settings: CloudSettings) -> None:
    """Create the data directory and, on SQLite, the database file's directory."""
    from sqlalchemy.engine import make_url

    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if settings.is_sqlite:
            database = make_url(settings.sqlalchemy_url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create the data directory {settings.data_dir}: {exc.strerror or exc}", EXIT_USAGE)


def _describe_db_error(exc: BaseException) -> str:
    from sqlalchemy.exc import DBAPIError

    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


_DB_ERRORS: tuple[type[BaseException], ...] = (OSError, ConnectionError, TimeoutError)


def _db_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import SQLAlchemyError

    errors: list[type[BaseException]] = [SQLAlchemyError, *_DB_ERRORS]
    try:
        import asyncpg

        errors.append(asyncpg.PostgresError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _migrate(settings: CloudSettings, revision: str = "head") -> None:
    from iotistic.cloud.migrate import upgrade

    try:
        upgrade(settings.sqlalchemy_url, revision)
    except _db_errors() as exc:
        fail(f"migrating {_display_url(settings.sqlalchemy_url)} failed: {_describe_db_error(exc)}")


async def _schema_revision(url: str) -> tuple[set[str], set[str]]:
    """(revisions the database is at, head revisions of the code)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from iotistic.cloud.migrate import alembic_config
    from iotistic.core.db import make_engine

    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(lambda c: set(MigrationContext.configure(c).get_current_heads()))
    finally:
        await engine.dispose()
    return current, heads


def _require_migrated(settings: CloudSettings, *, unreachable_ok: bool = False) -> None:
    """Exit with one clear line when the schema is not at the code's head revision."""
    try:
        current, heads = asyncio.run(_schema_revision(settings.sqlalchemy_url))
    except _db_errors() as exc:
        if unreachable_ok:
            import logging

            logging.getLogger("iotistic.cli").warning(
                "database unreachable at start; /ready reports it until it answers",
                extra={"error": _describe_db_error(exc)})
            return
        fail(f"database {_display_url(settings.sqlalchemy_url)} unreachable: {_describe_db_error(exc)}")
    if current != heads:
        where = f"at revision {', '.join(sorted(current))}" if current else "not migrated"
        fail(f"the database is {where} but this version needs {', '.join(sorted(heads))}: "
             f"run `iotistic db upgrade` first")


async def _count_users(url: str) -> int:
    from iotistic.cloud.services.users import count_users
    from iotistic.core.db import make_engine, make_sessionmaker

    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            return await count_users(session)
    finally:
        await engine.dispose()


def _browse_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):  # noqa: S104 - only used to print a URL
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _own_command() -> str:
    """How the user can run this same `iotistic` again, even when the venv is not on PATH."""
    import os
    import shutil

    argv0 = Path(sys.argv[0])
    if argv0.name == "iotistic":
        found = shutil.which("iotistic")
        if found and Path(found).resolve() == argv0.resolve():
            return "iotistic"
        try:
            return str(argv0.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(argv0.resolve())
    if shutil.which("iotistic") and os.environ.get("VIRTUAL_ENV"):
        return "iotistic"
    return f"{sys.executable} -m iotistic.cli"


def _first_user_command(settings: CloudSettings) -> str:
    import os
    import shlex

    prefix = ""
    if settings.is_sqlite and not os.environ.get("DATABASE_URL") and os.environ.get("IOTISTIC_DATA_DIR"):
        prefix = f"IOTISTIC_DATA_DIR={shlex.quote(str(settings.data_dir.resolve()))} "
    return (f"{prefix}{_own_command()} admin create --email you@example.com "
            f"--password '<a strong password>' --role owner")


def _same_database_hint() -> str:
    import os

    if os.environ.get("DATABASE_URL") or os.environ.get("DB_HOST"):
        return "(with the same DATABASE_URL or DB_* variables as this process, so it reaches the same database)"
    if os.environ.get("IOTISTIC_DATA_DIR"):
        return ""
    return f"(from {Path.cwd()}, so it uses the same database under ./.iotistic/)"


def _serve(settings: CloudSettings, host: str, port: int) -> None:
    import uvicorn

    from iotistic.cloud.app import create_app
    from iotistic.core.settings import ConfigError

    try:
        application = create_app(settings)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except OSError as exc:  # e.g. the JWT secret file under an unwritable data dir
        fail(f"cannot start: {exc}", EXIT_USAGE)
    sys.stdout.flush()
    # log_config=None: uvicorn's loggers propagate to the root JSON handler set by configure_logging.
    uvicorn.run(application, host=host, port=port, log_config=None, proxy_headers=True, server_header=False)


HostOption = Annotated[str, typer.Option("--host", help="Address to listen on.")]
PortOption = Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port to listen on.")]


# Commands --------------------------------------------------------------------------------------------------------

@app.command()
def up(
    host: HostOption = "127.0.0.1",
    port: PortOption = 3002,
) -> None:
    """Run the platform on its embedded default: migrate the database, then serve the cloud API.

    The database is SQLite under ./.iotistic/ (IOTISTIC_DATA_DIR) unless DATABASE_URL or DB_HOST is set.
    """
    _cloud_imports_available()
    settings = _load_settings()
    from iotistic.cloud.observability import configure_logging

    configure_logging(settings.log_level)
    _prepare_storage(settings)
    _migrate(settings)
    try:
        users = asyncio.run(_count_users(settings.sqlalchemy_url))
    except _db_errors() as exc:
        fail(f"database {_display_url(settings.sqlalchemy_url)} unreachable: {_describe_db_error(exc)}")

    base = f"http://{_browse_host(host)}:{port}"
    out.print(Text.assemble(("Iotistic cloud API ", "bold"), (base, "bold cyan")))
    out.print(f"  API docs:  {base}/docs")
    out.print(f"  Health:    {base}/health")
    out.print(f"  Database:  {_display_url(settings.sqlalchemy_url)}")
    if users == 0:
        out.print(Text("No user exists yet. Create the first owner (in another terminal):", style="yellow"))
        out.print(f"  {_first_user_command(settings)}")
        hint = _same_database_hint()
        if hint:
            out.print(f"  {hint}")
    else:
        out.print(f"  Users:     {users}")
    out.print("Press Ctrl+C to stop.")
    _serve(settings, host, port)


@app.command()
def api(
    host: HostOption = "0.0.0.0",  # noqa: S104 - the API is meant to be reachable in production
    port: PortOption = 3002,
) -> None:
    """Run the cloud API alone, configured from the environment (no automatic migration)."""
    _cloud_imports_available()
    settings = _load_settings()
    from iotistic.cloud.observability import configure_logging

    configure_logging(settings.log_level)
    _prepare_storage(settings)
    _require_migrated(settings, unreachable_ok=True)
    if not settings.jwt_secret and not settings.is_sqlite:
        import logging

        logging.getLogger("iotistic.cli").warning(
            "JWT_SECRET is not set: using a secret stored under %s; replicas must share one JWT_SECRET",
            settings.data_dir)
    _serve(settings, host, port)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option("--revision", help="Target Alembic revision.")] = "head",
) -> None:
    """Apply the cloud database's migrations (to head by default)."""
    _cloud_imports_available()
    settings = _load_settings()
    _prepare_storage(settings)
    _migrate(settings, revision)
    out.print(f"database {_display_url(settings.sqlalchemy_url)} migrated to {revision}")


async def _create_user(settings: CloudSettings, email: str, password: str, role: str) -> int:
    from sqlalchemy.exc import IntegrityError

    from iotistic.cloud.models import Role
    from iotistic.cloud.services import audit, users
    from iotistic.core.db import make_engine, make_sessionmaker

    engine = make_engine(settings.sqlalchemy_url)
    try:
        async with make_sessionmaker(engine)() as session:
            user = await users.create_user(session, email=email, password=password, role=Role(role))
            audit.record(session, actor="cli", action="user.created", target_type="user", target_id=user.id,
                         details={"email": user.email, "role": user.role})
            try:
                await session.commit()
            except IntegrityError:
                from iotistic.cloud.errors import conflict

                raise conflict(f"a user with email {user.email} exists") from None
            return user.id
    finally:
        await engine.dispose()


@admin_app.command("create")
def admin_create(
    email: Annotated[str, typer.Option("--email", help="The user's email (their login).")],
    password: Annotated[str, typer.Option(
        "--password", prompt=True, hide_input=True, confirmation_prompt=True,
        help="At least 10 characters. Asked for (hidden) when omitted, which keeps it out of shell history.")],
    role: Annotated[RoleChoice, typer.Option("--role", help="The user's role.")] = RoleChoice.owner,
) -> None:
    """Create a user (the first owner, or later users). There are no default credentials."""
    _cloud_imports_available()
    from pydantic import EmailStr, TypeAdapter, ValidationError

    try:
        TypeAdapter(EmailStr).validate_python(email)
    except ValidationError:
        fail(f"{email!r} is not a valid email address", EXIT_USAGE)
    settings = _load_settings()
    _prepare_storage(settings)
    _require_migrated(settings)
    from iotistic.cloud.errors import ApiError

    try:
        user_id = asyncio.run(_create_user(settings, email, password, role.value))
    except ApiError as exc:  # weak password (422) is bad input; a duplicate email (409) a failed operation
        fail(exc.message, EXIT_USAGE if exc.status == 422 else EXIT_FAILED)
    except _db_errors() as exc:
        fail(f"creating the user failed: {_describe_db_error(exc)}")
    out.print(f"created user {email.strip().lower()} (id {user_id}) with role {role.value}")


@license_app.command("keygen")
def license_keygen(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for license-private.pem and license-public.pem.")],
    bits: Annotated[int, typer.Option("--bits", min=2048, max=8192, help="RSA key size.")] = 2048,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing private key.")] = False,
) -> None:
    """Create the RSA key pair that signs (private, mode 0600) and verifies (public) licences."""
    from iotistic.core.licensing import write_keypair

    if (out_dir / "license-private.pem").exists() and not force:
        fail(f"{out_dir / 'license-private.pem'} exists; pass --force to replace it", EXIT_FAILED)
    try:
        private_path, public_path = write_keypair(out_dir, bits)
    except OSError as exc:
        fail(f"cannot write keys to {out_dir}: {exc.strerror or exc}")
    err.print(f"private key: {private_path} (mode 0600; keep it secret, it signs licences)")
    err.print(f"public key:  {public_path} (give it to the cloud API as LICENSE_PUBLIC_KEY)")


@license_app.command("sign")
def license_sign(
    private_key: Annotated[Path, typer.Option("--private-key", help="PEM file from `iotistic license keygen`.")],
    customer_id: Annotated[str, typer.Option("--customer-id", help="The customer the licence is for.")],
    plan: Annotated[str, typer.Option("--plan", help="starter, professional or enterprise.")],
    days: Annotated[int | None, typer.Option(
        "--days", min=1, max=36500,
        help=f"Validity in days (default {DEFAULT_LICENSE_DAYS}, or the trial length with --trial).")] = None,
    trial: Annotated[bool, typer.Option("--trial", help="Mark the licence as a trial.")] = False,
) -> None:
    """Sign a licence and print the JWT only (e.g. IOTISTIC_LICENSE_KEY=$(iotistic license sign ...))."""
    from iotistic.core.licensing import issue_license
    from iotistic.core.plans import TRIAL_DAYS, get_plan

    try:
        get_plan(plan)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    if not customer_id.strip():
        fail("--customer-id must not be empty", EXIT_USAGE)
    try:
        pem = private_key.read_text()
    except OSError as exc:
        fail(f"cannot read the private key {private_key}: {exc.strerror or exc}", EXIT_USAGE)
    if days is None:
        days = TRIAL_DAYS if trial else DEFAULT_LICENSE_DAYS
    try:
        token = issue_license(pem, customer_id=customer_id, plan=plan, days=days, trial=trial)
    except Exception as exc:  # an unusable key surfaces as ValueError, TypeError or jwt's own errors
        fail(f"{private_key} is not a usable RSA private key: {type(exc).__name__}", EXIT_USAGE)
    typer.echo(token)


if __name__ == "__main__":
    app()
