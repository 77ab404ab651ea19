"""The package as users get it: its version is pyproject.toml's, it ships its type hints
(py.typed), every public name documents its shapes with an example that runs, and an sdist or
a clone builds and installs with pip (slow: each compiles the extension)."""

from __future__ import annotations

import doctest
import importlib.metadata
import inspect
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import corr2d_ext
import corr2d_ext.functional
import corr2d_ext.nn

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


def test_version_is_the_one_in_pyproject():
    assert corr2d_ext.__version__ == VERSION


def test_version_without_installed_metadata_comes_from_the_build(monkeypatch):
    # Built in place (setup.py build_ext --inplace) and never installed: no metadata.
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert corr2d_ext._version() == VERSION


def test_type_hints_ship_with_the_package():
    assert (Path(corr2d_ext.__file__).parent / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["corr2d_ext"]


PUBLIC_CALLABLES = [name for name in corr2d_ext.__all__
                    if callable(getattr(corr2d_ext, name))]


def test_the_public_callables_are_the_api():
    assert sorted(PUBLIC_CALLABLES) == sorted(["corr2d", "conv2d", "Conv2D", "Conv2d", "convert"])


@pytest.mark.parametrize("name", PUBLIC_CALLABLES)
def test_every_public_name_documents_its_shapes_with_an_example(name):
    doc = inspect.getdoc(getattr(corr2d_ext, name)) or ""
    assert "(" in doc and ("Shape" in doc or "Returns" in doc), f"{name}: no shapes"
    assert ">>> " in doc, f"{name}: no example"


HINTED = {
    "corr2d": corr2d_ext.corr2d,
    "conv2d": corr2d_ext.conv2d,
    "convert": corr2d_ext.convert,
    "Conv2D.__init__": corr2d_ext.Conv2D.__init__,
    "Conv2D.forward": corr2d_ext.Conv2D.forward,
    "Conv2d._conv_forward": corr2d_ext.Conv2d._conv_forward,  # the rest is nn.Conv2d's
}


@pytest.mark.parametrize("name", HINTED)
def test_every_public_function_has_type_hints(name):
    function = HINTED[name]
    hints = inspect.get_annotations(function)
    parameters = [p for p in inspect.signature(function).parameters if p != "self"]
    assert set(parameters) | {"return"} == set(hints), f"{name}: hints for {sorted(hints)}"


@pytest.mark.parametrize("module", [corr2d_ext, corr2d_ext.functional, corr2d_ext.nn],
                         ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    import torch
    from torch import nn

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(module, globs={"torch": torch, "nn": nn, **vars(module)})
    assert any(t.examples for t in tests)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_manifest_carries_every_kind_of_source_file():
    # setuptools puts the extension's listed sources in an sdist, but not the headers they
    # include: MANIFEST.in must name every kind of file under csrc/.
    manifest = (ROOT / "MANIFEST.in").read_text()
    suffixes = {p.suffix for p in (ROOT / "csrc").rglob("*") if p.is_file()}
    for suffix in suffixes:
        assert f"*{suffix}" in manifest, f"MANIFEST.in leaves csrc/**/*{suffix} out of the sdist"


# Installing with pip (slow: each compiles the CPU kernels, about 2 minutes on two cores) -------


def clone_of_the_working_tree(destination: Path) -> Path:
    """What `git clone` of this tree would hold once committed: the tracked files and the new
    ones git does not ignore (no .venv, no build/, no compiled _C)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, check=True, capture_output=True).stdout
    for name in filter(None, listing.decode().split("\0")):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    return destination


def pip_install(source: Path, target: Path):
    """pip install --no-build-isolation of `source` into the folder `target`, CPU kernels only,
    with this environment's torch and build tools."""
    env = {**os.environ, "CORR2D_CUDA": "0"}
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation",
                    "--no-deps", "--target", str(target), str(source)],
                   check=True, env=env, cwd=target.parent)


SMOKE = """
import sys, torch, torch.nn.functional as F, corr2d_ext
assert corr2d_ext.__file__.startswith(sys.argv[1]), corr2d_ext.__file__
x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
torch.testing.assert_close(corr2d_ext.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1))
print(corr2d_ext.__version__, corr2d_ext.build_info)
"""


def assert_installed_package_works(target: Path):
    assert (target / "corr2d_ext" / "py.typed").is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", SMOKE, str(target)], check=True, env=env,
                            cwd=target.parent, capture_output=True, text=True)
    version, build_info = result.stdout.strip().split(" ", 1)
    assert version == VERSION
    assert build_info.startswith("CPU kernels only")


@pytest.mark.slow
def test_pip_installs_from_a_clone(tmp_path):
    clone = clone_of_the_working_tree(tmp_path / "clone")
    pip_install(clone, tmp_path / "target")
    assert_installed_package_works(tmp_path / "target")


@pytest.mark.slow
def test_pip_installs_from_an_sdist(tmp_path):
    clone = clone_of_the_working_tree(tmp_path / "clone")
    dist = tmp_path / "dist"
    # PEP 517's own hook, as `python -m build --sdist --no-isolation` calls it.
    subprocess.run([sys.executable, "-c", "import sys, setuptools.build_meta as b; "
                    "b.build_sdist(sys.argv[1])", str(dist)], cwd=clone, check=True,
                   env={**os.environ, "CORR2D_CUDA": "0"}, capture_output=True)
    (sdist,) = dist.glob("corr2d_ext-*.tar.gz")
    with tarfile.open(sdist) as tar:  # names under the top folder corr2d_ext-VERSION/
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    sources = {p.relative_to(clone).as_posix() for p in (clone / "csrc").rglob("*")
               if p.is_file()}
    assert any(n.endswith(".h") for n in sources)
    assert sources <= names, f"missing from the sdist: {sorted(sources - names)}"
    assert {"README.md", "pyproject.toml", "setup.py", "corr2d_ext/py.typed"} <= names
    pip_install(sdist, tmp_path / "target")
    assert_installed_package_works(tmp_path / "target")
