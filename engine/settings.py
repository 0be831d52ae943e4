"""Settings: shipped defaults, then a settings file, then environment variables.

Nothing reads configuration at import time: callers build a :class:`Settings`
with :func:`load_settings` (the CLI and the web app factory do, once) and pass
it on. The embedded default is a SQLite file in an instance folder that is
created on first use.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Mapping

from .definitions.errors import DefinitionError, did_you_mean
from .definitions.source import read_source
from .durations import DurationError, parse_duration
from .library import library_root
from .private_files import private_dir, write_private

ENV_PREFIX = "PROMOFLOW_"
#: What ``promoflow prune`` removes after how long (see engine/storage/retention.py).
DEFAULT_RETENTION = {"events": "180d", "message_bodies": "90d", "attempts": "180d"}
DEFAULTS_FILE = "settings.defaults.yaml"


class SettingsError(ValueError):
    """A settings file or variable is wrong; the message says where and how."""


@dataclass(frozen=True)
class Settings:
    """Everything that differs between installations. Paths are absolute."""

    instance_path: Path
    database_url: str
    secret_key: str
    timezone: str = "Asia/Shanghai"
    locale: str = "zh"
    broker_url: str | None = None
    definitions: tuple[Path, ...] = ()
    log_level: str = "INFO"
    #: The business calendar (a ``calendar`` definition id) for ``on: workdays``;
    #: empty: the only published calendar, if there is exactly one.
    calendar: str = ""
    #: Price of one SMS (CNY), for the cost forecast of ``rules preview``.
    sms_price: float = 0.045
    #: The address customers and staff reach this installation at; links put
    #: in messages (survey, unsubscribe, an approval task) start with it.
    base_url: str = "http://127.0.0.1:8000"
    #: Deliver every sending connector's messages to the built-in sandbox inbox
    #: (``/sandbox``) instead of the providers: the demo, a trial installation.
    connector_sandbox: bool = False
    #: How long a sign-in lasts at most (from the moment of sign-in); the
    #: session cookie ends then even if used all along. Written like ``12h``.
    session_lifetime: timedelta = timedelta(hours=12)
    #: The shortest password a person may choose (the password policy).
    password_min_length: int = 8
    #: Operations (issue 17): how long old rows are kept (``promoflow prune``),
    #: a bearer token for ``/metrics`` from other hosts (empty: loopback only),
    #: and the log line format (``text``, ``json``; empty: text on a terminal, else json).
    retention: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_RETENTION))
    metrics_token: str = ""
    log_format: str = ""
    #: Scale-out (issue 17, with ``broker_url``): Redis for the rate windows
    #: shared by all workers (empty: the broker when it is Redis); customer
    #: ids per entry task; tasks per connector (and journey advance) per
    #: tick; how long the scheduler waits for a tick's tasks; seconds before
    #: Redis hands an unacknowledged task of a dead worker to another; and
    #: how old a dead worker's claim on a message is before it is settled.
    limits_url: str = ""
    fleet_chunk: int = 50_000
    fleet_parts: int = 4
    task_timeout: int = 900
    task_visibility: int = 300
    dispatch_reap_after: timedelta = timedelta(minutes=5)
    #: The broker queue of this installation's tasks (two installations may share a broker).
    task_queue: str = "promoflow"
    settings_file: Path | None = None
    extra: Mapping[str, object] = field(default_factory=dict)

    def with_database(self, url: str) -> "Settings":
        return replace(self, database_url=url)


_KEYS = {f.name for f in fields(Settings)} - {"extra", "settings_file"}


def _read_yaml_settings(path: Path) -> dict:
    docs, errors = read_source(str(path), path.read_text(encoding="utf-8"))
    if errors:
        raise SettingsError("\n".join(str(e) for e in errors))
    if not docs:
        return {}
    data = docs[0].data
    problems = [
        DefinitionError(str(path), *docs[0].positions.locate((key,), at_key=True),
                        f"unknown setting `{key}`{did_you_mean(key, _KEYS)}")
        for key in data if key not in _KEYS
    ]
    if problems:
        raise SettingsError("\n".join(str(p) for p in problems))
    return data


def load_settings(
    environ: Mapping[str, str] | None = None, *, settings_file: str | os.PathLike | None = None,
    overrides: Mapping[str, object] | None = None, cwd: str | os.PathLike | None = None,
) -> Settings:
    """Build settings: shipped defaults < settings file < ``PROMOFLOW_*`` variables < ``overrides``.

    The settings file is ``settings_file``, else ``$PROMOFLOW_SETTINGS_FILE``,
    else ``<instance>/settings.yaml`` when it exists. The instance folder is
    created, and a secret key generated into it, on first use.

    Raises:
        SettingsError: a settings file has an unknown key or bad YAML.
    """
    env = os.environ if environ is None else environ
    base = Path(cwd or os.getcwd())
    values: dict[str, object] = {}
    defaults = library_root() / "config" / DEFAULTS_FILE
    if defaults.is_file():
        values.update(_read_yaml_settings(defaults))
    instance = Path(str((overrides or {}).get("instance_path") or env.get(ENV_PREFIX + "INSTANCE_PATH")
                        or values.get("instance_path") or "instance"))
    instance = instance if instance.is_absolute() else (base / instance)
    file = settings_file or env.get(ENV_PREFIX + "SETTINGS_FILE")
    candidate = Path(file) if file else instance / "settings.yaml"
    if file and not candidate.is_file():
        raise SettingsError(f"{candidate}: settings file not found")
    file_path: Path | None = None
    if candidate.is_file():
        values.update(_read_yaml_settings(candidate))
        file_path = candidate
    for key in _KEYS:
        if ENV_PREFIX + key.upper() in env:
            values[key] = env[ENV_PREFIX + key.upper()]
    values.update(overrides or {})
    instance_path = Path(str(values.pop("instance_path", instance)))
    instance_path = instance_path if instance_path.is_absolute() else (base / instance_path)
    private_dir(instance_path)  # 0700: it holds the database, uploads and keys (issue 16)
    url = str(values.pop("database_url", "") or f"sqlite:///{instance_path / 'promoflow.sqlite'}")
    secret = str(values.pop("secret_key", "") or _instance_secret(instance_path))
    raw_defs = values.pop("definitions", ())
    if isinstance(raw_defs, str):
        raw_defs = [p for p in raw_defs.split(os.pathsep) if p]
    listed = [Path(str(p)) for p in raw_defs] if isinstance(raw_defs, list | tuple) else []
    definitions = tuple((p if p.is_absolute() else base / p) for p in listed)
    if "sms_price" in values:
        try:
            values["sms_price"] = float(values["sms_price"])  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise SettingsError(f"sms_price: `{values['sms_price']}` is not a number") from None
    if "connector_sandbox" in values:
        values["connector_sandbox"] = _flag("connector_sandbox", values["connector_sandbox"])
    if "base_url" in values:
        base_url = str(values["base_url"] or "").strip().rstrip("/")
        if not base_url.startswith(("http://", "https://")) or " " in base_url or len(base_url) <= len("https://"):
            raise SettingsError(f"base_url: `{values['base_url']}` must be an http:// or https:// address, "
                                "e.g. https://promo.example.com")
        values["base_url"] = base_url
    _account_settings(values)
    _fleet_settings(values)
    if "retention" in values:
        values["retention"] = _retention(values["retention"])
    if "log_format" in values and str(values["log_format"] or "") not in ("", "text", "json"):
        raise SettingsError(f"log_format: `{values['log_format']}` must be text or json")
    return Settings(instance_path=instance_path, database_url=url, secret_key=secret,
                    definitions=definitions, settings_file=file_path,
                    **{k: v for k, v in values.items() if k in _KEYS})  # type: ignore[arg-type]  # checked above


def _retention(value: object) -> dict[str, str]:
    """The ``retention`` setting: known tables → durations (``90d``); missing ones keep their default."""
    from .durations import DurationError, parse_duration

    if isinstance(value, str):  # PROMOFLOW_RETENTION="events=180d,attempts=90d"
        value = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
    if not isinstance(value, Mapping):
        raise SettingsError("retention: expected a mapping such as {events: 180d, message_bodies: 90d}")
    merged = dict(DEFAULT_RETENTION)
    for key, text in value.items():
        if key not in DEFAULT_RETENTION:
            raise SettingsError(f"retention: unknown table `{key}`{did_you_mean(str(key), set(DEFAULT_RETENTION))}")
        try:
            parse_duration(str(text).strip())
        except DurationError as exc:
            raise SettingsError(f"retention.{key}: {exc}") from None
        merged[str(key)] = str(text).strip()
    return merged


def _flag(name: str, value: object) -> bool:
    """A yes/no setting from YAML (a bool) or an environment variable (text)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}: `{value}` is not true or false")
def _fleet_settings(values: dict[str, object]) -> None:
    """Parse the scale-out numbers (positive integers) and ``dispatch_reap_after`` (a duration) in place."""
    for key in ("fleet_chunk", "fleet_parts", "task_timeout", "task_visibility"):
        if key in values:
            try:
                number = int(str(values[key]).strip())
            except ValueError:
                raise SettingsError(f"{key}: `{values[key]}` is not a whole number") from None
            if number < 1:
                raise SettingsError(f"{key}: `{values[key]}` must be at least 1")
            values[key] = number
    if "dispatch_reap_after" in values and not isinstance(values["dispatch_reap_after"], timedelta):
        try:
            values["dispatch_reap_after"] = parse_duration(str(values["dispatch_reap_after"]).strip())
        except DurationError as exc:
            raise SettingsError(f"dispatch_reap_after: {exc}") from None


def _account_settings(values: dict[str, object]) -> None:
    """Parse ``session_lifetime`` (a duration, 5m to 31d) and
    ``password_min_length`` (an integer, 8 to 128) in place."""
    if "session_lifetime" in values and not isinstance(values["session_lifetime"], timedelta):
        try:
            lifetime = parse_duration(str(values["session_lifetime"]).strip())
        except DurationError as exc:
            raise SettingsError(f"session_lifetime: {exc}") from None
        if not timedelta(minutes=5) <= lifetime <= timedelta(days=31):
            raise SettingsError(f"session_lifetime: `{values['session_lifetime']}` must be between 5m and 31d")
        values["session_lifetime"] = lifetime
    if "password_min_length" in values:
        raw = values["password_min_length"]
        try:
            length = int(str(raw).strip())
        except ValueError:
            raise SettingsError(f"password_min_length: `{raw}` is not a whole number") from None
        if not 8 <= length <= 128:
            raise SettingsError(f"password_min_length: `{raw}` must be between 8 and 128")
        values["password_min_length"] = length


def _instance_secret(instance: Path) -> str:
    """A per-instance secret, generated once and kept in the instance folder."""
    path = instance / "secret_key"
    if path.is_file():
        return path.read_text().strip()
    key = secrets.token_urlsafe(48)
    write_private(path, key)
    return key
