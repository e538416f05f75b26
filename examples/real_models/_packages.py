"""Find the files a PyPI package ships, without importing the package (its ``__init__`` may pull
in dependencies these cases do not need: torchvision for facenet-pytorch,
madmom and pyaudio for BeatNet). See requirements.txt for the versions measured."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_dir(module: str, distribution: str) -> Path:
    """The folder of the installed import package ``module`` (from the distribution ``distribution``)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {distribution} package is not installed: "
            f"pip install --no-deps -r examples/real_models/requirements.txt "
            f"(or put an unpacked {distribution} wheel on PYTHONPATH)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def package_file(module: str, distribution: str, relative: str) -> Path:
    path = package_dir(module, distribution) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{distribution} is installed but does not ship {relative} ({path})")
    return path
