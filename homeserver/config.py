"""Operator configuration: YAML file + environment overrides, validated once at start-up.

The environment wins over the file so that scripts and containers can run Parley with no YAML at
all (PARLEY_SERVER_NAME, PARLEY_LISTEN, PARLEY_DATA_DIR, PARLEY_DATABASE_URL, PARLEY_REGISTRATION,
PARLEY_RATE_LIMITS, PARLEY_LOG_LEVEL, PARLEY_LOG_FORMAT, PARLEY_METRICS_LISTEN,
PARLEY_INSTANCE_NAME, PARLEY_ALLOW_GUEST_ACCESS, PARLEY_ENABLE_EPHEMERAL_MESSAGES, and for
federation PARLEY_FEDERATION_LISTEN,
PARLEY_TLS_CERT, PARLEY_TLS_KEY, PARLEY_FEDERATION_CA_FILE, PARLEY_FEDERATION,
PARLEY_OUTBOUND_ALLOW, PARLEY_APP_SERVICE_CONFIG_FILES (comma-separated paths that replace the
file's app_service_config_files), and for e-mail, captcha, CAS and identity servers
PARLEY_SMTP_HOST, PARLEY_SMTP_PORT, PARLEY_SMTP_USER, PARLEY_SMTP_PASSWORD, PARLEY_SMTP_STARTTLS,
PARLEY_EMAIL_FROM, PARLEY_RECAPTCHA_PUBLIC_KEY, PARLEY_RECAPTCHA_PRIVATE_KEY,
PARLEY_RECAPTCHA_SITEVERIFY_URL, PARLEY_RECAPTCHA_REQUIRED, PARLEY_CAS_SERVER_URL,
PARLEY_CAS_SERVICE_URL, PARLEY_IDENTITY_CA_FILE, PARLEY_PUBLIC_BASEURL. Values are frozen
dataclasses passed to whoever needs them; there is no global config object.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from homeserver.appservice.registration import AppService, RegistrationError, load_registrations
from homeserver.events.room_versions import DEFAULT_ROOM_VERSION, ROOM_VERSIONS
from homeserver.outbound import DEFAULT_DENY, parse_ranges
from homeserver.types import is_valid_server_name


class ConfigError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_second: float
    burst_count: int


@dataclass(frozen=True, slots=True)
class RateLimits:
    enabled: bool = True
    message: RateLimit = RateLimit(10.0, 50)
    registration: RateLimit = RateLimit(0.5, 5)
    login: RateLimit = RateLimit(0.5, 10)
    room_creation: RateLimit = RateLimit(1.0, 20)
    joins: RateLimit = RateLimit(2.0, 20)
    federation: RateLimit = RateLimit(50.0, 500)  # signed requests per origin server
    media_upload: RateLimit = RateLimit(2.0, 30)  # uploads and media ids created, per user


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """The media repository (docs/media.md)."""

    store_path: Path | None = None  # None: <data_dir>/media
    max_upload_bytes: int = 50 * 1024 * 1024
    max_user_bytes: int = 0  # quota of one user's uploads together; 0: none
    max_pending_uploads: int = 10  # created media ids not yet uploaded, per user
    unused_expiry_ms: int = 24 * 3600 * 1000
    # Synapse's enable_authenticated_media: media uploaded (or cached) while this is on is
    # served only by the authenticated endpoints; what came before stays on the legacy ones.
    freeze_unauthenticated: bool = True
    legacy_endpoints: bool = True  # /_matrix/media/v3/download|thumbnail at all
    max_image_pixels: int = 32_000_000  # larger images are not decoded (decompression bombs)
    max_thumbnail_frames: int = 200  # animated thumbnails of longer animations: first frame
    local_media_lifetime_ms: int = 0  # purge local media older than this; 0: keep
    remote_media_lifetime_ms: int = 0  # purge cached remote media unused this long; 0: keep
    purge_interval_ms: int = 3600 * 1000
    url_preview_enabled: bool = False
    url_preview_allow: tuple[str, ...] = ()
    url_preview_deny: tuple[str, ...] = DEFAULT_DENY
    url_preview_max_bytes: int = 10 * 1024 * 1024
    url_preview_timeout_ms: int = 10_000
    url_preview_cache_ms: int = 3600 * 1000


@dataclass(frozen=True, slots=True)
class VoipConfig:
    """GET /voip/turnServer (client_api/voip.py): TURN URIs and either a shared secret (the
    coturn `use-auth-secret` scheme: time-limited HMAC credentials) or a fixed user/password."""
    turn_uris: tuple[str, ...] = ()
    turn_shared_secret: str = ""
    turn_username: str = ""
    turn_password: str = ""
    turn_user_lifetime_ms: int = 3600 * 1000
    turn_allow_guests: bool = True


@dataclass(frozen=True, slots=True)
class SupportConfig:
    """/.well-known/matrix/support (spec v1.10): admin contacts and a support page."""
    contacts: tuple[tuple[tuple[str, str], ...], ...] = ()  # each contact's (key, value)s
    support_page: str = ""


@dataclass(frozen=True, slots=True)
class EmailConfig:
    """Outgoing e-mail (validation links for e-mail 3PIDs). No smtp_host: no e-mail, and then
    neither e-mail registration nor adding e-mail addresses is offered."""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    starttls: bool = False
    notif_from: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.smtp_host)


@dataclass(frozen=True, slots=True)
class RecaptchaConfig:
    """Google reCAPTCHA for registration (the m.login.recaptcha stage). With the keys set the
    stage is verified when a client offers it; `required` also puts it in every registration
    flow."""
    public_key: str = ""
    private_key: str = ""
    siteverify_url: str = "https://www.recaptcha.net/recaptcha/api/siteverify"
    required: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.public_key and self.private_key)


@dataclass(frozen=True, slots=True)
class CasConfig:
    """Single sign-on through a CAS server (m.login.sso). `service_url` is the public base URL
    the CAS server sends the browser back to (default: public_baseurl)."""
    server_url: str = ""
    service_url: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.server_url)


@dataclass(frozen=True, slots=True)
class Config:
    server_name: str = "localhost"
    listen_host: str = "127.0.0.1"
    listen_port: int = 8008
    public_baseurl: str = ""
    data_dir: Path = Path("parley-data")
    database_url: str = ""  # empty: embedded PostgreSQL in data_dir/postgres
    db_pool_min: int = 2
    db_pool_max: int = 10
    signing_key_path: Path = Path("parley-data/signing.key")
    registration: str = "closed"  # open | token | closed
    registration_tokens: tuple[str, ...] = ()
    password_min_length: int = 0
    rate_limits: RateLimits = field(default_factory=RateLimits)
    log_level: str = "INFO"
    log_format: str = "text"  # text | json (homeserver/observability/logs.py)
    log_requests: bool = False  # one line per request (default on with json)
    # /metrics (Prometheus) and /health on a listener of their own; port 0: off
    metrics_listen_host: str = "127.0.0.1"
    metrics_listen_port: int = 0
    max_request_bytes: int = 1_048_576
    default_room_version: str = DEFAULT_ROOM_VERSION
    # Guest accounts (POST /register?kind=guest, spec "Guest access"): on by default, as
    # clients expect them for room previews; guests only join rooms that opt in with
    # m.room.guest_access can_join, and only use the endpoints client_api/guest_access.py lists.
    allow_guest_access: bool = True
    # MSC2228 (unstable): prune events whose content has org.matrix.self_destruct_after at
    # that time (homeserver/rooms/expiry.py). Off by default, as in Synapse.
    enable_ephemeral_messages: bool = False
    presence_enabled: bool = True
    presence_federation: bool = True  # send and accept m.presence EDUs (presence.federation)
    presence_idle_after_ms: int = 30_000  # no heartbeat this long (past a sync's timeout): idle
    presence_offline_after_ms: int = 300_000  # ... and this long: offline
    # Each process sharing one database needs its own name (see storage/instances.py).
    instance_name: str = "main"
    # -- federation (docs/federation.md). The federation listener serves TLS; when it names
    # the client listener's host:port, one TLS listener serves both.
    federation_enabled: bool = False
    federation_listen_host: str = ""
    federation_listen_port: int = 0  # 0: no federation listener
    tls_cert_path: Path | None = None
    tls_key_path: Path | None = None
    federation_ca_file: Path | None = None  # extra CAs trusted for outbound requests
    well_known_server: str = ""  # served as m.server in /.well-known/matrix/server
    outbound_allow: tuple[str, ...] = ()
    outbound_deny: tuple[str, ...] = DEFAULT_DENY
    trusted_key_servers: tuple[str, ...] = ()  # notaries asked when an origin is unreachable
    old_signing_keys_path: Path = Path("parley-data/signing.key.old")
    key_validity_ms: int = 24 * 3600 * 1000
    media: MediaConfig = field(default_factory=MediaConfig)
    voip: VoipConfig = field(default_factory=VoipConfig)
    support: SupportConfig = field(default_factory=SupportConfig)
    # Application services (homeserver/appservice/), parsed from app_service_config_files.
    app_services: tuple[AppService, ...] = ()
    email: EmailConfig = field(default_factory=EmailConfig)
    recaptcha: RecaptchaConfig = field(default_factory=RecaptchaConfig)
    cas: CasConfig = field(default_factory=CasConfig)
    identity_ca_file: Path | None = None  # extra CAs trusted for identity servers

    @property
    def base_url(self) -> str:
        scheme = "https" if self.shared_listener else "http"
        return self.public_baseurl or f"{scheme}://{self.listen_host}:{self.listen_port}/"

    @property
    def media_path(self) -> Path:
        return self.media.store_path or self.data_dir / "media"

    @property
    def shared_listener(self) -> bool:
        """Client and federation on one (TLS) listener."""
        return bool(self.federation_listen_port) and (
            self.federation_listen_host, self.federation_listen_port) == (
            self.listen_host, self.listen_port)


def _rate(d: Any, default: RateLimit) -> RateLimit:
    if not isinstance(d, Mapping):
        return default
    return RateLimit(float(d.get("per_second", default.per_second)),
                     int(d.get("burst_count", default.burst_count)))


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"listen address must be host:port, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "on", "true", "yes")


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), then apply PARLEY_* environment overrides, then validate."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        raw = loaded
    try:
        return _load(path, raw, env)
    except (TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{path or 'environment'}: bad value: {e}") from e


def _load(path: Path | None, raw: dict[str, Any], env: Mapping[str, str]) -> Config:
    # Paths in the file are relative to the file's folder; PARLEY_DATA_DIR to the working dir.
    base_dir = path.resolve().parent if path is not None else Path.cwd()

    cfg = Config()
    if "PARLEY_DATA_DIR" in env:
        data_dir = Path(env["PARLEY_DATA_DIR"]).resolve()
    else:
        data_dir = Path(raw.get("data_dir", "parley-data"))
    if not data_dir.is_absolute():
        data_dir = (base_dir / data_dir).resolve()

    listen = raw.get("listeners", [{}])
    listen = listen if isinstance(listen, list) and listen else [{}]
    client = next((x for x in listen if isinstance(x, dict) and "client" in x.get(
        "resources", ["client"])), {})
    fed = next((x for x in listen if isinstance(x, dict)
                and "federation" in x.get("resources", [])), None)
    host = str(client.get("bind_address", cfg.listen_host))
    port = int(client.get("port", cfg.listen_port))
    if "PARLEY_LISTEN" in env:
        host, port = _parse_listen(env["PARLEY_LISTEN"])
    fed_host, fed_port = "", 0
    if fed is not None:
        fed_host = str(fed.get("bind_address", "0.0.0.0"))
        fed_port = int(fed.get("port", 8448))
    if env.get("PARLEY_FEDERATION_LISTEN"):
        fed_host, fed_port = _parse_listen(env["PARLEY_FEDERATION_LISTEN"])
    fcfg = raw.get("federation") or {}
    if not isinstance(fcfg, dict):
        raise ConfigError("federation must be a mapping")
    tls = raw.get("tls") or {}

    def _path(value: object) -> Path | None:
        if value in (None, ""):
            return None
        p = Path(str(value))
        return p if p.is_absolute() else (base_dir / p).resolve()

    cert = _path(env.get("PARLEY_TLS_CERT", tls.get("certificate")))
    tls_key = _path(env.get("PARLEY_TLS_KEY", tls.get("private_key")))
    ca_file = _path(env.get("PARLEY_FEDERATION_CA_FILE", fcfg.get("ca_file")))
    fed_on = bool(fcfg.get("enabled", fed_port != 0))
    if "PARLEY_FEDERATION" in env:
        fed_on = _bool(env["PARLEY_FEDERATION"])
    outbound = raw.get("outbound") or {}
    allow = tuple(str(x) for x in outbound.get("allow_ranges", []) or [])
    if env.get("PARLEY_OUTBOUND_ALLOW"):
        allow = tuple(x.strip() for x in env["PARLEY_OUTBOUND_ALLOW"].split(",") if x.strip())
    deny = tuple(str(x) for x in outbound.get("deny_ranges", DEFAULT_DENY) or [])

    metrics = raw.get("metrics") or {}
    metrics_host, metrics_port = "127.0.0.1", 0
    if isinstance(metrics, dict) and metrics.get("listen"):
        metrics_host, metrics_port = _parse_listen(str(metrics["listen"]))
    if env.get("PARLEY_METRICS_LISTEN"):
        metrics_host, metrics_port = _parse_listen(env["PARLEY_METRICS_LISTEN"])
    log_format = str(env.get("PARLEY_LOG_FORMAT", raw.get("log_format", "text"))).lower()
    log_requests = raw.get("log_requests", log_format == "json")
    if "PARLEY_LOG_REQUESTS" in env:
        log_requests = _bool(env["PARLEY_LOG_REQUESTS"])

    db = raw.get("database") or {}
    database_url = str(db.get("url", "") if isinstance(db, dict) else "")
    database_url = env.get("PARLEY_DATABASE_URL", database_url)

    reg = raw.get("registration") or {}
    if isinstance(reg, str):
        reg = {"mode": reg}
    mode = str(env.get("PARLEY_REGISTRATION", reg.get("mode", "closed")))
    tokens = tuple(str(t) for t in reg.get("tokens", []) or [])

    rl = raw.get("rate_limits") or {}
    enabled = bool(rl.get("enabled", True))
    if "PARLEY_RATE_LIMITS" in env:
        enabled = _bool(env["PARLEY_RATE_LIMITS"])
    d = RateLimits()
    limits = RateLimits(
        enabled=enabled,
        message=_rate(rl.get("message"), d.message),
        registration=_rate(rl.get("registration"), d.registration),
        login=_rate(rl.get("login"), d.login),
        room_creation=_rate(rl.get("room_creation"), d.room_creation),
        joins=_rate(rl.get("joins"), d.joins),
        federation=_rate(rl.get("federation"), d.federation),
        media_upload=_rate(rl.get("media_upload"), d.media_upload),
    )
    as_files = raw.get("app_service_config_files") or []
    if not isinstance(as_files, list) or not all(isinstance(f, str) for f in as_files):
        raise ConfigError("app_service_config_files must be a list of paths")
    as_paths = [p for p in (_path(f) for f in as_files) if p is not None]
    if env.get("PARLEY_APP_SERVICE_CONFIG_FILES"):
        as_paths = [Path(f.strip()).resolve()
                    for f in env["PARLEY_APP_SERVICE_CONFIG_FILES"].split(",") if f.strip()]
    server_name = str(env.get("PARLEY_SERVER_NAME", raw.get("server_name", cfg.server_name)))
    try:
        app_services = load_registrations(as_paths, server_name)
    except RegistrationError as e:
        raise ConfigError(str(e)) from e
    key_path = Path(raw.get("signing_key_path", data_dir / "signing.key"))
    if not key_path.is_absolute():
        key_path = (base_dir / key_path).resolve()
    old_keys = _path(raw.get("old_signing_keys_path")) or Path(str(key_path) + ".old")

    cfg = replace(
        cfg,
        server_name=server_name,
        listen_host=host,
        listen_port=port,
        public_baseurl=str(env.get("PARLEY_PUBLIC_BASEURL", raw.get("public_baseurl", ""))),
        data_dir=data_dir,
        database_url=database_url,
        db_pool_min=int(db.get("pool_min", cfg.db_pool_min)) if isinstance(db, dict) else 2,
        db_pool_max=int(db.get("pool_max", cfg.db_pool_max)) if isinstance(db, dict) else 10,
        signing_key_path=key_path,
        registration=mode,
        registration_tokens=tokens,
        password_min_length=int(reg.get("password_min_length", 0)),
        rate_limits=limits,
        log_level=str(env.get("PARLEY_LOG_LEVEL", raw.get("log_level", "INFO"))).upper(),
        log_format=log_format,
        log_requests=bool(log_requests),
        metrics_listen_host=metrics_host,
        metrics_listen_port=metrics_port,
        max_request_bytes=int(raw.get("max_request_bytes", cfg.max_request_bytes)),
        default_room_version=str(raw.get("default_room_version", DEFAULT_ROOM_VERSION)),
        allow_guest_access=(_bool(env["PARLEY_ALLOW_GUEST_ACCESS"])
                            if "PARLEY_ALLOW_GUEST_ACCESS" in env
                            else bool(raw.get("allow_guest_access", cfg.allow_guest_access))),
        enable_ephemeral_messages=(
            _bool(env["PARLEY_ENABLE_EPHEMERAL_MESSAGES"])
            if "PARLEY_ENABLE_EPHEMERAL_MESSAGES" in env
            else bool(raw.get("enable_ephemeral_messages", cfg.enable_ephemeral_messages))),
        presence_enabled=bool((raw.get("presence") or {}).get("enabled", True)),
        presence_federation=bool((raw.get("presence") or {}).get("federation", True)),
        presence_idle_after_ms=int((raw.get("presence") or {}).get(
            "idle_after_ms", cfg.presence_idle_after_ms)),
        presence_offline_after_ms=int((raw.get("presence") or {}).get(
            "offline_after_ms", cfg.presence_offline_after_ms)),
        instance_name=str(env.get("PARLEY_INSTANCE_NAME",
                                  raw.get("instance_name", cfg.instance_name))),
        federation_enabled=fed_on,
        federation_listen_host=fed_host,
        federation_listen_port=fed_port,
        tls_cert_path=cert,
        tls_key_path=tls_key,
        federation_ca_file=ca_file,
        well_known_server=str(fcfg.get("well_known_server", "")),
        outbound_allow=allow,
        outbound_deny=deny,
        trusted_key_servers=tuple(str(x) for x in fcfg.get("trusted_key_servers", []) or []),
        old_signing_keys_path=old_keys,
        key_validity_ms=int(fcfg.get("key_validity_ms", cfg.key_validity_ms)),
        media=_media(raw.get("media") or {}, _path),
        voip=_voip(raw.get("voip") or {}),
        support=_support(raw.get("support") or {}),
        app_services=app_services,
        email=_email(raw.get("email"), env),
        recaptcha=_recaptcha(raw.get("recaptcha"), env),
        cas=_cas(raw.get("cas"), env),
        identity_ca_file=_path(env.get("PARLEY_IDENTITY_CA_FILE",
                                       (raw.get("identity") or {}).get("ca_file"))),
    )
    validate(cfg)
    return cfg


def _section(name: str, value: Any, known: set[str]) -> dict[str, Any]:
    if value is None:  # absent, or an empty key in the file
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a mapping")
    unknown = set(value) - known
    if unknown:
        raise ConfigError(f"{name}: unknown option(s) {', '.join(sorted(unknown))}")
    return value


def _email(e: Any, env: Mapping[str, str]) -> EmailConfig:
    e = _section("email", e, {"smtp_host", "smtp_port", "smtp_user", "smtp_password",
                              "starttls", "from"})
    d = EmailConfig()
    starttls = bool(e.get("starttls", d.starttls))
    if "PARLEY_SMTP_STARTTLS" in env:
        starttls = _bool(env["PARLEY_SMTP_STARTTLS"])
    return EmailConfig(
        smtp_host=str(env.get("PARLEY_SMTP_HOST", e.get("smtp_host") or "")),
        smtp_port=int(env.get("PARLEY_SMTP_PORT", e.get("smtp_port", d.smtp_port))),
        smtp_user=str(env.get("PARLEY_SMTP_USER", e.get("smtp_user") or "")),
        smtp_password=str(env.get("PARLEY_SMTP_PASSWORD", e.get("smtp_password") or "")),
        starttls=starttls,
        notif_from=str(env.get("PARLEY_EMAIL_FROM", e.get("from") or "")),
    )


def _recaptcha(r: Any, env: Mapping[str, str]) -> RecaptchaConfig:
    r = _section("recaptcha", r, {"public_key", "private_key", "siteverify_url", "required"})
    d = RecaptchaConfig()
    required = bool(r.get("required", False))
    if "PARLEY_RECAPTCHA_REQUIRED" in env:
        required = _bool(env["PARLEY_RECAPTCHA_REQUIRED"])
    return RecaptchaConfig(
        public_key=str(env.get("PARLEY_RECAPTCHA_PUBLIC_KEY", r.get("public_key") or "")),
        private_key=str(env.get("PARLEY_RECAPTCHA_PRIVATE_KEY", r.get("private_key") or "")),
        siteverify_url=str(env.get("PARLEY_RECAPTCHA_SITEVERIFY_URL",
                                   r.get("siteverify_url") or d.siteverify_url)),
        required=required,
    )


def _cas(c: Any, env: Mapping[str, str]) -> CasConfig:
    c = _section("cas", c, {"server_url", "service_url"})
    return CasConfig(
        server_url=str(env.get("PARLEY_CAS_SERVER_URL", c.get("server_url") or "")).rstrip("/"),
        service_url=str(env.get("PARLEY_CAS_SERVICE_URL", c.get("service_url") or "")),
    )


def _voip(v: Any) -> VoipConfig:
    if not isinstance(v, dict):
        raise ConfigError("voip must be a mapping")
    unknown = set(v) - set(VoipConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"voip: unknown option(s) {', '.join(sorted(unknown))}")
    uris = v.get("turn_uris") or []
    if not isinstance(uris, list) or not all(
            isinstance(u, str) and u.startswith(("turn:", "turns:")) for u in uris):
        raise ConfigError("voip.turn_uris must be a list of turn: or turns: URIs")
    d = VoipConfig()
    lifetime = int(v.get("turn_user_lifetime_ms", d.turn_user_lifetime_ms))
    if lifetime <= 0:
        raise ConfigError("voip.turn_user_lifetime_ms must be positive")
    return VoipConfig(
        turn_uris=tuple(uris),
        turn_shared_secret=str(v.get("turn_shared_secret") or ""),
        turn_username=str(v.get("turn_username") or ""),
        turn_password=str(v.get("turn_password") or ""),
        turn_user_lifetime_ms=lifetime,
        turn_allow_guests=bool(v.get("turn_allow_guests", True)),
    )


def _support(s: Any) -> SupportConfig:
    if not isinstance(s, dict) or set(s) - {"contacts", "support_page"}:
        raise ConfigError("support must be a mapping of contacts and support_page")
    contacts = s.get("contacts") or []
    if not isinstance(contacts, list):
        raise ConfigError("support.contacts must be a list")
    out = []
    for c in contacts:
        if not isinstance(c, dict) or not all(isinstance(x, str) for x in c.values()) or \
                not isinstance(c.get("role"), str) or not (
                    c.get("matrix_id") or c.get("email_address")):
            raise ConfigError("each support contact needs a role and a matrix_id or an "
                              "email_address")
        out.append(tuple(sorted(c.items())))
    return SupportConfig(contacts=tuple(out), support_page=str(s.get("support_page") or ""))


def _media(m: Any, path: Callable[[object], Path | None]) -> MediaConfig:
    if not isinstance(m, dict):
        raise ConfigError("media must be a mapping")
    d = MediaConfig()
    known = set(MediaConfig.__dataclass_fields__)
    unknown = set(m) - known
    if unknown:
        raise ConfigError(f"media: unknown option(s) {', '.join(sorted(unknown))}")

    def ranges(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(x) for x in (m.get(name, default) or []))

    values: dict[str, Any] = {}
    values.update({name: int(m.get(name, getattr(d, name))) for name in (
        "max_upload_bytes", "max_user_bytes", "max_pending_uploads", "unused_expiry_ms",
        "max_image_pixels", "max_thumbnail_frames", "local_media_lifetime_ms",
        "remote_media_lifetime_ms", "purge_interval_ms", "url_preview_max_bytes",
        "url_preview_timeout_ms", "url_preview_cache_ms")})
    values.update({name: bool(m.get(name, getattr(d, name))) for name in (
        "freeze_unauthenticated", "legacy_endpoints", "url_preview_enabled")})
    return MediaConfig(
        store_path=path(m.get("store_path")),
        **values,
        url_preview_allow=ranges("url_preview_allow", ()),
        url_preview_deny=ranges("url_preview_deny", DEFAULT_DENY),
    )


def _validate_media(m: MediaConfig) -> None:
    if m.max_upload_bytes <= 0:
        raise ConfigError("media.max_upload_bytes must be positive")
    if m.max_user_bytes < 0 or m.local_media_lifetime_ms < 0 or m.remote_media_lifetime_ms < 0:
        raise ConfigError("media: quotas and lifetimes must be >= 0")
    if m.max_pending_uploads < 1 or m.unused_expiry_ms < 1000 or m.purge_interval_ms < 1000:
        raise ConfigError("media: max_pending_uploads >= 1, unused_expiry_ms and "
                          "purge_interval_ms >= 1000")
    if m.max_image_pixels < 1 or m.max_thumbnail_frames < 1:
        raise ConfigError("media: max_image_pixels and max_thumbnail_frames must be positive")
    if m.url_preview_max_bytes < 1 or m.url_preview_timeout_ms < 1:
        raise ConfigError("media: url_preview_max_bytes and url_preview_timeout_ms must be "
                          "positive")
    try:
        parse_ranges(m.url_preview_allow)
        parse_ranges(m.url_preview_deny)
    except ValueError as e:
        raise ConfigError(f"media url preview ranges: {e}") from e


def validate(cfg: Config) -> None:
    _validate_media(cfg.media)
    if not is_valid_server_name(cfg.server_name):
        raise ConfigError(f"invalid server_name {cfg.server_name!r}")
    if cfg.registration not in ("open", "token", "closed"):
        raise ConfigError("registration must be one of open, token, closed")
    if cfg.default_room_version not in ROOM_VERSIONS:
        raise ConfigError(f"unsupported default_room_version {cfg.default_room_version!r}")
    if not 0 < cfg.listen_port < 65536:
        raise ConfigError("listener port out of range")
    if not 0 < cfg.presence_idle_after_ms < cfg.presence_offline_after_ms:
        raise ConfigError("presence: need 0 < idle_after_ms < offline_after_ms")
    if not cfg.instance_name or len(cfg.instance_name) > 64 or any(
            not (c.isalnum() or c in "-_.") for c in cfg.instance_name):
        raise ConfigError("instance_name must be 1-64 letters, digits, '-', '_' or '.'")
    if cfg.log_format not in ("text", "json"):
        raise ConfigError("log_format must be text or json")
    if cfg.metrics_listen_port and (
            (cfg.metrics_listen_host, cfg.metrics_listen_port)
            == (cfg.listen_host, cfg.listen_port)):
        raise ConfigError("the metrics listener must not be the client listener")
    if cfg.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("log_level must be DEBUG, INFO, WARNING or ERROR")
    try:
        parse_ranges(cfg.outbound_allow)
        parse_ranges(cfg.outbound_deny)
    except ValueError as e:
        raise ConfigError(f"outbound ranges: {e}") from e
    if cfg.federation_listen_port and not 0 < cfg.federation_listen_port < 65536:
        raise ConfigError("federation listener port out of range")
    if cfg.federation_listen_port:
        if cfg.tls_cert_path is None or cfg.tls_key_path is None:
            raise ConfigError("the federation listener needs tls.certificate and "
                              "tls.private_key (PARLEY_TLS_CERT, PARLEY_TLS_KEY)")
        for p in (cfg.tls_cert_path, cfg.tls_key_path):
            if not p.is_file():
                raise ConfigError(f"TLS file {p} does not exist")
    if cfg.federation_ca_file is not None and not cfg.federation_ca_file.is_file():
        raise ConfigError(f"federation CA file {cfg.federation_ca_file} does not exist")
    if cfg.identity_ca_file is not None and not cfg.identity_ca_file.is_file():
        raise ConfigError(f"identity CA file {cfg.identity_ca_file} does not exist")
    if cfg.email.enabled and not (0 < cfg.email.smtp_port < 65536 and "@" in cfg.email.notif_from):
        raise ConfigError("email needs an smtp_port in range and a from address")
    if cfg.recaptcha.required and not cfg.recaptcha.enabled:
        raise ConfigError("recaptcha.required needs public_key and private_key")
    for name, url in (("recaptcha.siteverify_url", cfg.recaptcha.siteverify_url),
                      ("cas.server_url", cfg.cas.server_url),
                      ("cas.service_url", cfg.cas.service_url)):
        if url and not url.startswith(("https://", "http://")):
            raise ConfigError(f"{name} must be an http(s) URL")
    if not 60_000 <= cfg.key_validity_ms <= 7 * 24 * 3600 * 1000:
        raise ConfigError("federation.key_validity_ms must be between 1 minute and 7 days")


def generate_config_yaml(server_name: str, data_dir: str = "parley-data") -> str:
    """A starting config for `parley generate-config`: the example with the name filled in."""
    # homeserver/config.example.yaml links to the top-level example and ships in the wheel.
    example = files("homeserver").joinpath("config.example.yaml")
    if example.is_file():
        text = example.read_text()
        text = text.replace("server_name: localhost", f"server_name: {server_name}", 1)
        return text.replace("data_dir: parley-data", f"data_dir: {data_dir}", 1)
    return f"server_name: {server_name}\ndata_dir: {data_dir}\n"
