"""Open_clip models by name and the Hugging Face hub, seen from a machine that may be offline.

One resolver, so that ``index``, ``finetune``, ``evaluate`` and the API give the same message for the same
problem, before anything slow happens:

- an unknown open_clip architecture;
- an unknown pretrained tag for a known architecture (listing the tags that exist);
- hub weights that are not cached while the hub cannot be reached.

Whether the hub can be reached is decided once per process. ``HF_HUB_OFFLINE=1`` (or
``TRANSFORMERS_OFFLINE=1``) says so outright; otherwise one TCP connection to the hub (or to the HTTPS
proxy) with a short timeout decides, because on an air-gapped machine the hub client's own retries take
about 50 s before they fail. When the hub is unreachable, huggingface_hub is switched to offline mode for
the rest of the process, so that cached weights load from the cache without a network wait.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Final
from urllib.parse import urlsplit

from iconosearch.models.specs import ModelSpec, ModelUnavailableError, hub_offline

HUB_PROBE_TIMEOUT_S: Final = 2.0
"""Name resolution + connect budget of the reachability probe; a reachable hub connects in well under 1 s."""

OWN_WEIGHTS_ADVICE: Final = (
    "For weights you have as files, use 'ARCH//path/to/weights.pt' (an open_clip architecture and a "
    "checkpoint file) or 'local-dir:FOLDER' (open_clip_config.json + weights); 'iconosearch-lite' is built "
    "in and works offline."
)

_probe: dict[str, float | bool] = {}
_probe_lock = threading.Lock()


def hub_endpoint() -> str:
    """The hub address huggingface_hub uses (``HF_ENDPOINT``, default https://huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _connect(url: str, result: dict[str, float | bool]) -> None:
    """Open (and close) a TCP connection to the hub's host, or to the HTTPS proxy when one is set."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    parts = urlsplit(proxy or url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=HUB_PROBE_TIMEOUT_S):
            result["reachable"] = True
    except OSError:
        result["reachable"] = False


def hub_reachable() -> bool:
    """Whether the hub answers, probed once per process (never when the environment says offline)."""
    if hub_offline():
        return False
    with _probe_lock:
        if "reachable" not in _probe:
            result: dict[str, float | bool] = {"reachable": False}
            t0 = time.perf_counter()
            # In a thread with a hard join limit: name resolution has no timeout of its own.
            worker = threading.Thread(target=_connect, args=(hub_endpoint(), result), daemon=True)
            worker.start()
            worker.join(HUB_PROBE_TIMEOUT_S + 0.5)
            _probe.update(reachable=bool(result["reachable"]), seconds=time.perf_counter() - t0)
            if not _probe["reachable"]:
                _go_offline()
        return bool(_probe["reachable"])


def probe_seconds() -> float | None:
    """How long the reachability probe took, when it ran."""
    seconds = _probe.get("seconds")
    return float(seconds) if seconds is not None else None


def _go_offline() -> None:
    """Make every later hub call in this process read the local cache only (no retries, no waits)."""
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True


def check_architecture(arch: str) -> None:
    """Refuse an architecture open_clip does not know."""
    import open_clip

    if arch not in open_clip.list_models():
        raise ModelUnavailableError(
            f"open_clip has no architecture {arch!r}; known ones include ViT-B-32, ViT-B-16, ViT-L-14 "
            "(all: python -c 'import open_clip; print(open_clip.list_models())')"
        )


def hub_location(spec: ModelSpec) -> tuple[str | None, str | None]:
    """(hub repo, weights file) of a hub-backed spec; (None, None) for tags served from elsewhere.

    Raises :class:`ModelUnavailableError` for an unknown architecture or tag, listing the known tags.
    """
    if spec.kind == "hf-hub":
        return spec.name, "open_clip_config.json"
    import open_clip

    check_architecture(spec.name)
    cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained or "")
    if not cfg:
        known = open_clip.list_pretrained_tags_by_model(spec.name)
        raise ModelUnavailableError(
            f"open_clip has no pretrained tag {spec.pretrained!r} for {spec.name!r}; known tags: "
            f"{', '.join(known) or 'none (it has no published weights)'}. {OWN_WEIGHTS_ADVICE}"
        )
    repo = cfg.get("hf_hub")
    if not repo:
        return None, None
    return repo.rstrip("/"), cfg.get("hf_weights_file") or "open_clip_pytorch_model.bin"


def hub_cached(spec: ModelSpec) -> bool:
    """Whether a hub spec's weights are already in the local Hugging Face cache."""
    try:
        repo, filename = hub_location(spec)
    except ModelUnavailableError:
        return False
    if repo is None:
        return False
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, filename or "open_clip_config.json"), str)


def require_hub_model(spec: ModelSpec) -> None:
    """Check, quickly and before loading, that a hub-backed spec exists and can be had here."""
    repo, _ = hub_location(spec)
    if repo is None:
        return
    cached = hub_cached(spec)
    # Probed even when cached: an unreachable hub is then switched off, so the cache is read without waits.
    if hub_reachable() or cached:
        return
    why = (
        "the hub is switched off (HF_HUB_OFFLINE=1)"
        if "seconds" not in _probe
        else f"the hub ({hub_endpoint()}) cannot be reached from here"
    )
    raise ModelUnavailableError(
        f"model {spec.raw!r} must be downloaded from the Hugging Face hub ({repo}), but {why} and it is not "
        f"in the local cache. Download it once on a machine with network access (it is then cached), or "
        f"use other weights. {OWN_WEIGHTS_ADVICE}"
    )


def check_available(spec: str) -> ModelSpec:
    """Parse a spec and refuse it early, with the resolver's message, when it names no known open_clip
    architecture or tag, or needs hub weights that cannot be had here; loads nothing."""
    from iconosearch.models.specs import parse_spec

    parsed = parse_spec(spec)
    if parsed.kind == "open_clip":
        check_architecture(parsed.name)
    if parsed.needs_hub:
        require_hub_model(parsed)
    return parsed
