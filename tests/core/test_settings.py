"""Configuration from the environment (iotistic.core.settings): one clear line for anything wrong."""

from __future__ import annotations

import os
import stat

import pytest
from sqlalchemy.engine import make_url

from iotistic.core.licensing import generate_keypair
from iotistic.core.settings import CloudSettings, ConfigError, load_cloud_settings

ENV_NAMES = (
    "DATABASE_URL", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD", "IOTISTIC_DATA_DIR", "JWT_SECRET",
    "LICENSE_PUBLIC_KEY", "IOTISTIC_LICENSE_KEY", "MQTT_BROKER_URL", "REDIS_URL", "METRICS_TOKEN", "LOG_LEVEL",
    "ACCESS_TOKEN_MINUTES", "REFRESH_TOKEN_DAYS", "LOGIN_MAX_FAILURES", "LOGIN_LOCKOUT_SECONDS", "PUBLIC_URL",
    "DEVICE_OFFLINE_AFTER_SECONDS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """Each test sees only the variables it sets, and never writes into the working directory."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IOTISTIC_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def public_pem() -> str:
    return generate_keypair()[1]


def assert_one_line(exc: ConfigError, *words: str) -> str:
    message = str(exc)
    assert message.strip() and "\n" not in message, repr(message)
    for word in words:
        assert word.lower() in message.lower(), (word, message)
    return message


# DATABASE_URL -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "expected"), [
    ("postgres://u:p@db.example:5432/iot", "postgresql+asyncpg://u:p@db.example:5432/iot"),
    ("postgresql://u:p@db.example/iot", "postgresql+asyncpg://u:p@db.example/iot"),
    ("postgresql+asyncpg://u:p@db.example/iot", "postgresql+asyncpg://u:p@db.example/iot"),
    ("sqlite:///relative/iot.db", "sqlite+aiosqlite:///relative/iot.db"),
    ("sqlite:////abs/path/iot.db", "sqlite+aiosqlite:////abs/path/iot.db"),
    ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
])
def test_database_url_is_normalised_to_async_drivers(given, expected):
    settings = load_cloud_settings(DATABASE_URL=given)
    assert settings.database_url == expected
    assert settings.sqlalchemy_url == expected
    assert settings.is_sqlite == expected.startswith("sqlite")


def test_database_url_read_from_environment(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://app:pw@pg.internal:5433/cloud")
    settings = load_cloud_settings()
    assert settings.sqlalchemy_url == "postgresql+asyncpg://app:pw@pg.internal:5433/cloud"
    assert not settings.is_sqlite


@pytest.mark.parametrize("url", ["mysql://u:p@host/db", "mongodb://host/db", "not a url", "http://x/y"])
def test_unsupported_database_is_one_clear_line(url):
    with pytest.raises(ConfigError) as info:
        load_cloud_settings(DATABASE_URL=url)
    assert_one_line(info.value, "DATABASE_URL", "postgresql", "sqlite")


def test_mysql_from_environment_is_config_error(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://root@localhost/iot")
    with pytest.raises(ConfigError) as info:
        load_cloud_settings()
    assert_one_line(info.value, "DATABASE_URL")


def test_default_database_is_sqlite_under_data_dir(tmp_path):
    settings = load_cloud_settings(IOTISTIC_DATA_DIR=str(tmp_path / "d"))
    assert settings.is_sqlite
    url = make_url(settings.sqlalchemy_url)
    assert url.drivername == "sqlite+aiosqlite"
    assert url.database == str((tmp_path / "d" / "iotistic.db").resolve())


# DB_HOST & co ---------------------------------------------------------------------------------------------------

def test_db_host_and_friends_build_a_postgres_url(monkeypatch):
    password = "p@ss:w/rd#%?& é"
    monkeypatch.setenv("DB_HOST", "db.example.org")
    monkeypatch.setenv("DB_PORT", "6543")
    monkeypatch.setenv("DB_NAME", "iot_cloud")
    monkeypatch.setenv("DB_USER", "svc@iot")
    monkeypatch.setenv("DB_PASSWORD", password)
    settings = load_cloud_settings()
    raw = settings.sqlalchemy_url
    assert raw.startswith("postgresql+asyncpg://")
    assert password not in raw  # quoted, not pasted
    url = make_url(raw)
    assert url.drivername == "postgresql+asyncpg"
    assert url.username == "svc@iot"
    assert url.password == password
    assert url.host == "db.example.org"
    assert url.port == 6543
    assert url.database == "iot_cloud"
    assert not settings.is_sqlite


def test_db_host_defaults():
    url = make_url(load_cloud_settings(DB_HOST="pg").sqlalchemy_url)
    assert (url.host, url.port, url.database, url.username, url.password) == ("pg", 5432, "iotistic", "iotistic",
                                                                              None)


def test_both_database_url_and_db_host_is_config_error(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@a/b")
    monkeypatch.setenv("DB_HOST", "other-host")
    with pytest.raises(ConfigError) as info:
        load_cloud_settings()
    assert_one_line(info.value, "DATABASE_URL", "DB_HOST")


@pytest.mark.parametrize("port", ["abc", "0", "70000"])
def test_bad_db_port_is_config_error(monkeypatch, port):
    monkeypatch.setenv("DB_HOST", "pg")
    monkeypatch.setenv("DB_PORT", port)
    with pytest.raises(ConfigError) as info:
        load_cloud_settings()
    assert_one_line(info.value, "DB_PORT")


# LICENSE_PUBLIC_KEY -------------------------------------------------------------------------------------------

def test_license_public_key_as_pem_text(public_pem):
    settings = load_cloud_settings(LICENSE_PUBLIC_KEY=public_pem)
    assert settings.license_public_key_pem() == public_pem


def test_license_public_key_pem_with_escaped_newlines(monkeypatch, public_pem):
    """Container environments often carry PEM on one line with literal \\n."""
    monkeypatch.setenv("LICENSE_PUBLIC_KEY", public_pem.replace("\n", "\\n"))
    assert load_cloud_settings().license_public_key_pem() == public_pem


def test_license_public_key_as_file_path(tmp_path, public_pem):
    path = tmp_path / "license-public.pem"
    path.write_text(public_pem)
    settings = load_cloud_settings(LICENSE_PUBLIC_KEY=str(path))
    assert settings.license_public_key_pem() == public_pem


def test_license_public_key_nonexistent_path_is_config_error(tmp_path):
    missing = tmp_path / "nope" / "license-public.pem"
    with pytest.raises(ConfigError) as info:
        load_cloud_settings(LICENSE_PUBLIC_KEY=str(missing))
    assert_one_line(info.value, "LICENSE_PUBLIC_KEY", str(missing))


def test_license_public_key_directory_is_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_cloud_settings(LICENSE_PUBLIC_KEY=str(tmp_path))
    assert_one_line(info.value, "LICENSE_PUBLIC_KEY")


@pytest.mark.parametrize("pem", [
    "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
    "-----BEGIN PUBLIC KEY-----garbage",
])
def test_license_public_key_unparseable_pem_is_config_error(pem):
    """PEM text that is not a key is a misconfiguration: it must fail at start, not on the first licence check."""
    with pytest.raises(ConfigError) as info:
        load_cloud_settings(LICENSE_PUBLIC_KEY=pem)
    assert_one_line(info.value, "LICENSE_PUBLIC_KEY")


def test_private_key_given_as_public_key_is_config_error():
    private_pem, _ = generate_keypair()
    with pytest.raises(ConfigError) as info:
        load_cloud_settings(LICENSE_PUBLIC_KEY=private_pem)
    message = assert_one_line(info.value, "LICENSE_PUBLIC_KEY")
    assert "PRIVATE" not in message and private_pem.splitlines()[1] not in message  # never echo a secret


def test_license_public_key_file_with_garbage_is_config_error(tmp_path):
    path = tmp_path / "key.pem"
    path.write_text("this is not a key\n")
    with pytest.raises(ConfigError) as info:
        load_cloud_settings(LICENSE_PUBLIC_KEY=str(path))
    assert_one_line(info.value, "LICENSE_PUBLIC_KEY")


def test_no_license_public_key_is_allowed():
    assert load_cloud_settings().license_public_key_pem() is None


# Other values ---------------------------------------------------------------------------------------------------

def test_short_jwt_secret_is_config_error():
    with pytest.raises(ConfigError) as info:
        load_cloud_settings(JWT_SECRET="too-short")
    assert_one_line(info.value, "JWT_SECRET")


def test_log_level_is_normalised_and_checked(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "debug")
    assert load_cloud_settings().log_level == "DEBUG"
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    with pytest.raises(ConfigError) as info:
        load_cloud_settings()
    assert_one_line(info.value, "LOG_LEVEL")


def test_several_problems_are_still_one_line(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://x/y")
    monkeypatch.setenv("LOG_LEVEL", "loud")
    monkeypatch.setenv("DB_PORT", "-1")
    with pytest.raises(ConfigError) as info:
        load_cloud_settings()
    assert_one_line(info.value, "DATABASE_URL", "LOG_LEVEL", "DB_PORT")


def test_environment_values_are_read(monkeypatch):
    monkeypatch.setenv("MQTT_BROKER_URL", "mqtts://broker.example:8883")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("IOTISTIC_LICENSE_KEY", "a.b.c")
    monkeypatch.setenv("LOGIN_MAX_FAILURES", "7")
    settings = load_cloud_settings()
    assert settings.mqtt_broker_url == "mqtts://broker.example:8883"
    assert settings.redis_url == "redis://cache:6379/0"
    assert settings.license_key == "a.b.c"
    assert settings.login_max_failures == 7


# JWT secret ---------------------------------------------------------------------------------------------------

def test_jwt_secret_generated_once_with_mode_0600_and_reused(tmp_path):
    data_dir = tmp_path / "fresh" / "state"
    settings = load_cloud_settings(IOTISTIC_DATA_DIR=str(data_dir))
    secret = settings.resolved_jwt_secret()
    path = data_dir / "jwt-secret"
    assert path.is_file()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(secret) >= 32
    assert path.read_text().strip() == secret
    # The same process asks again, and a restarted process (new settings object) reads the same file.
    assert settings.resolved_jwt_secret() == secret
    again = load_cloud_settings(IOTISTIC_DATA_DIR=str(data_dir))
    assert again.resolved_jwt_secret() == secret
    # A different data dir gets its own, different secret.
    other = load_cloud_settings(IOTISTIC_DATA_DIR=str(tmp_path / "other")).resolved_jwt_secret()
    assert other != secret


def test_configured_jwt_secret_wins_and_writes_nothing(tmp_path):
    data_dir = tmp_path / "d"
    settings = load_cloud_settings(IOTISTIC_DATA_DIR=str(data_dir), JWT_SECRET="s" * 40)
    assert settings.resolved_jwt_secret() == "s" * 40
    assert not (data_dir / "jwt-secret").exists()


def test_settings_class_populates_by_field_name_too(tmp_path):
    settings = CloudSettings(database_url="postgres://a@b/c")
    assert settings.sqlalchemy_url == "postgresql+asyncpg://a@b/c"
