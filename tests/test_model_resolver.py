"""The model resolver's refusals: one message per problem, and a fast failure when the hub is unreachable.

No test here reaches the network: the hub is pointed at a closed port on 127.0.0.1.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from iconosearch.models import hub
from iconosearch.models.specs import ModelUnavailableError, parse_spec


@pytest.fixture
def unreachable_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """HF_ENDPOINT at a local port nobody listens on, an empty hub cache, and no offline variable."""
    import huggingface_hub.constants

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: connecting is refused
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_probe", {})
    return f"127.0.0.1:{port}"


def test_an_unknown_tag_lists_the_known_ones_and_the_file_forms() -> None:
    with pytest.raises(ModelUnavailableError) as err:
        hub.check_available("ViT-B-32/laion2b_no_such_tag")
    message = str(err.value)
    assert "no pretrained tag 'laion2b_no_such_tag' for 'ViT-B-32'" in message
    assert "laion2b_s34b_b79k" in message  # a known tag is listed
    assert "ARCH//path" in message and "local-dir:" in message
    with pytest.raises(ModelUnavailableError, match="known tags: none"):
        hub.check_available("ViT-S-32/laion2b_s34b_b79k")  # no published weights at all


def test_an_unknown_architecture_is_named() -> None:
    with pytest.raises(ModelUnavailableError, match="no architecture 'ViT-Q-99'"):
        hub.check_available("ViT-Q-99/openai")


def test_an_unreachable_hub_fails_fast_without_the_offline_variable(unreachable_hub: str) -> None:
    with pytest.raises(ModelUnavailableError) as err:
        hub.check_available("ViT-B-32/laion2b_s34b_b79k")
    assert f"{unreachable_hub}) cannot be reached" in str(err.value)
    assert "not in the local cache" in str(err.value)
    import huggingface_hub.constants

    # later hub calls in this process read the cache only, instead of retrying
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    seconds = hub.probe_seconds()
    assert seconds is not None  # the probe ran once; its duration is reported by bench/finetune.py


def test_the_offline_variable_is_obeyed_without_a_probe(
    unreachable_hub: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match=r"switched off \(HF_HUB_OFFLINE=1\)"):
        hub.check_available("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    assert hub.probe_seconds() is None


def test_specs_that_need_no_hub_pass_without_a_probe(unreachable_hub: str) -> None:
    assert hub.check_available("iconosearch-lite").kind == "lite"
    assert hub.check_available("ViT-B-32//srv/weights.pt").pretrained == "/srv/weights.pt"
    assert hub.probe_seconds() is None
    assert parse_spec("ViT-B-32//srv/weights.pt").needs_hub is False


def test_third_party_info_logs_are_hidden_unless_verbose() -> None:
    import logging

    from iconosearch.logs import OwnInfoOnly

    def record(name: str, level: int) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, "message", None, None)

    keep = OwnInfoOnly().filter
    # open_clip logs "Loading pretrained ..." at INFO on the root logger
    assert not keep(record("root", logging.INFO)) and not keep(record("open_clip", logging.INFO))
    assert keep(record("root", logging.WARNING)) and keep(record("iconosearch.models", logging.INFO))
