"""The `iotistic` command.

Cloud imports (FastAPI, SQLAlchemy, Alembic, uvicorn) happen inside the commands that need them, so
`iotistic --help` stays fast and a device installed with `iotistic[agent]` only can still load this module.

Exit codes: 0 success, 1 the operation failed (e.g. database unreachable, duplicate user), 2 bad usage or
invalid configuration. Errors are one line on stderr, without a traceback.
"""

from __future__ import annotations

import asyncio
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

import iotistic

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from iotistic.agent.control import Control
    from iotistic.agent.settings import AgentSettings
    from iotistic.billing.deploy.spec import Deployer
    from iotistic.billing.settings import BillingSettings
    from iotistic.core.settings import CloudSettings
    from iotistic.exporter.settings import ExporterSettings
    from iotistic.simulator.run import Counters

app = typer.Typer(
    name="iotistic",
    help="Iotistic IoT platform: cloud API, database, users, licences and the edge agent.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)
admin_app = typer.Typer(help="Manage users from the command line (e.g. the first owner).", no_args_is_help=True)
license_app = typer.Typer(help="Licence keys and licences (RS256 JWTs) for operators and tests.",
                          no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
agent_app = typer.Typer(
    help="The edge agent: `iotistic agent` runs it; the subcommands inspect and operate it.",
    invoke_without_command=True,
)
app.add_typer(license_app, name="license")
app.add_typer(agent_app, name="agent")
broker_app = typer.Typer(help="The MQTT broker (Mosquitto): make it enforce the accounts and ACLs in the database.",
                         no_args_is_help=True)
app.add_typer(broker_app, name="broker")
ingest_app = typer.Typer(
    help="Telemetry ingest: `iotistic ingest` runs a worker (MQTT -> database + live stream).",
    invoke_without_command=True,
)
app.add_typer(ingest_app, name="ingest")
exporter_app = typer.Typer(
    help="Usage exporter: `iotistic exporter` serves Prometheus /metrics for this customer instance.",
    invoke_without_command=True,
)
app.add_typer(exporter_app, name="exporter")
twin_app = typer.Typer(help="The digital twin: import IFC files into the building graph, show it as a tree.",
                       no_args_is_help=True)
app.add_typer(twin_app, name="twin")

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
    """Iotistic IoT platform: cloud API, database, users, licences and the edge agent."""


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


async def _new_setup_link(url: str, hours: int) -> tuple[str, str]:
    """(token, expiry as text) of a fresh one-time setup link, replacing any earlier one."""
    from iotistic.cloud.services.setup import new_setup_link
    from iotistic.core.db import make_engine, make_sessionmaker

    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            link = await new_setup_link(session, hours)
            return link.token, f"{link.expires_at:%Y-%m-%d %H:%M} UTC"
    finally:
        await engine.dispose()


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


def _serve(settings: CloudSettings, host: str, port: int, *, mqtt_port: int | None = None,
           demo_devices: int = 0) -> None:
    """Serve the API; with `mqtt_port`, the embedded MQTT broker too, in the same process and event loop; with
    `demo_devices`, that many simulated devices as well."""
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
    config = uvicorn.Config(application, host=host, port=port, log_config=None, proxy_headers=True,
                            server_header=False)
    if mqtt_port is None and not demo_devices:
        uvicorn.Server(config).run()
        return
    asyncio.run(_serve_with_broker(settings, uvicorn.Server(config), host, mqtt_port, demo_devices))


async def _serve_with_broker(settings: CloudSettings, server: Any, host: str, mqtt_port: int | None,
                             demo_devices: int = 0) -> None:
    from iotistic.embedded_broker import start_embedded_broker

    broker = None
    if mqtt_port is not None:
        try:
            broker = await start_embedded_broker(settings, host, mqtt_port)
        except OSError as exc:  # the port is taken, e.g. by a Mosquitto already running
            err.print(f"warning: embedded MQTT broker not started on {host}:{mqtt_port}: {exc.strerror or exc}")
        else:
            out.print(f"  MQTT:      {broker.url} (embedded broker; devices log in with their MQTT credentials)")
            sys.stdout.flush()
    demo_stop = asyncio.Event()
    demo = (asyncio.create_task(_run_demo(settings, server, f"http://{_browse_host(host)}:{server.config.port}",
                                          demo_devices, demo_stop)) if demo_devices else None)
    try:
        await server.serve()
    finally:
        demo_stop.set()
        if demo is not None:
            await demo  # the devices publish `offline` and disconnect while the broker still runs
        if broker is not None:
            await broker.stop()


HostOption = Annotated[str, typer.Option("--host", help="Address to listen on.")]
PortOption = Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port to listen on.")]


# Commands --------------------------------------------------------------------------------------------------------

@app.command()
def up(
    host: HostOption = "127.0.0.1",
    port: PortOption = 3002,
    mqtt_port: Annotated[int, typer.Option("--mqtt-port", min=0, max=65535,
                                           help="Port of the embedded MQTT broker; 0: none.")] = 1883,
    demo: Annotated[bool, typer.Option(
        "--demo", help="Also run simulated BME688 devices, registered through the API with a provisioning key "
                       "made at start (reused on the next start).")] = False,
    demo_devices: Annotated[int, typer.Option("--demo-devices", min=1, max=100,
                                              help="How many simulated devices --demo runs.")] = 3,
) -> None:
    """Run the platform on its embedded default: migrate the database, then serve the cloud API, an in-process
    MQTT broker enforcing the database's MQTT accounts and ACLs, and telemetry ingest (stored, streamed on /ws).

    The database is SQLite under ./.iotistic/ (IOTISTIC_DATA_DIR) unless DATABASE_URL or DB_HOST is set.
    """
    _cloud_imports_available()
    settings = _load_settings()
    if "MQTT_BROKER_URL" in os.environ:
        mqtt_port = 0  # a broker of its own is configured (Mosquitto in production)
    elif mqtt_port:
        # Devices are told this broker at registration.
        settings.mqtt_broker_url = f"mqtt://{_browse_host(host)}:{mqtt_port}"
        settings.ingest_shared_subscription = False  # the embedded broker speaks MQTT 3.1.1 only
    if "INGEST_IN_API" not in os.environ:
        settings.ingest_in_api = True  # the whole platform in one process: telemetry is stored and streamed
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
    out.print(f"  Dashboard: {base}/")
    out.print(f"  API docs:  {base}/docs")
    out.print(f"  Health:    {base}/health")
    out.print(f"  Database:  {_display_url(settings.sqlalchemy_url)}")
    if users == 0:
        try:
            token, expires = asyncio.run(_new_setup_link(settings.sqlalchemy_url, settings.setup_token_hours))
        except _db_errors() as exc:
            fail(f"creating the setup link failed: {_describe_db_error(exc)}")
        out.print(Text("No user exists yet. Open this one-time link to create the first owner "
                       f"(valid until {expires}):", style="yellow"))
        out.print(Text(f"  {(settings.public_url or base).rstrip('/')}/setup#token={token}", style="bold"))
        out.print(f"  or, in another terminal: {_first_user_command(settings)}")
        hint = _same_database_hint()
        if hint:
            out.print(f"  {hint}")
    else:
        out.print(f"  Users:     {users}")
    out.print("Press Ctrl+C to stop.")
    if demo:
        _quiet_mqtt_logs()
    _serve(settings, host, port, mqtt_port=mqtt_port or None, demo_devices=demo_devices if demo else 0)


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


@admin_app.command("setup-link")
def admin_setup_link(
    url: Annotated[str | None, typer.Option(
        "--url", help="The address people open the dashboard at (default: PUBLIC_URL, else http://127.0.0.1:3002).")
    ] = None,
) -> None:
    """Print a fresh one-time link that creates the first owner (the earlier link stops working). Only while no
    user exists; valid for SETUP_TOKEN_HOURS (24)."""
    _cloud_imports_available()
    settings = _load_settings()
    base = (url or settings.public_url or "http://127.0.0.1:3002").rstrip("/")
    if not base.startswith(("http://", "https://")):
        fail(f"--url must be an http:// or https:// URL, not {base!r}", EXIT_USAGE)
    _prepare_storage(settings)
    _require_migrated(settings)
    from iotistic.cloud.errors import ApiError

    try:
        token, expires = asyncio.run(_new_setup_link(settings.sqlalchemy_url, settings.setup_token_hours))
    except ApiError as exc:  # a user exists already
        fail(exc.message)
    except _db_errors() as exc:
        fail(f"creating the setup link failed: {_describe_db_error(exc)}")
    out.print(f"{base}/setup#token={token}")
    err.print(f"Valid once, until {expires}. Whoever opens it first becomes the owner: share it with nobody else.")


@license_app.command("keygen")
def license_keygen(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for license-private.pem and license-public.pem.")],
    bits: Annotated[int, typer.Option("--bits", min=2048, max=8192, help="RSA key size.")] = 2048,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing private key.")] = False,
) -> None:
    """Create the RSA key pair that signs (private, mode 0600) and verifies (public) licences."""
    private_path, public_path = _write_licence_keys(out_dir, bits, force)
    err.print(f"private key: {private_path} (mode 0600; keep it secret, it signs licences)")
    err.print(f"public key:  {public_path} (give it to the cloud API as LICENSE_PUBLIC_KEY)")


def _write_licence_keys(out_dir: Path, bits: int, force: bool) -> tuple[Path, Path]:
    """license-private.pem (0600) and license-public.pem in `out_dir`; an existing private key only with --force."""
    from iotistic.core.licensing import write_keypair

    if (out_dir / "license-private.pem").exists() and not force:
        fail(f"{out_dir / 'license-private.pem'} exists; pass --force to replace it", EXIT_FAILED)
    try:
        return write_keypair(out_dir, bits)
    except OSError as exc:
        fail(f"cannot write keys to {out_dir}: {exc.strerror or exc}")


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


# The MQTT broker ---------------------------------------------------------------------------------------------------

@broker_app.command("sync")
def broker_sync(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit (e.g. before the broker starts).")] = False,
    password_file: Annotated[Path, typer.Option(
        "--password-file", envvar="MOSQUITTO_PASSWORD_FILE", help="The broker's password_file.")
    ] = Path("/etc/mosquitto/iotistic/passwd"),
    acl_file: Annotated[Path, typer.Option(
        "--acl-file", envvar="MOSQUITTO_ACL_FILE", help="The broker's acl_file.")
    ] = Path("/etc/mosquitto/iotistic/acl"),
    pid_file: Annotated[Path | None, typer.Option(
        "--pid-file", envvar="MOSQUITTO_PID_FILE", show_default="/run/mosquitto/mosquitto.pid",
        help="The broker's pid_file, read before every reload.")] = None,
    pid: Annotated[int | None, typer.Option("--pid", min=2, help="The broker's pid (instead of --pid-file).")] = None,
    group: Annotated[str, typer.Option(
        "--group", envvar="MOSQUITTO_GROUP",
        help="Group that may read the files (mode 0640); empty: owner only (0600).")] = "mosquitto",
    interval: Annotated[float, typer.Option(
        "--interval", min=0.05, max=60, help="Seconds between checks for changes (long-lived mode).")] = 0.5,
) -> None:
    """Write the broker's password_file and acl_file from the database and reload it (SIGHUP) when they change.

    Without --once it keeps running beside the broker (until SIGTERM or Ctrl+C): a change in the database is
    enforced within about a second. Database settings as for `iotistic api` (DATABASE_URL or DB_*).
    """
    _cloud_imports_available()
    source = ctx.get_parameter_source("pid_file")
    if pid is not None and getattr(source, "name", None) == "COMMANDLINE":  # not MOSQUITTO_PID_FILE
        fail("give --pid or --pid-file, not both", EXIT_USAGE)
    settings = _load_settings()
    from iotistic.broker.sync import DEFAULT_PID_FILE, BrokerTarget, SignalOutcome, resolve_ownership

    target = BrokerTarget(password_file=password_file, acl_file=acl_file,
                          pid_file=None if pid is not None else (pid_file or DEFAULT_PID_FILE), pid=pid,
                          group=group or None)
    try:
        resolve_ownership(target.group)
    except ValueError as exc:
        fail(f"--group: {exc}", EXIT_USAGE)
    from iotistic.cloud.observability import configure_logging

    configure_logging(settings.log_level)
    if not once:
        from iotistic.broker.sync import run_service

        asyncio.run(run_service(settings.sqlalchemy_url, target, interval=interval))
        return
    _require_migrated(settings)
    from iotistic.broker.sync import sync_once

    try:
        result = asyncio.run(sync_once(settings.sqlalchemy_url, target))
    except _db_errors() as exc:
        fail(f"reading the MQTT accounts from {_display_url(settings.sqlalchemy_url)} failed: "
             f"{_describe_db_error(exc)}")
    except (OSError, ValueError) as exc:
        fail(f"writing the broker's files failed: {exc}")
    skipped = f", {len(result.skipped)} account(s) or rule(s) left out (see the warnings)" if result.skipped else ""
    out.print(f"{result.accounts} MQTT account(s), {result.user_blocks} ACL user block(s){skipped}; "
              f"files {'updated' if result.changed else 'unchanged'}: {password_file}, {acl_file}")
    if result.signal == SignalOutcome.refused:
        fail(result.signal_detail)
    out.print(result.signal_detail)


# Ingest --------------------------------------------------------------------------------------------------------

@ingest_app.callback(invoke_without_command=True)
def ingest(ctx: typer.Context) -> None:
    """Run an ingest worker until SIGTERM or Ctrl+C: a shared MQTT v5 subscription to every device's telemetry,
    written in batches to the database and streamed live (Redis when REDIS_URL is set).

    Broker: MQTT_BROKER_URL. Account: INGEST_MQTT_USERNAME and INGEST_MQTT_PASSWORD (see `create-account`);
    without them the worker keeps an account of its own (fine for one worker). Give each worker a stable
    INGEST_CLIENT_ID (its persistent session at the broker).
    """
    if ctx.invoked_subcommand is not None:
        return
    _cloud_imports_available()
    settings = _load_settings()
    from iotistic.cloud.observability import configure_logging

    configure_logging(settings.log_level)
    _require_migrated(settings)
    from iotistic.ingest.runner import run_forever

    try:
        run_forever(settings)
    except _db_errors() as exc:
        fail(f"database {_display_url(settings.sqlalchemy_url)} unreachable: {_describe_db_error(exc)}")


@ingest_app.command("create-account")
def ingest_create_account(
    username: Annotated[str, typer.Option("--username", help="Name of the new MQTT service account.")] = "ingest",
) -> None:
    """Create the MQTT service account ingest workers share (read on iot/device/+/#) and print its password
    once, for INGEST_MQTT_USERNAME / INGEST_MQTT_PASSWORD."""
    _create_service_account(username, "INGEST_MQTT", process="ingest")


def _create_service_account(username: str, env_prefix: str, *, process: str) -> None:
    """Make the MQTT service account of a platform process ("ingest": reads every device topic; "exporter": reads
    the broker's $SYS tree) and print `<env_prefix>_USERNAME` and `_PASSWORD` once."""
    _cloud_imports_available()
    settings = _load_settings()
    _require_migrated(settings)
    from iotistic.cloud.errors import ApiError
    from iotistic.core.db import make_engine

    if process == "ingest":
        from iotistic.ingest.account import create_account
    else:
        from iotistic.exporter.account import create_account

    async def create() -> str:
        engine = make_engine(settings.sqlalchemy_url)
        try:
            return await create_account(engine, username)
        finally:
            await engine.dispose()

    try:
        password = asyncio.run(create())
    except ApiError as exc:
        fail(exc.message, EXIT_FAILED)
    except _db_errors() as exc:
        fail(f"database {_display_url(settings.sqlalchemy_url)} unreachable: {_describe_db_error(exc)}")
    out.print(f"{env_prefix}_USERNAME={username}")
    out.print(f"{env_prefix}_PASSWORD={password}")
    err.print("The password is shown only now; store it in your secret store.")


# Usage exporter ------------------------------------------------------------------------------------------------

def _load_exporter_settings() -> ExporterSettings:
    from iotistic.core.settings import ConfigError
    from iotistic.exporter.settings import load_exporter_settings

    try:
        return load_exporter_settings()
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


@exporter_app.callback(invoke_without_command=True)
def exporter(ctx: typer.Context) -> None:
    """Serve /metrics (EXPORTER_HOST:EXPORTER_PORT, default 0.0.0.0:9100) until SIGTERM or Ctrl+C: devices
    registered and online, MQTT messages the broker received, database and telemetry bytes, all labelled with
    the customer (CUSTOMER_ID, else the licence's customerId).

    Database as for `iotistic api` (DATABASE_URL or DB_*). Broker: MQTT_BROKER_URL with EXPORTER_MQTT_USERNAME and
    EXPORTER_MQTT_PASSWORD (see `create-account`), else an account of its own (iotistic-exporter, password under
    the data dir). EXPORTER_TOKEN: require `Authorization: Bearer <token>`.
    """
    if ctx.invoked_subcommand is not None:
        return
    _cloud_imports_available()
    settings = _load_exporter_settings()
    from iotistic.cloud.observability import configure_logging

    configure_logging(settings.log_level)
    _require_migrated(settings)
    from iotistic.core.settings import ConfigError
    from iotistic.exporter.service import run_service

    try:
        asyncio.run(run_service(settings))
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}")
    except _db_errors() as exc:
        fail(f"database {_display_url(settings.sqlalchemy_url)} unreachable: {_describe_db_error(exc)}")


@exporter_app.command("create-account")
def exporter_create_account(
    username: Annotated[str, typer.Option("--username", help="Name of the new MQTT service account.")] = "exporter",
) -> None:
    """Create the MQTT service account the exporter reads the broker's message count with (read on $SYS/broker/#)
    and print its password once, for EXPORTER_MQTT_USERNAME / EXPORTER_MQTT_PASSWORD."""
    _create_service_account(username, "EXPORTER_MQTT", process="exporter")


# The simulator -------------------------------------------------------------------------------------------------

SIMULATE_MAX_DEVICES = 100_000
SIMULATE_MIN_INTERVAL_MS = 10
DEFAULT_STATE_FILE = Path(".iotistic") / "simulator-devices.json"
DEMO_INTERVAL_S = 5.0


class MqttVersionChoice(StrEnum):
    auto = "auto"
    v5 = "5"
    v311 = "3.1.1"


def _quiet_mqtt_logs() -> None:
    """gmqtt logs every lost connection with a traceback; the simulator counts them and prints one line instead."""
    import logging

    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    logging.getLogger("iotistic.simulator").setLevel(logging.ERROR)


def _validate_simulate(devices: int, interval_ms: int, duration: float | None, api_url: str,
                       broker: str | None) -> None:
    from iotistic.simulator.wire import parse_broker_url

    if not 1 <= devices <= SIMULATE_MAX_DEVICES:
        fail(f"--devices must be between 1 and {SIMULATE_MAX_DEVICES:,}, not {devices}", EXIT_USAGE)
    if interval_ms < SIMULATE_MIN_INTERVAL_MS:
        fail(f"--interval-ms must be at least {SIMULATE_MIN_INTERVAL_MS} ms, not {interval_ms}", EXIT_USAGE)
    if duration is not None and duration <= 0:
        fail(f"--duration must be a positive number of seconds, not {duration:g}", EXIT_USAGE)
    if not api_url.startswith(("http://", "https://")):
        fail(f"--api must be an http:// or https:// URL, not {api_url!r}", EXIT_USAGE)
    if broker is not None:
        try:
            parse_broker_url(broker)
        except ValueError as exc:
            fail(f"--broker: {exc}", EXIT_USAGE)


async def _simulate(devices: int, interval_s: float, duration: float | None, api_url: str, key: str | None,
                    broker: str | None, state_file: Path, version: str, concurrency: int) -> Counters:
    import signal

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from iotistic.simulator.provision import provision_devices
    from iotistic.simulator.run import MqttVersion, run_simulation

    with Progress(TextColumn("provisioning devices"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("provisioning", total=devices)
        made = await provision_devices(api_url, devices, key, state_file=state_file, concurrency=concurrency,
                                       on_progress=lambda done, _total: progress.update(task, completed=done))
    out.print(f"{len(made)} simulated device(s) ready (credentials in {state_file}); publishing every "
              f"{interval_s * 1000:g} ms{f' for {duration:g} s' if duration else ' until Ctrl+C'}")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = loop.time()

    def status(counters: Counters) -> None:
        out.print(f"[{loop.time() - started:7.1f} s] {counters.line()}")
        sys.stdout.flush()

    return await run_simulation(made, interval_s, duration_s=duration, stop=stop, broker_url=broker,
                                version=MqttVersion(version), on_status=status,
                                status_every_s=min(5.0, duration / 2) if duration else 5.0)


@app.command()
def simulate(
    devices: Annotated[int, typer.Option("--devices", help="How many simulated devices (1-100,000).")] = 10,
    interval_ms: Annotated[int, typer.Option(
        "--interval-ms", help="Each device publishes one reading of every metric this often (at least 10 ms).")
    ] = 5000,
    api_url: Annotated[str, typer.Option("--api", help="The cloud API the devices register with.")
                       ] = "http://127.0.0.1:3002",
    provisioning_key: Annotated[str | None, typer.Option(
        "--provisioning-key", envvar="IOTISTIC_PROVISIONING_KEY",
        help="Registers the devices the state file does not hold yet.")] = None,
    broker: Annotated[str | None, typer.Option(
        "--broker", help="MQTT broker URL (mqtt://host:port) instead of the one the cloud gives at registration.")
    ] = None,
    state_file: Annotated[Path, typer.Option(
        "--state-file", help="The devices' credentials (JSON, mode 0600); reused on the next run.")
    ] = DEFAULT_STATE_FILE,
    duration: Annotated[float | None, typer.Option(
        "--duration", help="Stop after this many seconds (default: run until Ctrl+C).")] = None,
    mqtt_version: Annotated[MqttVersionChoice, typer.Option(
        "--mqtt-version", help="auto asks the broker (MQTT 5, or 3.1.1 for the embedded broker).")
    ] = MqttVersionChoice.auto,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=256,
                                             help="Registrations in flight at once.")] = 16,
) -> None:
    """Simulated BME688 sensors: register devices through the cloud API (or reuse those in the state file), then
    publish temperature, humidity, pressure and gas resistance over MQTT with each device's own credentials.

    Every device publishes `online` (retained) on iot/device/<uuid>/status when it connects and `offline` when it
    stops (also its last will), and one QoS 1 message per metric on iot/device/<uuid>/sensor/<metric> every
    interval. A status line (published, acknowledged, errors) is printed every 5 seconds.
    """
    _validate_simulate(devices, interval_ms, duration, api_url, broker)
    _quiet_mqtt_logs()
    from iotistic.simulator.provision import ProvisioningError
    from iotistic.simulator.run import SimulatorError

    try:
        counters = asyncio.run(_simulate(devices, interval_ms / 1000, duration, api_url, provisioning_key, broker,
                                         state_file, mqtt_version.value, concurrency))
    except ProvisioningError as exc:
        missing_key = provisioning_key is None and "no provisioning key" in str(exc)
        fail(f"{exc}{' (give --provisioning-key or set IOTISTIC_PROVISIONING_KEY)' if missing_key else ''}")
    except SimulatorError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write the state file {state_file}: {exc.strerror or exc}")
    out.print(f"stopped: {counters.line()}")
    if counters.errors:
        fail(f"{counters.errors} error(s); first: {counters.first_error}")


async def _demo_provisioning_key(settings: CloudSettings, devices: int) -> str:
    """A provisioning key for the demo devices, made through the service layer (valid one hour)."""
    import datetime as dt

    from iotistic.cloud.services import audit, provisioning
    from iotistic.core.db import make_engine, make_sessionmaker, utcnow

    engine = make_engine(settings.sqlalchemy_url)
    try:
        async with make_sessionmaker(engine)() as session:
            key, secret = await provisioning.create_key(
                session, fleet=None, max_devices=devices, expires_at=utcnow() + dt.timedelta(hours=1),
                description="iotistic up --demo: simulated devices", created_by="iotistic up --demo")
            audit.record(session, actor="iotistic up --demo", action="provisioning_key.created",
                         target_type="provisioning_key", target_id=key.id, details={"maxDevices": devices})
            await session.commit()
            return secret
    finally:
        await engine.dispose()


async def _run_demo(settings: CloudSettings, server: Any, api_url: str, devices: int, stop: asyncio.Event) -> None:
    """`up --demo`: once the API answers, register `devices` simulated devices through it (reusing those of the
    last run, kept in the data dir) and publish their readings until `stop` is set."""
    from iotistic.simulator.provision import ProvisioningError, provision_devices
    from iotistic.simulator.run import SimulatorError, run_simulation

    while not server.started:
        if stop.is_set():
            return
        await asyncio.sleep(0.05)
    try:
        # The state file sits beside the database: its devices stay valid whatever port the API listens on.
        made = await provision_devices(api_url, devices, lambda: _demo_provisioning_key(settings, devices),
                                       state_file=settings.data_dir / "demo-devices.json", check_api_url=False)
        ready = asyncio.Event()
        # The broker of this run (the embedded one may listen on another port than when the devices registered).
        task = asyncio.create_task(run_simulation(made, DEMO_INTERVAL_S, stop=stop,
                                                  broker_url=settings.mqtt_broker_url,
                                                  on_connected=lambda _clients: ready.set()))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if ready.is_set():
            out.print(f"  Demo:      {len(made)} simulated BME688 device(s) publishing every {DEMO_INTERVAL_S:g} s "
                      f"on iot/device/<uuid>/sensor/<metric>")
            sys.stdout.flush()
        await task
    except (ProvisioningError, SimulatorError, OSError) as exc:
        err.print(Text.assemble(("warning: ", "bold yellow"), f"demo devices not started: {exc}"))


# The edge agent ---------------------------------------------------------------------------------------------------
# Only the agent's own modules are imported here (never the cloud's): a device has only `iotistic[agent]`.

T = TypeVar("T")


def _agent_settings() -> AgentSettings:
    """The agent's settings from the environment; invalid configuration is one line and exit code 2."""
    try:
        import docker  # noqa: F401
        import httpx  # noqa: F401

        from iotistic.agent.settings import load_agent_settings
    except ImportError as exc:  # pragma: no cover - only without the agent extra
        fail(f"the agent is not installed ({exc.name} missing): pip install 'iotistic[agent]'", EXIT_USAGE)
    from iotistic.core.settings import ConfigError

    try:
        return load_agent_settings()
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


def _control() -> Control:
    from iotistic.agent.control import Control

    return Control(_agent_settings())


def _run_control(coro: Coroutine[Any, Any, T]) -> T:
    """Run one operation; its ControlError is one line and exit code 1."""
    from iotistic.agent.control import ControlError

    try:
        return asyncio.run(coro)
    except ControlError as exc:
        fail(str(exc))


def _print_json(data: Any) -> None:
    import json

    typer.echo(json.dumps(data, indent=2, default=str))


_STATE_STYLE = {"running": "green", "applied": "green", "paused": "yellow", "applying": "yellow",
                "downloading": "yellow", "created": "yellow", "restarting": "red", "exited": "red", "dead": "red",
                "error": "red", "missing": "red"}


def _styled(value: Any) -> Text:
    text = "-" if value is None else str(value)
    return Text(text, style=_STATE_STYLE.get(text, ""))


def _line(label: str, *parts: Any) -> None:
    out.print(Text.assemble((f"{label:<12}", "bold"), *parts))


def _print_agent_status(summary: dict[str, Any]) -> None:
    """`iotistic agent status` for people: the device, the agent, the services, what is pending, the cloud."""
    name = ", ".join(str(v) for v in (summary.get("deviceName"), summary.get("deviceType")) if v)
    _line("Device", summary.get("uuid") or "(no identity yet)", f" ({name})" if name else "")
    if summary.get("running"):
        api = summary.get("deviceApi")
        _line("Agent", ("running", "green"), f" (pid {summary.get('pid')}",
              f", Device API http://{api})" if api else ")")
    else:
        _line("Agent", ("not running", "yellow"), f" (data in {summary.get('dataDir')})")
    if summary.get("apiError"):
        _line("", (str(summary["apiError"]), "red"))
    provisioning = summary.get("provisioning") or {}
    mode = summary.get("mode") or "local"
    endpoint = provisioning.get("cloudEndpoint")
    _line("Mode", mode, f" ({endpoint})" if mode == "cloud" and endpoint else "")
    runtime = summary.get("runtime") or {}
    if runtime.get("error"):
        _line("Runtime", str(runtime.get("runtime", "")), " ", (f"not reachable: {runtime['error']}", "red"))
    elif runtime:
        _line("Runtime", " ".join(str(runtime[k]) for k in ("runtime", "version") if runtime.get(k)))
    versions = f"target v{summary['targetVersion']}" if summary.get("targetVersion") is not None else "no target"
    if summary.get("appliedVersion") is not None:
        versions += f", applied v{summary['appliedVersion']}"
    _line("State", _styled(summary.get("status")), f"  {versions}")
    _print_services(summary.get("apply") or {})
    if summary.get("locks"):
        _line("Locks", ", ".join(summary["locks"]))
    if mode == "cloud" or provisioning.get("registered"):
        _print_cloud(provisioning, summary.get("sync") or {})
    vpn = summary.get("vpn") or {}
    if vpn.get("enabled"):
        _print_vpn(vpn)


def _print_vpn(vpn: dict[str, Any]) -> None:
    """The VPN client: connected with its address, or its state and why."""
    counts = f", {vpn.get('reconnects', 0)} reconnect(s)" if vpn.get("reconnects") else ""
    if vpn.get("connected"):
        _line("VPN", ("connected", "green"), f" {vpn.get('tunnelAddress')} via {vpn.get('server')} since "
              f"{vpn.get('since')}{counts}")
        return
    error = vpn.get("lastError")
    _line("VPN", (str(vpn.get("state")), "yellow"), counts, *((" ", (f"last error: {error}", "red")) if error else ()))


def _print_services(apply: dict[str, Any]) -> None:
    """The services table and what is pending, from an executor status (`ExecutorStatus.to_json()` shape)."""
    from rich.table import Table

    services = apply.get("services") or []
    if services:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("App", "Service", "State", "Target", "Container", "Restarts", "Note"):
            table.add_column(column)
        for s in services:
            note = s.get("error") or ("update lock held" if s.get("locked") else "")
            table.add_row(str(s.get("appId")), str(s.get("serviceName")), _styled(s.get("status")),
                          str(s.get("targetState") or "(removing)"), (s.get("containerId") or "-")[:12],
                          str(s.get("restartCount") or 0), Text(str(note), style="red" if s.get("error") else ""))
        out.print(table)
    else:
        out.print("No services.")
    pending, deferred = apply.get("pending") or [], apply.get("deferred") or []
    if pending or deferred:
        out.print(Text("Pending:", style="bold"))
        for step in pending:
            out.print(f"  {step}")
        for d in deferred:
            out.print(f"  deferred ({d.get('reason')}): {d.get('detail') or d.get('subject')}")
    else:
        out.print(Text("Nothing pending.", style="green" if services else ""))


def _print_cloud(provisioning: dict[str, Any], sync: dict[str, Any]) -> None:
    """Provisioning and the cloud link: last sync, last report, the outbox."""
    if provisioning.get("provisioned"):
        _line("Cloud", ("provisioned", "green"))
    else:
        state = "registered, key exchange pending" if provisioning.get("registered") else "not provisioned yet"
        error = provisioning.get("lastError")
        _line("Cloud", (state, "yellow"), *((" ", (f"last error: {error}", "red")) if error else ()))
    if not sync:
        return
    link = ("online", "green") if sync.get("online") else ("offline", "yellow")
    _line("Last sync", sync.get("lastSyncAt") or "never", "  ", link,
          f"  last report delivered {sync.get('lastReportAt') or 'never'}")
    queued = f"{sync.get('outboxSize', 0)} item(s) queued"
    if sync.get("outboxDropped"):
        queued += f", {sync['outboxDropped']} dropped (queue full)"
    _line("Outbox", queued)
    if sync.get("lastError") and not sync.get("online"):
        _line("", (f"last error: {sync['lastError']} ({sync.get('lastErrorAt')})", "red"))


@agent_app.callback(invoke_without_command=True)
def agent(ctx: typer.Context) -> None:
    """Run the edge agent (with no subcommand) until SIGTERM or Ctrl+C.

    Configured from the environment: CLOUD_API_ENDPOINT, PROVISIONING_KEY, DEVICE_NAME, DEVICE_TYPE,
    APPLICATION_ID, DEVICE_API_PORT (48484), AGENT_DATA_DIR, DOCKER_HOST. Without CLOUD_API_ENDPOINT it runs in
    local mode: the target state comes from the Device API or `iotistic agent apply`.
    """
    if ctx.invoked_subcommand is not None:
        return
    _agent_settings()  # a configuration error is reported here, in the command's style
    # The agent runs for months: it replaces this process (same pid, same environment and output) with
    # `python -m iotistic.agent`, so the command line's own libraries (typer, click, rich; about 6 MB) do not
    # stay in its memory.
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "iotistic.agent"])  # noqa: S606 - our own interpreter


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@agent_app.command("status")
def agent_status(as_json: JsonOption = False) -> None:
    """What runs, what is pending and when the device last synced with the cloud.

    Asks the running agent (through its Device API); with no agent running, reads the agent's store and the
    container engine.
    """
    control = _control()
    summary = _run_control(control.status())
    if as_json:
        _print_json(summary)
    else:
        _print_agent_status(summary)


@agent_app.command("apply")
def agent_apply(
    target_file: Annotated[Path, typer.Argument(
        metavar="TARGET.json", help="The target state, {apps, config} as the cloud sends it (no uuid wrapper); "
                                    "- reads standard input.")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the device runs the target.")] = True,
    wait_seconds: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for it.")] = 300,
    as_json: JsonOption = False,
) -> None:
    """Local mode: make a target state the device's target and apply it.

    With the agent running, the target goes to it (POST /v2/local/target-state with the local API key from the
    agent's store) and the command waits until it is applied. With no agent running, the command saves the target
    (the agent adopts it when it starts, without restarting what already runs) and applies it itself.
    Exit code 1 when the device ends up in error or has not converged in time.
    """
    import json

    from pydantic import ValidationError

    from iotistic.core.schemas.target_state import TargetState
    from iotistic.core.settings import describe_validation_error

    control = _control()
    if control.settings.cloud_api_endpoint:
        fail("CLOUD_API_ENDPOINT is set: this device takes its target from the cloud (apply works in local mode)",
             EXIT_USAGE)
    try:
        text = sys.stdin.read() if str(target_file) == "-" else target_file.read_text()
        target = TargetState.model_validate(json.loads(text))
    except OSError as exc:
        fail(f"cannot read {target_file}: {exc.strerror or exc}", EXIT_USAGE)
    except json.JSONDecodeError as exc:
        fail(f"{target_file} is not JSON: {exc}", EXIT_USAGE)
    except ValidationError as exc:
        fail(f"{target_file} is not a valid target state: {describe_validation_error(exc)}", EXIT_USAGE)

    with err.status("applying the target state...") as spinner:
        def progress(summary: dict[str, Any]) -> None:
            pending = len((summary.get("apply") or {}).get("pending") or [])
            spinner.update(f"applying the target state: {summary.get('status')}, {pending} step(s) pending")

        result = _run_control(control.apply(target, wait=wait, wait_seconds=wait_seconds, progress=progress))
    if as_json:
        _print_json(result)
    else:
        outcome = result.get("result")
        if outcome == "accepted":
            out.print(f"target state accepted by the agent (pid {result.get('pid')}); it is applying it")
        else:
            where = f"by the agent (pid {result.get('pid')})" if result.get("running") else "directly (no agent runs)"
            out.print(Text.assemble(("target version ", ""), (str(result.get("targetVersion")), "bold"),
                                    f" applied {where}: ", _styled(outcome)))
            for failure in result.get("failed") or []:
                err.print(Text(f"  {failure}", style="red"))
            _print_services(result.get("apply") or {})
    if result.get("result") == "applying":
        fail(f"not converged within {wait_seconds:.0f} s; `iotistic agent status` shows what is pending")
    if result.get("result") == "error":
        raise typer.Exit(EXIT_FAILED)


@agent_app.command("deprovision")
def agent_deprovision(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Forget the device's cloud identity: uuid, device API key, MQTT credentials, queued reports and logs.

    The containers keep running their last target and the local API key stays. The device's record stays in the
    cloud (delete it there). The next provisioning (a PROVISIONING_KEY at the next start) makes a new device.
    """
    control = _control()
    if not yes:
        typer.confirm("Forget this device's cloud identity?", abort=True)
    status = _run_control(control.deprovision())
    if as_json:
        _print_json(status)
        return
    out.print("deprovisioned: the cloud identity is forgotten; the containers keep running")
    if control.settings.provisioning_key:
        out.print(Text("PROVISIONING_KEY is still set: the agent's next start provisions this device again, as a "
                       "new device.", style="yellow"))


@agent_app.command("factory-reset")
def agent_factory_reset(
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove every container, network and volume the agent manages, then its identity and data.

    A running agent does it and exits; its next start is a first boot (a new device). Needs --yes.
    """
    if not yes:
        fail("factory-reset removes every managed container and volume and the device's identity: pass --yes",
             EXIT_USAGE)
    control = _control()
    with err.status("removing the workloads and the agent's data..."):
        result = _run_control(control.factory_reset())
    if as_json:
        _print_json(result)
    else:
        out.print(f"factory reset done: workloads, identity and data removed from {control.settings.data_dir}")


# The digital twin -----------------------------------------------------------------------------------------------

def _twin_available() -> None:
    _cloud_imports_available()
    try:
        import ifcopenshell  # noqa: F401
    except ImportError:
        fail("the IFC importer is not installed (ifcopenshell missing): pip install 'iotistic[twin]'", EXIT_USAGE)


async def _twin_import(settings: CloudSettings, path: Path, source: str) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from iotistic.core.db import make_engine, make_sessionmaker
    from iotistic.twin.jobs import import_file

    labels = {"parse": "parsing the IFC file", "snapshot": "building the graph", "apply": "applying it",
              "done": "done"}
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with Progress(TextColumn("{task.description:<22}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                      console=err, transient=True, disable=not err.is_terminal) as progress:
            task = progress.add_task(labels["parse"], total=100)

            def on_progress(phase: str, percent: int) -> None:  # also called from the parsing thread
                progress.update(task, description=labels.get(phase, phase), completed=percent)

            return await import_file(make_sessionmaker(engine), path, source, on_progress)
    finally:
        await engine.dispose()


def _print_import_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    from iotistic.twin.graph import NodeType

    table = Table(title=f"{report['source']} ({report['schema']})", title_justify="left")
    for column in ("type", "in file", "created", "updated", "deleted"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for kind in NodeType:
        numbers = [report[key].get(kind.value, 0) for key in ("counts", "created", "updated", "deleted")]
        if any(numbers):
            table.add_row(kind.value, *(str(n) for n in numbers))
    out.print(table)
    out.print(f"edges: {report['edges']} in file, {report['edgesCreated']} created, {report['edgesDeleted']} deleted")
    for lost in report["lostMappings"]:
        out.print(Text(f"device {lost['device']} lost its place: {lost['globalId']} is gone from the file",
                       style="yellow"))
    warnings = report["warnings"]
    if warnings:
        out.print(Text(f"{len(warnings)} warning(s):", style="yellow"))
        for warning in warnings[:20]:
            out.print(f"  {warning}")
        if len(warnings) > 20:
            out.print(f"  ... and {len(warnings) - 20} more")


@twin_app.command("import")
def twin_import(
    file: Annotated[Path, typer.Argument(help="The IFC file (IFC2X3, IFC4 or IFC4X3; .ifc, STEP physical file).")],
    source: Annotated[str | None, typer.Option(
        "--source", help="The import's name in the graph (default: the file's name); importing again under the "
                         "same name updates what it made.")] = None,
) -> None:
    """Import an IFC file into the building graph (in one transaction: a bad file changes nothing), then print what
    changed. Works directly on the database (DATABASE_URL etc.)."""
    _twin_available()
    settings = _load_settings()
    _prepare_storage(settings)
    _require_migrated(settings)
    from iotistic.twin.ifc_import import IfcError
    from iotistic.twin.planning import SnapshotError

    try:
        report = asyncio.run(_twin_import(settings, file, source or file.name))
    except (IfcError, SnapshotError) as exc:
        fail(f"{file}: {exc}")
    except _db_errors() as exc:
        fail(f"importing into {_display_url(settings.sqlalchemy_url)} failed: {_describe_db_error(exc)}")
    _print_import_report(report)


async def _twin_tree(settings: CloudSettings, ref: str | None, depth: int) -> list[Any]:
    from iotistic.core.db import make_engine, make_sessionmaker
    from iotistic.twin.graph import NodeType
    from iotistic.twin.store import NotFound, SqlGraphStore

    engine = make_engine(settings.sqlalchemy_url)
    try:
        async with make_sessionmaker(engine)() as session:
            store = SqlGraphStore(session)
            if ref is None:
                roots = await store.search(kinds=[NodeType.project], limit=1000)
                roots = roots or await store.search(kinds=[NodeType.site], limit=1000)
            else:
                try:
                    roots = [await store.get_node(int(ref) if ref.isdigit() else ref)]
                except NotFound:
                    roots = [n for n in await store.search(ref, limit=1000) if n.name.lower() == ref.lower()]
                if not roots:
                    fail(f"no node with the id, GlobalId or name {ref!r}")
                if len(roots) > 1:
                    fail(f"{len(roots)} nodes are named {ref!r}: give an id ({', '.join(str(n.id) for n in roots)})")
            return [(await store.subtree(root.id, depth))[0] for root in roots]
    finally:
        await engine.dispose()


def _node_label(node: Any) -> Text:
    if node.kind == "Device":
        return Text.assemble(("device ", "bold green"), (node.name, "green"), (f"  {node.device_uuid}", "dim"))
    label = Text.assemble((f"{node.kind} ", "bold"), node.name or "(unnamed)")
    if node.kind == "Element" and node.ifc_class:
        label.append(f" {node.ifc_class}", style="cyan")
    label.append(f"  #{node.id}" + (f" {node.global_id}" if node.global_id else ""), style="dim")
    return label


@twin_app.command("show")
def twin_show(
    node: Annotated[str | None, typer.Argument(
        help="A node's id, GlobalId or exact name; default: every project (or site).")] = None,
    depth: Annotated[int, typer.Option("--depth", min=1, max=64, help="How many levels to show.")] = 8,
) -> None:
    """Print the building graph under a node as a tree, with the devices mapped into it."""
    _cloud_imports_available()
    from rich.tree import Tree

    settings = _load_settings()
    _prepare_storage(settings)
    _require_migrated(settings)
    try:
        subtrees = asyncio.run(_twin_tree(settings, node, depth))
    except _db_errors() as exc:
        fail(f"database {_display_url(settings.sqlalchemy_url)} unreachable: {_describe_db_error(exc)}")
    if not subtrees:
        out.print("the graph is empty: import an IFC file with `iotistic twin import FILE.ifc`")
        return
    for entries in subtrees:
        branches: dict[int, Tree] = {}
        root = None
        for entry in entries:
            label = _node_label(entry.node)
            if entry.via == "GROUPS":
                label = Text.assemble(("grouped: ", "dim"), label)
            parent = branches.get(entry.parent_id) if entry.parent_id is not None else None
            if parent is None:
                root = branches[entry.node.id] = Tree(label)
            else:
                branches[entry.node.id] = parent.add(label)
        if root is not None:
            out.print(root)


# VPN: PKI, device certificates, the OpenVPN server's configuration, the certificate manager ------------------------

vpn_app = typer.Typer(help="The VPN: PKI and device certificates, the OpenVPN server's configuration, the "
                           "certificate manager API. Configured by VPN_* variables (VPN_PKI_DIR, "
                           "VPN_KEY_PASSPHRASE, VPN_SERVER_HOST, ...).", no_args_is_help=True)
app.add_typer(vpn_app, name="vpn")


def _vpn_service() -> Any:
    """The certificate manager's service from the environment; bad configuration is one line and exit 2."""
    from iotistic.core.settings import ConfigError
    from iotistic.vpn.service import VpnService
    from iotistic.vpn.settings import load_vpn_settings

    try:
        return VpnService(load_vpn_settings())
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


def _vpn_call(action: Any) -> Any:
    """Run a PKI operation; its refusal (unknown device, bad id, no PKI, wrong passphrase) is one line."""
    from iotistic.core.settings import ConfigError
    from iotistic.vpn.addressing import AddressSpaceExhausted
    from iotistic.vpn.names import InvalidName
    from iotistic.vpn.pki import PkiError

    try:
        return action()
    except (ConfigError, InvalidName) as exc:
        fail(str(exc), EXIT_USAGE)
    except (PkiError, ValueError, AddressSpaceExhausted) as exc:
        fail(str(exc))


def _write_private_text(path: Path, text: str) -> None:
    from iotistic.vpn.store import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode(), 0o600)


def _print_certificate(view: Any) -> None:
    record = view.record
    out.print(Text.assemble((f"{record.common_name} ", "bold"), (view.state.value, "green" if
                                                                    view.state.value == "valid" else "red")))
    out.print(f"  address:   {record.address}")
    out.print(f"  serial:    {record.serial}")
    out.print(f"  valid:     {record.not_before:%Y-%m-%d} .. {record.not_after:%Y-%m-%d}")
    if record.revoked_at:
        out.print(f"  revoked:   {record.revoked_at:%Y-%m-%d %H:%M:%S} ({record.reason})")


@vpn_app.command("init-pki")
def vpn_init_pki(
    alt_name: Annotated[list[str] | None, typer.Option(
        "--alt-name", help="A DNS name or IP address for the server certificate (repeatable); default: "
                           "VPN_SERVER_HOST when set.")] = None,
) -> None:
    """Create the PKI in VPN_PKI_DIR: CA, server certificate, tls-crypt key, empty CRL (keys encrypted with
    VPN_KEY_PASSPHRASE). Refuses to overwrite an existing one."""
    service = _vpn_service()
    names = tuple(alt_name or ([service.settings.server_host] if service.settings.server_host else []))
    _vpn_call(lambda: service.pki.initialise(names))
    out.print(Text.assemble(("PKI created in ", "bold"), str(service.settings.pki_dir)))
    out.print(f"  CA:      {service.pki.paths.ca_cert}")
    out.print(f"  server:  {service.pki.paths.server_cert} (CN {service.pki.server_name()})")
    out.print(f"  CRL:     {service.pki.paths.crl}")
    out.print("Next: `iotistic vpn render-server-config` for OpenVPN, `iotistic vpn generate-client` per device.")


@vpn_app.command("generate-client")
def vpn_generate_client(
    device: Annotated[str, typer.Argument(help="Device id (letters, digits, '_', '-').")],
    customer: Annotated[str, typer.Argument(help="Customer id (letters, digits, '_').")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write the .ovpn (mode 0600); default ./<DEVICE>.ovpn.")] = None,
) -> None:
    """Issue a device certificate with a fixed address in its customer's block and write the device's complete
    .ovpn (it holds the device's private key)."""
    service = _vpn_service()
    issued = _vpn_call(lambda: service.issue(device, customer))
    path = output or Path(f"{device}.ovpn")
    _write_private_text(path, issued.ovpn)
    _print_certificate(issued.certificate)
    out.print(f"  config:    {path} (mode 0600; it holds the private key)")


@vpn_app.command("renew-client")
def vpn_renew_client(
    device: Annotated[str, typer.Argument(help="Device id.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write the new .ovpn; default ./<DEVICE>.ovpn.")] = None,
) -> None:
    """A new key and certificate for the device, same address; the previous certificate is revoked."""
    service = _vpn_service()
    issued = _vpn_call(lambda: service.renew(device))
    path = output or Path(f"{device}.ovpn")
    _write_private_text(path, issued.ovpn)
    _print_certificate(issued.certificate)
    out.print(f"  config:    {path} (mode 0600)")


@vpn_app.command("revoke-client")
def vpn_revoke_client(
    device: Annotated[str, typer.Argument(help="Device id.")],
    reason: Annotated[str, typer.Option(
        "--reason", help="unspecified, key_compromise, cessation_of_operation or affiliation_changed.")
    ] = "unspecified",
) -> None:
    """Revoke the device's certificate: the CRL lists it and its fixed address is released. A running OpenVPN
    server refuses it from the next handshake (no restart needed)."""
    service = _vpn_service()
    revocation = _vpn_call(lambda: service.revoke(device, reason))
    _print_certificate(revocation.certificate)
    if revocation.sessions_ended:
        out.print(f"  ended its live session ({revocation.sessions_ended}) through the management interface")


@vpn_app.command("list")
def vpn_list(
    customer: Annotated[str | None, typer.Option("--customer", help="Only this customer's devices.")] = None,
) -> None:
    """The certificates issued, newest last."""
    from rich.table import Table

    service = _vpn_service()
    views = _vpn_call(lambda: service.list(customer))
    table = Table("device", "customer", "address", "status", "not after", "serial")
    for view in views:
        r = view.record
        table.add_row(r.device_id, r.customer_id, r.address, view.state.value, f"{r.not_after:%Y-%m-%d}", r.serial)
    out.print(table)


@vpn_app.command("render-server-config")
def vpn_render_server_config(
    output: Annotated[Path, typer.Option("--output", "-o", help="The OpenVPN server config file to write.")
                      ] = Path("server.conf"),
    askpass: Annotated[Path | None, typer.Option(
        "--askpass", help="File OpenVPN reads the server key's passphrase from (e.g. a mounted secret); without "
                          "it OpenVPN asks on its console.")] = None,
    local: Annotated[str | None, typer.Option("--local", help="Listen on this address only.")] = None,
    user: Annotated[str, typer.Option("--user", help="User OpenVPN drops to after start ('' keeps root).")
                    ] = "nobody",
    group: Annotated[str, typer.Option("--group", help="Group OpenVPN drops to ('' keeps root's).")] = "nogroup",
) -> None:
    """Write the OpenVPN server configuration for this PKI: UDP VPN_SERVER_PORT, subnet topology on
    VPN_SUBNET/VPN_NETMASK, fixed device addresses (client-config-dir), crl-verify, AES-256-GCM, tls-crypt,
    status to VPN_STATUS_FILE, log to VPN_LOG_FILE, management socket VPN_MANAGEMENT_SOCKET when set."""
    from iotistic.vpn.server_config import ServerOptions, render_server_config

    service = _vpn_service()
    settings = service.settings
    options = ServerOptions(plan=service.pki.plan, port=settings.server_port, local=local, askpass=askpass,
                            status_file=settings.status_file, log_file=settings.log_file,
                            management_socket=settings.management_socket, user=user or None, group=group or None,
                            redirect_gateway=settings.redirect_gateway)
    text = _vpn_call(lambda: render_server_config(options, service.pki.paths.server_files()))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    out.print(f"wrote {output}: subnet {service.pki.plan.network}, server {service.pki.plan.server_address}, "
              f"customer blocks of {service.pki.plan.block_size}")


@vpn_app.command("serve")
def vpn_serve(
    host: HostOption = "0.0.0.0",  # noqa: S104 - devices' platform services reach the API over the network
    port: PortOption = 8080,
) -> None:
    """Run the certificate manager API: issue, renew, revoke, list certificates; CA and CRL downloads;
    connected devices and /metrics from the OpenVPN server's status file and log."""
    _cloud_imports_available()
    import logging

    import uvicorn

    from iotistic.core.settings import ConfigError
    from iotistic.vpn.app import create_app

    service = _vpn_service()
    logging.basicConfig(level=service.settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    _vpn_call(service.check_ready)
    try:
        application = create_app(service.settings, service)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    out.print(Text.assemble(("Iotistic VPN certificate manager ", "bold"), (f"http://{host}:{port}", "bold cyan")))
    uvicorn.Server(uvicorn.Config(application, host=host, port=port, log_config=None)).run()


# Billing --------------------------------------------------------------------------------------------------------

billing_app = typer.Typer(help="The billing service: customers, trials, licences, Stripe, and the deployment of "
                               "each customer's instance to Kubernetes.", no_args_is_help=True)
app.add_typer(billing_app, name="billing")


def _billing_settings(*, require_key: bool = False) -> BillingSettings:
    _cloud_imports_available()
    from iotistic.billing.settings import load_billing_settings
    from iotistic.core.settings import ConfigError

    try:
        return load_billing_settings(require_key=require_key)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


def _billing_storage(settings: BillingSettings) -> None:
    from sqlalchemy.engine import make_url

    if settings.is_sqlite:
        database = make_url(settings.sqlalchemy_url).database
        try:
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            fail(f"cannot create the billing data directory: {exc.strerror or exc}", EXIT_USAGE)


def _billing_require_migrated(settings: BillingSettings) -> None:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from iotistic.billing.migrate import alembic_config
    from iotistic.core.db import make_engine

    async def revisions() -> set[str]:
        engine = make_engine(settings.sqlalchemy_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda c: set(MigrationContext.configure(c).get_current_heads()))
        finally:
            await engine.dispose()

    heads = set(ScriptDirectory.from_config(alembic_config(settings.sqlalchemy_url)).get_heads())
    try:
        current = asyncio.run(revisions())
    except _db_errors() as exc:
        fail(f"billing database {_display_url(settings.sqlalchemy_url)} unreachable: {_describe_db_error(exc)}")
    if current != heads:
        where = f"at revision {', '.join(sorted(current))}" if current else "not migrated"
        fail(f"the billing database is {where} but this version needs {', '.join(sorted(heads))}: "
             f"run `iotistic billing migrate` first")


def _billing_deployer(settings: BillingSettings) -> Deployer:
    """The Kubernetes/Helm deployer, configured from the same environment (KUBECONFIG, HELM_BIN, ...)."""
    from iotistic.billing.deploy.deployer import KubernetesDeployer

    try:
        return KubernetesDeployer.from_settings(settings)
    except Exception as exc:  # e.g. no kubeconfig: say so in one line
        fail(f"cannot set up the Kubernetes deployer: {' '.join(str(exc).split()) or type(exc).__name__}",
             EXIT_USAGE)


@billing_app.command("migrate")
def billing_migrate(
    revision: Annotated[str, typer.Option("--revision", help="Target Alembic revision.")] = "head",
) -> None:
    """Apply the billing database's migrations (BILLING_DATABASE_URL; to head by default)."""
    settings = _billing_settings()
    _billing_storage(settings)
    from iotistic.billing.migrate import upgrade

    try:
        upgrade(settings.sqlalchemy_url, revision)
    except _db_errors() as exc:
        fail(f"migrating {_display_url(settings.sqlalchemy_url)} failed: {_describe_db_error(exc)}")
    out.print(f"billing database {_display_url(settings.sqlalchemy_url)} migrated to {revision}")


@billing_app.command("keygen")
def billing_keygen(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for license-private.pem and license-public.pem.")],
    bits: Annotated[int, typer.Option("--bits", min=2048, max=8192, help="RSA key size.")] = 2048,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing private key.")] = False,
) -> None:
    """Create the licence signing key pair (private: BILLING_PRIVATE_KEY_FILE; public: for the instances)."""
    private_path, public_path = _write_licence_keys(out_dir, bits, force)
    err.print(f"private key: {private_path} (mode 0600; BILLING_PRIVATE_KEY_FILE={private_path})")
    err.print(f"public key:  {public_path} (also served at GET /api/license/public-key)")


@billing_app.command("serve")
def billing_serve(
    host: HostOption = "0.0.0.0",  # noqa: S104 - the billing API is meant to be reachable in production
    port: PortOption = 3100,
    worker: Annotated[bool, typer.Option("--worker/--no-worker",
                                         help="Run the deployment worker inside the service.")] = True,
) -> None:
    """Run the billing API on port 3100, with the deployment worker inside unless --no-worker.

    Configured from the environment; the database must be migrated first (`iotistic billing migrate`).
    """
    settings = _billing_settings(require_key=True)
    _billing_storage(settings)
    _billing_require_migrated(settings)  # before logging is set up: Alembic's INFO lines are noise here
    from iotistic.cloud.observability import configure_logging

    configure_logging(settings.log_level)
    import uvicorn

    from iotistic.billing.app import create_app
    from iotistic.core.settings import ConfigError

    deployer = _billing_deployer(settings) if worker else None
    try:
        application = create_app(settings, deployer=deployer)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except OSError as exc:  # e.g. the session secret file under an unwritable data dir
        fail(f"cannot start: {exc}", EXIT_USAGE)
    out.print(Text.assemble(("Iotistic billing ", "bold"), (f"http://{_browse_host(host)}:{port}", "bold cyan"),
                            f" (deployment worker {'inside' if worker else 'not running'})"))
    sys.stdout.flush()
    uvicorn.Server(uvicorn.Config(application, host=host, port=port, log_config=None, proxy_headers=True,
                                  server_header=False)).run()


@billing_app.command("worker")
def billing_worker() -> None:
    """Run a deployment worker alone until SIGTERM or Ctrl+C (any number may share a PostgreSQL database)."""
    settings = _billing_settings(require_key=True)
    _billing_storage(settings)
    _billing_require_migrated(settings)  # before logging is set up: Alembic's INFO lines are noise here
    from iotistic.cloud.observability import configure_logging

    configure_logging(settings.log_level)
    deployer = _billing_deployer(settings)

    async def run() -> None:
        import signal

        from iotistic.billing.db import billing_sessionmaker
        from iotistic.billing.worker import run_forever
        from iotistic.core.db import make_engine

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        engine = make_engine(settings.sqlalchemy_url)
        try:
            await run_forever(billing_sessionmaker(engine, settings), deployer, stop)
        finally:
            await engine.dispose()

    out.print("Iotistic billing deployment worker: press Ctrl+C to stop.")
    sys.stdout.flush()
    asyncio.run(run())


if __name__ == "__main__":
    app()
