"""Models: spec strings, embedders (open_clip and the embedded iconosearch-lite), corpus and build.

Import the submodules directly; this package imports nothing heavy so ``iconosearch --help`` stays fast.
"""

from iconosearch.models.specs import ModelSpec, ModelSpecError, ModelUnavailableError, parse_spec

__all__ = ["ModelSpec", "ModelSpecError", "ModelUnavailableError", "parse_spec"]
