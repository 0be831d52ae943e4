"""Find connector classes by type name and build them from a ``ConnectorSpec``.

Types come from the ``promoflow.connectors`` entry point group, so a third party
adds a channel by publishing a package with an entry point; the shipped types
are also listed here (``BUILTIN``) so that a source checkout that was never
``pip install``-ed still finds them. An entry point of the same name wins.
Nothing is imported until a type is asked for.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import requests

from engine.definitions.catalog import CONNECTOR_TYPES, ConnectorType
from engine.definitions.specs import ConnectorSpec
from engine.ports import Clock, ConfigurationError, Connector, ConnectorFactory

GROUP = "promoflow.connectors"

#: The shipped types, ``name: "module:attribute"`` (the same as setup.cfg's entry points).
BUILTIN: Mapping[str, str] = {
    "log": "connectors.log:LogConnector",
    "memory": "connectors.memory:MemoryConnector",
    "sandbox": "connectors.sandbox:SandboxConnector",
    "smtp": "connectors.smtp:SmtpConnector",
    "aliyun_sms": "connectors.aliyun_sms:AliyunSmsConnector",
    "tencent_sms": "connectors.tencent_sms:TencentSmsConnector",
    "twilio": "connectors.twilio:TwilioConnector",
    "wecom_app": "connectors.wecom:WecomAppConnector",
    "wecom_robot": "connectors.wecom:WecomRobotConnector",
    "wecom_external": "connectors.wecom:WecomExternalConnector",
    "webhook": "connectors.webhook:WebhookConnector",
    "wecom_callback": "connectors.wecom_callback:WecomCallbackConnector",
    "survey_webhook": "connectors.survey_webhook:SurveyWebhookConnector",
    "survey_pull": "connectors.survey_pull:SurveyPullConnector",
}


class UnknownConnectorType(ConfigurationError, LookupError):
    """No connector type of that name is installed."""


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def _targets() -> dict[str, str | EntryPoint]:
    found: dict[str, str | EntryPoint] = dict(BUILTIN)
    found.update(_entry_points())
    return found


def resolve_type(name: str) -> type[Connector]:
    """The connector class registered as ``name``.

    Raises:
        UnknownConnectorType: no such type ("… did you mean …" when close).
        ConfigurationError: the plug-in failed to import.
    """
    targets = _targets()
    target = targets.get(name)
    if target is None:
        close = difflib.get_close_matches(name, sorted(targets), n=1, cutoff=0.6)
        hint = f"; did you mean `{close[0]}`?" if close else f" (known: {', '.join(sorted(targets))})"
        raise UnknownConnectorType(f"No such connector type `{name}`{hint}", code="unknown_type")
    try:
        if isinstance(target, EntryPoint):
            cls = target.load()
        else:
            module, _, attr = target.partition(":")
            cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"connector type `{name}` could not be loaded: {exc}",
                                 code="plugin_import") from exc
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ConfigurationError(f"connector type `{name}` is not a Connector class", code="plugin_type")
    return cls


def connector_types() -> dict[str, ConnectorType]:
    """Every installed type with its channel and required secrets/settings, for
    the definition loader (``load_definitions(..., connector_types=...)``).

    Shipped types are described from the catalog without importing them;
    third-party types are imported to read their class attributes (one that fails
    to import is left out: the loader then reports it as unknown).
    """
    types: dict[str, ConnectorType] = {}
    for name in _targets():
        if name in CONNECTOR_TYPES:
            types[name] = CONNECTOR_TYPES[name]
            continue
        try:
            cls = resolve_type(name)
        except ConfigurationError:
            continue
        types[name] = ConnectorType(cls.channel, tuple(cls.required_secrets), tuple(cls.required_settings))
    return types


def read_secrets(spec: ConnectorSpec, env: Mapping[str, str]) -> dict[str, str]:
    """The spec's secrets read from ``env``.

    Raises:
        ConfigurationError: a variable is unset or empty; the message names the
            variable and the secret, never a value.
    """
    values: dict[str, str] = {}
    missing = []
    for name, variable in spec.secrets.items():
        value = env.get(variable)
        if not value:
            missing.append(f"{variable} (secret `{name}`)")
        else:
            values[name] = value
    if missing:
        raise ConfigurationError(f"connector `{spec.id}`: environment variable {', '.join(missing)} is not set",
                                 code="missing_secret")
    return values


def load_connector(spec: ConnectorSpec, *, env: Mapping[str, str], session: requests.Session | None = None,
                   clock: Clock | None = None) -> Connector:
    """Build the connector ``spec`` describes, reading its secrets from ``env``.

    ``session`` is shared by HTTP connectors (one per process is enough);
    ``clock`` returns aware UTC datetimes (default: the wall clock).

    Raises:
        UnknownConnectorType: ``spec.type`` is not installed (with "did you mean").
        ConfigurationError: a secret's variable is unset, a required secret is
            not declared in the spec, or a setting is missing.
    """
    cls = resolve_type(spec.type)
    undeclared = [name for name in cls.required_secrets if name not in spec.secrets]
    if undeclared:
        raise ConfigurationError(f"connector `{spec.id}`: secret {', '.join(f'`{n}`' for n in undeclared)} "
                                 f"must be declared as {{env: VARIABLE}}", code="missing_secret")
    kwargs: dict[str, Any] = {"session": session, "clock": clock}
    factory: ConnectorFactory = cls
    return factory(spec, read_secrets(spec, env), **kwargs)


__all__ = ["BUILTIN", "GROUP", "UnknownConnectorType", "connector_types", "load_connector",
           "read_secrets", "resolve_type"]
