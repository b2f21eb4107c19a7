"""Typed configuration: one YAML file, ``${ENV}`` secrets, env overrides, errors with line numbers.

Every service validates the whole file's common sections plus its own section with pydantic.
Errors name the field and where its value came from (``clamor.yaml:14`` or an environment
variable), so a typo is found in seconds rather than at the first message.

Precedence, lowest first: model defaults, the YAML file, ``CLAMOR__SECTION__FIELD=value``
environment variables (values parsed as YAML, so ``CLAMOR__TRIAGE__BATCH_SIZE=64`` is an int).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo

from services.shared.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

ENV_PREFIX = "CLAMOR__"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Location = tuple[str | int, ...]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    if value.is_absolute() or base is None:
        return value
    return Path(base) / value


# A path relative to the config file's folder (or the working directory without a file).
RelativePath = Annotated[Path, AfterValidator(_resolve_path)]


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)") from exc
    return value


# An IANA time zone name, checked against the zone database when the config is read.
TimeZoneName = Annotated[str, AfterValidator(_known_zone)]


NATS_SCHEMES = ("nats", "tls")


def split_servers(value: str) -> list[str]:
    """The server URLs of a ``nats.url`` value: one URL, or several separated by commas."""
    return [part.strip() for part in value.split(",")]


def _check_server(server: str) -> None:
    """Raise ValueError, naming ``server``, unless it is a ``nats://host[:port]`` URL."""
    if not server:
        raise ValueError(
            "an empty entry in the server list (a stray comma?); expected nats://host:port,nats://host:port"
        )
    parts = urlsplit(server)
    try:
        parts.port  # noqa: B018 - reading it validates it
    except ValueError:
        valid = False
    else:
        valid = parts.scheme in NATS_SCHEMES and bool(parts.hostname) and parts.path in ("", "/")
    if not valid or parts.query or parts.fragment:
        # A password in the URL stays out of the message (it is printed and logged).
        shown = server.replace(parts.netloc, "***@" + parts.netloc.rsplit("@", 1)[1]) if "@" in parts.netloc else server
        raise ValueError(f"{shown!r} is not a NATS server URL; expected nats://host:port (several: comma-separated)")


def _server_list(value: str) -> str:
    servers = split_servers(value)
    for server in servers:
        _check_server(server)
    return ",".join(servers)


# One NATS server URL or a comma-separated list (the nodes of a cluster), each checked when read.
NatsServers = Annotated[str, AfterValidator(_server_list)]


def redact(server: str) -> str:
    """A server URL fit for a log line: credentials in it are dropped."""
    parts = urlsplit(server)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port is not None else "")


class NatsSettings(Section):
    # The NATS servers a service connects to: one URL, or every node of a cluster, comma-separated,
    # so a client knows them all from the start and fails over when the one it uses goes away.
    url: NatsServers = "nats://127.0.0.1:4222"
    # Replicas for every stream and KV bucket: 1 on a laptop, 3 on a cluster.
    stream_replicas: int = Field(default=1, ge=1, le=5)
    # Days triaged mentions are kept (the TRIAGED stream's max_age): the history trends and counters read.
    history_days: float = Field(default=90.0, gt=0, le=3650)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    # When the nats-server that `clamor up` starts fsyncs: "always" before it acknowledges each write,
    # "interval" every two minutes (nats-server's default). The default is "always": the mention
    # streams are the only copy of a post before triage, and an acknowledged write the disk never saw
    # is lost on power loss. Servers run elsewhere take it from their own config (deploy/k8s nats.conf).
    sync: Literal["always", "interval"] = "always"
    # The HTTP monitoring port (/varz, /jsz: what Prometheus' NATS exporter reads) of the
    # nats-server that `clamor up` starts; null opens none.
    monitor_port: int | None = Field(default=8222, ge=1, le=65535)
    # Optional credentials; use ${ENV} references, never literals.
    user: str = ""
    password: str = ""
    token: str = ""

    @property
    def servers(self) -> list[str]:
        """Every server URL in ``url``, in the order given."""
        return split_servers(self.url)

    @property
    def shown(self) -> str:
        """``url`` for log lines and messages, without credentials."""
        return ",".join(redact(server) for server in self.servers)


class TelemetrySettings(Section):
    """Defaults only: the standard ``OTEL_*`` environment variables win (services/shared/otel_env.py)."""

    # OTLP collector endpoint, e.g. http://otel-collector:4317; empty exports nothing unless
    # OTEL_EXPORTER_OTLP_ENDPOINT (or a per-signal one) is set.
    otlp_endpoint: str = ""
    otlp_protocol: str = Field(default="grpc", pattern="^(grpc|http/protobuf)$")
    # Send log records over OTLP too (OTEL_LOGS_EXPORTER=otlp does the same).
    otlp_logs: bool = False
    # Record metrics at all; off, every part records to a no-op meter (nothing served or exported).
    metrics: bool = True
    # Serve Prometheus /metrics on this port (0 picks a free one; unset serves none).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # deployment.environment.name on every span, metric and log record.
    environment: str = Field(default="development", min_length=1)
    # Spans for StatusService calls (the CLI's and clamor up's polls): off, as they are noise.
    trace_status_calls: bool = False
    # Folder for JSON-lines span files (one per service) that `clamor trace` reads; empty disables.
    span_dir: RelativePath | None = None
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    # "json" for machines (with trace_id), "text" for people.
    log_format: str = Field(default="json", pattern="^(json|text)$")


class GrpcSettings(Section):
    host: str = "127.0.0.1"
    # 0 picks a free port (tests); the bound port is logged.
    port: int = Field(default=0, ge=0, le=65535)
    shutdown_grace_s: float = Field(default=5.0, ge=0)


class CommonConfig(BaseModel):
    """The sections every service reads; a service's file model adds its own section."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    nats: NatsSettings = Field(default_factory=NatsSettings)
    # Validated from {} so relative paths in defaults resolve against the config file's folder.
    telemetry: TelemetrySettings = Field(default_factory=dict, validate_default=True)


ConfigT = TypeVar("ConfigT", bound=BaseModel)


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that records the line of every mapping key and sequence item."""


def _compose_with_lines(text: str, source: str) -> tuple[Any, dict[Location, int]]:
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Location, int] = {}
        if node is not None:
            record_lines(node, (), lines)
        data = loader.construct_document(node) if node is not None else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return data, lines


def record_lines(node: yaml.Node, loc: Location, lines: dict[Location, int]) -> None:
    """The 1-based line of every value under ``node`` by its path; a key's own line beats its value's."""
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*loc, str(key_node.value))
            record_lines(value_node, key, lines)
            lines[key] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            record_lines(item, (*loc, index), lines)


def _interpolate(
    value: Any, loc: Location, *, source: str, lines: dict[Location, int], environ: Mapping[str, str]
) -> Any:
    """Replace ``${NAME}`` and ``${NAME:-default}`` in every string with the environment's value."""
    if isinstance(value, dict):
        return {k: _interpolate(v, (*loc, k), source=source, lines=lines, environ=environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*loc, i), source=source, lines=lines, environ=environ) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = environ.get(name)
        if found is not None:
            return found
        if default is not None:
            return default
        where = _origin(loc, source, lines, {})
        raise ConfigError(f"{_dotted(loc)} ({where}): environment variable {name} is not set")

    return _ENV_REF.sub(replace, value)


def _apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str], origins: dict[Location, str]) -> None:
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        target = data
        for part in path[:-1]:
            child = target.get(part)
            if not isinstance(child, dict):
                child = {}
                target[part] = child
            target = child
        try:
            # Lists and mappings are YAML; scalars stay strings and pydantic converts them to the
            # field's type, so CLAMOR__NATS__PASSWORD=123456 remains a string.
            target[path[-1]] = yaml.safe_load(raw) if raw.lstrip().startswith(("[", "{")) else raw
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment variable {name}: not a valid value: {exc}") from exc
        origins[tuple(path)] = f"environment variable {name}"


def _dotted(loc: Location) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in loc).replace(".[", "[") or "<root>"


def _origin(loc: Location, source: str, lines: dict[Location, int], origins: dict[Location, str]) -> str:
    """The most specific known origin of a field: an env var, or the nearest line in the file."""
    for depth in range(len(loc), -1, -1):
        prefix = loc[:depth]
        if prefix in origins:
            return origins[prefix]
        if prefix in lines:
            return f"{source}:{lines[prefix]}"
    return source


def _data_path(loc: tuple[Any, ...], data: Any) -> Location:
    """The error location as a path into the data: pydantic adds union tags that the file never had."""
    path: list[str | int] = []
    for part in loc:
        if isinstance(data, dict) and isinstance(part, str) and part not in data and part in data.values():
            continue  # a discriminated-union tag, the item's own "kind": "file" in channels[0].file.path
        path.append(part)
        data = (
            data.get(part)
            if isinstance(data, dict)
            else (data[part] if isinstance(data, list) and isinstance(part, int) and part < len(data) else None)
        )
    return tuple(path)


def format_validation_error(
    exc: ValidationError, source: str, lines: dict[Location, int], origins: dict[Location, str], data: Any = None
) -> str:
    problems = []
    for error in exc.errors():
        loc = _data_path(tuple(p for p in error["loc"] if isinstance(p, str | int)), data)
        origin = _origin(loc, source, lines, origins)
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"  {_dotted(loc)} ({origin}): {message}" if loc else f"  {origin}: {message}")
    count = len(problems)
    return f"{source}: {count} invalid setting{'s' if count != 1 else ''}\n" + "\n".join(problems)


def load_config(model: type[ConfigT], path: Path | None = None, *, environ: Mapping[str, str] | None = None) -> ConfigT:
    """Load and validate ``model`` from the YAML file at ``path`` (optional) and the environment."""
    environ = os.environ if environ is None else environ
    source = str(path) if path is not None else "<defaults>"
    data: Any = {}
    lines: dict[Location, int] = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start}): {exc.reason}") from exc
        data, lines = _compose_with_lines(text, source)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections")
        data = _interpolate(data, (), source=source, lines=lines, environ=environ)
    origins: dict[Location, str] = {}
    _apply_env_overrides(data, environ, origins)
    base_dir = path.parent.resolve() if path is not None else Path.cwd()
    try:
        return model.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, lines, origins, data)) from exc
