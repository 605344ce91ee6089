"""The wheel and the sdist carry the generated sync code and install and import on their own."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.fresh_env import ROOT, copy_source_tree, outside_env, run

PACKAGE = ROOT / "src" / "pyrate_limiter"

BACKENDS = ("redis", "sqlite", "postgres")  # one per extra
# Both flavours and every extra's backend must import once installed; the rest of the package must too.
REQUIRED_MODULES = [
    "pyrate_limiter._async.limiter",
    "pyrate_limiter._sync.limiter",
    *(f"pyrate_limiter.{flavour}.buckets.{backend}" for flavour in ("_async", "_sync") for backend in BACKENDS),
]

IMPORT_CHECK = """
import importlib, pkgutil, sys
import anyio
import pyrate_limiter
from pyrate_limiter import AsyncLimiter, Duration, Limiter, Rate

for name in sys.argv[1:]:
    importlib.import_module(name)
for module in pkgutil.walk_packages(pyrate_limiter.__path__, "pyrate_limiter."):
    importlib.import_module(module.name)

with Limiter(Rate(1, Duration.SECOND), raise_when_fail=False) as limiter:
    assert limiter.try_acquire("k") and not limiter.try_acquire("k")

async def acquire_twice() -> None:
    async with AsyncLimiter(Rate(1, Duration.SECOND), raise_when_fail=False) as limiter:
        assert await limiter.try_acquire("k") and not await limiter.try_acquire("k")

for backend in ("asyncio", "trio"):
    anyio.run(acquire_twice, backend=backend)
print(pyrate_limiter.__file__)
"""


class Dists(NamedTuple):
    wheel: Path  # built from the source tree
    sdist: Path
    sdist_wheel: Path  # built from the sdist alone


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    # Build in a copy: the build hook regenerates _sync/ inside the tree it builds.
    tree = copy_source_tree(tmp_path_factory.mktemp("tree"))
    out, from_sdist = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("dist-from-sdist")
    pip_wheel = (sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation")
    run(*pip_wheel, "-w", out, ".", cwd=tree)
    run(sys.executable, "-c", f"import hatchling.build; hatchling.build.build_sdist({str(out)!r})", cwd=tree)
    (wheel,), (sdist,) = out.glob("*.whl"), out.glob("*.tar.gz")
    run(*pip_wheel, "-w", from_sdist, sdist, cwd=from_sdist)
    (sdist_wheel,) = from_sdist.glob("*.whl")
    return Dists(wheel, sdist, sdist_wheel)


@pytest.fixture(scope="module", params=["wheel", "sdist"])
def installed(request: pytest.FixtureRequest, dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv (the machine's python3, no pip, no site packages) with the package and all extras."""
    wheel = dists.wheel if request.param == "wheel" else dists.sdist_wheel
    venv = tmp_path_factory.mktemp(f"venv-{request.param}")
    env = outside_env()
    python3 = shutil.which("python3", path=env["PATH"])
    assert python3, "no python3 on PATH"
    run(python3, "-m", "venv", "--without-pip", venv, cwd=venv, env=env)
    python = venv / "bin" / "python"
    # The dev venv's pip installs into the new one (--python), which saves seeding pip there.
    pip_install = (sys.executable, "-m", "pip", "--python", python, "install", "-q")
    run(*pip_install, f"{wheel}[all]", cwd=venv, env=env)
    probe = subprocess.run([python, "-I", "-c", "import psycopg"], cwd=venv, capture_output=True, text=True)
    if probe.returncode and "libpq" in probe.stderr:  # no system libpq: psycopg ships its own in [binary]
        run(*pip_install, "psycopg[binary]", cwd=venv, env=env)
    return python


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def sdist_names(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as archive:
        # Drop the "pyrate_limiter-<version>/" prefix every member carries.
        return {name.partition("/")[2] for name in archive.getnames()}


def driver_files() -> set[str]:
    """The files the drivers load at import (``_drivers/*.sql``, ``*.lua``), relative to the package."""
    return {path.relative_to(PACKAGE).as_posix() for pattern in ("*.sql", "*.lua") for path in PACKAGE.rglob(pattern)}


def twin_modules() -> set[str]:
    """Every module the generated sync variant must hold, named from the async source."""
    return {path.relative_to(PACKAGE / "_async").as_posix() for path in (PACKAGE / "_async").rglob("*.py")}


def test_wheel_ships_generated_sync_code_and_py_typed(dists: Dists) -> None:
    for wheel in (dists.wheel, dists.sdist_wheel):
        names = wheel_names(wheel)
        missing = {f"pyrate_limiter/_sync/{m}" for m in twin_modules()} - names
        assert not missing, f"{wheel.name} lacks {sorted(missing)}"
        assert "pyrate_limiter/py.typed" in names


def test_wheel_and_sdist_ship_the_sql_and_lua_files(dists: Dists) -> None:
    assert {"_drivers/sqlite.sql", "_drivers/redis.lua", "_drivers/postgres.sql"} <= driver_files()
    for wheel in (dists.wheel, dists.sdist_wheel):
        missing = {f"pyrate_limiter/{f}" for f in driver_files()} - wheel_names(wheel)
        assert not missing, f"{wheel.name} lacks {sorted(missing)}"
    missing = {f"src/pyrate_limiter/{f}" for f in driver_files()} - sdist_names(dists.sdist)
    assert not missing, f"{dists.sdist.name} lacks {sorted(missing)}"


def test_sdist_ships_generated_sync_code_py_typed_and_its_build_hook(dists: Dists) -> None:
    names = sdist_names(dists.sdist)
    missing = {f"src/pyrate_limiter/_sync/{m}" for m in twin_modules()} - names
    assert not missing, f"{dists.sdist.name} lacks {sorted(missing)}"
    assert {"src/pyrate_limiter/py.typed", "scripts/hatch_build.py", "scripts/run_unasync.py"} <= names


def test_wheel_built_from_the_sdist_matches_the_one_built_from_the_tree(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as tree, zipfile.ZipFile(dists.sdist_wheel) as sdist:
        assert sorted(tree.namelist()) == sorted(sdist.namelist())
        differing = [name for name in tree.namelist() if tree.read(name) != sdist.read(name)]
        assert not differing


def test_installed_package_imports_both_flavours_and_every_backend(installed: Path, tmp_path: Path) -> None:
    # -I and an empty cwd: nothing but the venv's site-packages is on the path.
    location = run(installed, "-I", "-c", IMPORT_CHECK, *REQUIRED_MODULES, cwd=tmp_path).strip()
    assert Path(location).is_relative_to(installed.parent.parent / "lib")
