"""A built wheel holds every file the code loads at run time (not only an editable install does).

The wheel is built from a copy of the source (pyproject.toml, README.md, streamsr/) with the
venv's setuptools, offline; the expected files are derived from the code: every registered model's
weights at every scale with their recipe, the SRMD PCA file, the run presets, the sample clip.
``.ci/wheel-check`` goes further: it installs the wheel into a fresh venv and runs it.
"""

import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

import streamsr
from streamsr.backends.choice import QUALITY_TABLE, SPEED_TABLE
from streamsr.backends.int8 import RANGES_TABLE
from streamsr.config import PRESETS, SAMPLE_CLIP
from streamsr.degradation.maps import PCA_FILE
from streamsr.models import get_model, list_models, weights_path

PACKAGE = Path(streamsr.__file__).resolve().parent
ROOT = PACKAGE.parent

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file(), reason="needs the source tree")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[set[str], str, str]:
    """(file names in the wheel, its METADATA, the build's output)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(PACKAGE, src / "streamsr", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--no-index", "-w", str(tmp / "dist"), str(src)],
                           check=False, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    (whl,) = (tmp / "dist").glob("streamsr-*.whl")
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    return names, metadata, build.stdout + build.stderr


def _rel(path) -> str:
    return Path(str(path)).resolve().relative_to(ROOT).as_posix()


def loaded_data_files() -> set[str]:
    """Every data file the code loads at run time, as a path inside the wheel."""
    files = set()
    for name in list_models():
        spec = get_model(name)
        if not spec.learned:  # a fixed filter (the area downscale) has no weights
            continue
        for scale in spec.scales or (None,):  # a continuous model has one file for every scale
            path = weights_path(spec, scale)
            assert path is not None, f"{name} ({spec.weights_file(scale)}) ships no weights in the source tree"
            files |= {_rel(path), _rel(path.with_suffix(".json"))}  # weights + their recipe
    files.add(_rel(resources.files("streamsr.degradation") / PCA_FILE))
    files |= {_rel(p) for p in PRESETS.glob("*.toml")}
    files.add(_rel(SAMPLE_CLIP))
    files |= {_rel(SPEED_TABLE), _rel(QUALITY_TABLE), _rel(RANGES_TABLE)}  # what auto and int8 read
    return files


def test_wheel_holds_every_file_the_code_loads(wheel):
    names, _, _ = wheel
    expected = loaded_data_files()
    assert "streamsr/degradation/srmd_pca.safetensors" in expected and len(expected) > 20
    assert not expected - names, f"missing from the wheel: {sorted(expected - names)}"


def test_wheel_holds_the_whole_package_and_nothing_else(wheel):
    names, _, _ = wheel
    source = {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts}
    assert not source - names, f"in streamsr/ but not in the wheel: {sorted(source - names)}"
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"streamsr"}  # no engines/, tests/, configs/


def test_wheel_metadata_has_an_spdx_licence_and_builds_without_the_deprecation(wheel):
    _, metadata, output = wheel
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "project.license` as a TOML table is deprecated" not in output
