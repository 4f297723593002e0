"""Configuration: one TOML file plus ``ICONOSEARCH_*`` environment variables.

Precedence (highest first): environment variables, the TOML file, defaults. Nested keys use ``__`` in
environment variables, e.g. ``ICONOSEARCH_SERVER__PORT=9000``. The file is ``iconosearch.toml`` in the
working directory unless ``--config`` or ``ICONOSEARCH_CONFIG`` names another one.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from iconosearch.source_kinds import source_kind

DEFAULT_CONFIG_FILE = "iconosearch.toml"
DEFAULT_MODEL = "iconosearch-lite"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CollectionConfig(_Strict):
    """A collection to harvest: where it comes from and how to walk it."""

    kind: str
    """A source kind registered in :mod:`iconosearch.source_kinds` (collection, manifest, …)."""
    url: str | None = None
    """URL of the IIIF collection, manifest or change-discovery stream."""
    path: Path | None = None
    """Local folder of images (kind ``local``) or text file of manifest URLs (kind ``manifest-list``)."""
    label: str | None = None
    max_depth: int | None = Field(default=None, ge=0)
    """How deep to follow nested collections (``None``: no limit)."""
    limit: int | None = Field(default=None, ge=1)
    """Stop after this many manifests."""
    caption_fields: list[str] = Field(default_factory=lambda: ["title", "description", "subject"])
    """Metadata labels (case-insensitive) whose values go into the caption, after the labels and summary."""
    example_queries: list[str] = Field(default_factory=list, max_length=12)
    """Searches that show what this collection holds; the search page's first screen offers them."""
    regions: str | None = None
    """Also embed overlapping crops of each image (``"grid"``: 2×2 and 3×3), so that search finds a
    small motif inside a page; costs up to 14× the embeddings (see ``iconosearch.index.regions``)."""

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        source_kind(kind)
        return kind

    @field_validator("regions")
    @classmethod
    def _known_layout(cls, regions: str | None) -> str | None:
        from iconosearch.index.regions import LAYOUTS

        if regions is not None and regions not in LAYOUTS:
            raise ValueError(f"'regions' must be one of {', '.join(LAYOUTS)}, got {regions!r}")
        return regions

    @model_validator(mode="after")
    def _location(self) -> CollectionConfig:
        problem = source_kind(self.kind).location_problem(self.url, self.path)
        if problem is not None:
            raise ValueError(problem)
        if self.url is not None and not self.url.startswith(("http://", "https://", "file://")):
            raise ValueError(f"'url' must be http(s) or file://, got {self.url!r}")
        return self


class ViewerConfig(_Strict):
    """URL templates of IIIF viewers; ``{content_state}`` and ``{manifest}`` are filled in per result."""

    mirador: str = "https://projectmirador.org/embed/?iiif-content={content_state}"
    universal_viewer: str = "https://uv-v4.netlify.app/#?iiif-content={content_state}"


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    cors_origins: list[str] = Field(default_factory=list)
    api_keys: list[SecretStr] = Field(default_factory=list)
    """Keys accepted for admin endpoints; with none configured the admin endpoints are disabled."""
    allow_url_queries: bool = False
    """Let clients ask with an image URL (fetched server-side; private addresses are always refused)."""
    public_url: str | None = None
    """Base URL the service is reached at, for absolute links in IIIF output (default: the request's)."""
    viewers: ViewerConfig = Field(default_factory=ViewerConfig)
    admin_attempts_per_minute: int = Field(default=10, ge=1)
    """Failed admin-key attempts allowed per client address per minute; then 429 until the window moves."""
    metrics_require_key: bool = False
    """Serve ``/metrics`` only with an admin API key (as for ``/api/admin/*``)."""


class LimitsConfig(_Strict):
    upload_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    image_max_pixels: int = Field(default=64_000_000, ge=10_000)
    """Larger images are refused as possible decompression bombs."""
    k_max: int = Field(default=200, ge=1)
    """Most results one page may ask for."""
    depth_max: int = Field(default=10_000, ge=1)
    """How deep cursor paging may go."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    harvest_concurrency: int = Field(default=4, ge=1, le=64)
    """Concurrent requests per host while harvesting."""
    harvest_delay_s: float = Field(default=0.1, ge=0)
    """Politeness delay between requests to one host."""
    image_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    image_max_decode_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    """Memory one decoded image may take (pixels × bytes per pixel), checked before decoding."""
    image_decode_concurrency: int = Field(default=2, ge=1, le=64)
    """Image queries the API decodes and embeds at once; more wait in a queue as long."""
    search_concurrency: int = Field(default=8, ge=1, le=256)
    """Other searches the API runs at once; up to 8× more wait, beyond that 503 + Retry-After."""
    document_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    iiif_render_cache_bytes: int = Field(default=512 * 1024 * 1024, ge=1024 * 1024)
    """Disk for images the local Image API service rendered (least recently used go first)."""
    iiif_render_concurrency: int = Field(default=2, ge=1, le=64)
    """Images the local Image API service renders at once (each decodes one ≤2048-px master)."""


class HarvestConfig(_Strict):
    image_target_px: int = Field(default=384, ge=32, le=4096)
    """Long side of the image fetched for embedding."""
    user_agent: str = "iconosearch/0.1 (+https://github.com/iconosearch/iconosearch; heritage image search)"
    retries: int = Field(default=4, ge=0, le=20)


class RayConfig(_Strict):
    """The embedding stage on a Ray cluster (``pip install 'iconosearch[ray]'``); see ``models.ray_embed``."""

    address: str | None = None
    """``None``: embed in this process. ``"auto"`` (the cluster this machine belongs to),
    ``"ray://host:10001"``, or ``"local"`` (start a one-machine cluster)."""
    batch_size: int = Field(default=32, ge=1, le=4096)
    actors: int | None = Field(default=None, ge=1)
    """Model actors (default: one per GPU, else one per ``cpus_per_actor`` CPUs)."""
    cpus_per_actor: int = Field(default=2, ge=1)


class EncoderConfig(_Strict):
    """How query texts are encoded while serving (the API and ``iconosearch search`` share one worker)."""

    batch_window_ms: float = Field(default=3.0, ge=0, le=100)
    """Under load, how long a batch is held open for more texts after the oldest one arrived. A lone
    query never waits: the worker encodes it at once when nothing else is queued."""
    batch_max: int = Field(default=16, ge=1, le=256)
    """Most distinct texts encoded in one batch."""
    threads: int = Field(default=0, ge=0, le=256)
    """Threads the encoder uses (torch intra-op, ONNX Runtime intra-op); 0 = one per available core."""
    runtime: Literal["auto", "onnx", "torch"] = "auto"
    """Runtime of the served model's towers (text tower, image trunk): ``auto`` = ONNX Runtime where the
    tower has an export and ``onnxruntime`` is installed, else torch; ``onnx`` = the same but an error
    instead of the fallback; ``torch``. Indexing always uses ``auto``."""


class SubjectsConfig(_Strict):
    """Machine-suggested ICONCLASS subjects at index time (``subjects.suggested``)."""

    suggest: bool = False
    """Off by default: the first build with a model embeds ~5,000 ICONCLASS texts (minutes on 2 CPU cores,
    cached per model after that) and loads the vocabulary (~200 MB, seconds)."""


class SearchConfig(_Strict):
    """How the engine ranks (``iconosearch search`` and the API)."""

    mode: Literal["hybrid", "vector"] = "hybrid"
    """How a text query ranks unless it says: ``hybrid`` also matches its words on the catalogue text
    and fuses that ranking when the words single out a few records (names, titles); ``vector`` ranks by
    the embedding alone. Chosen on the heritage validation splits (docs/search-modes.md)."""


class Settings(BaseSettings):
    """The effective configuration of every iconosearch command."""

    model_config = SettingsConfigDict(
        env_prefix="ICONOSEARCH_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Path("data")
    model: str = DEFAULT_MODEL
    """Model spec used for new indexes (see ``iconosearch models``)."""
    collections: dict[str, CollectionConfig] = Field(default_factory=dict)
    server: ServerConfig = Field(default_factory=ServerConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    harvest: HarvestConfig = Field(default_factory=HarvestConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    subjects: SubjectsConfig = Field(default_factory=SubjectsConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _CONFIG_FILE_IN_USE or None
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


class ConfigError(Exception):
    """Configuration that cannot be used; the message names the offending key and why."""


_CONFIG_FILE_IN_USE: Path | None = None


def resolve_config_path(explicit: Path | None = None) -> Path | None:
    """The config file: ``explicit``, else ``$ICONOSEARCH_CONFIG``, else ./iconosearch.toml if present."""
    if explicit is not None:
        return explicit
    env = os.environ.get("ICONOSEARCH_CONFIG")
    if env:
        return Path(env)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read and validate the configuration, raising :class:`ConfigError` with a readable message."""
    global _CONFIG_FILE_IN_USE  # noqa: PLW0603 - pydantic-settings reads sources from class scope
    path = resolve_config_path(config_file)
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            with path.open("rb") as fh:
                tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    _CONFIG_FILE_IN_USE = path
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, path)) from exc
    finally:
        _CONFIG_FILE_IN_USE = None
    # Relative paths in the file are relative to the file, not to wherever the command runs.
    if path is not None:
        base = path.resolve().parent
        settings = _anchor_paths(settings, base)
    return settings


def _anchor_paths(settings: Settings, base: Path) -> Settings:
    data_dir = settings.data_dir if settings.data_dir.is_absolute() else base / settings.data_dir
    collections = {
        name: c.model_copy(update={"path": base / c.path})
        if c.path is not None and not c.path.is_absolute()
        else c
        for name, c in settings.collections.items()
    }
    return settings.model_copy(update={"data_dir": data_dir, "collections": collections})


def _explain(exc: ValidationError, path: Path | None) -> str:
    where = f" in {path}" if path is not None else ""
    lines = [f"invalid configuration{where}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def settings_as_dict(settings: Settings) -> dict[str, Any]:
    """The configuration as plain data, secrets masked."""
    data = settings.model_dump(mode="json")
    keys = data.get("server", {}).get("api_keys", [])
    data["server"]["api_keys"] = ["**********" for _ in keys]
    return data
