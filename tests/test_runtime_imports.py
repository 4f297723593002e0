"""The runtime model package never loads model-building or training code (issue 11)."""

import subprocess
import sys


def test_models_package_imports_no_training_or_build_code() -> None:
    code = (
        "import sys, iconosearch.models, iconosearch.models.embedder, iconosearch.models.lite, "
        "iconosearch.models.pipeline, iconosearch.models.towers;"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('iconosearch.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert "iconosearch.models.lite" in loaded  # the probe did import the runtime
    leaked = sorted(m for m in loaded if m.startswith(("iconosearch.training", "iconosearch.lite")))
    assert leaked == []
