"""The package layout promised in DESIGN.md: every subpackage listed, codeagent a namespace."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("agent", "tools", "backend", "bench", "tui", "sandbox", "evals", "xdg")


def listed_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def packages_on_disk() -> set[str]:
    found = set()
    for top in TOP_LEVEL:
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT).parts
            found.add(".".join(("codeagent", *parts)))
    return found


def test_every_package_on_disk_is_listed_in_pyproject():
    assert packages_on_disk() == listed_packages()


def test_codeagent_is_a_namespace_package():
    assert not (ROOT / "__init__.py").exists()


def test_data_files_are_declared():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = config["tool"]["setuptools"]["package-data"]
    for package, patterns in data.items():
        folder = ROOT.joinpath(*package.split(".")[1:])
        for pattern in patterns:
            assert list(folder.glob(pattern)), f"{package}: {pattern} matches nothing"


def test_every_kernel_source_ships():
    """The native kernels are compiled on the user's machine: a C file or a header it includes
    left out of the package data is a kernel that fails to build there."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = config["tool"]["setuptools"]["package-data"]
    for source in [*ROOT.rglob("*.c"), *ROOT.rglob("*.h")]:
        if ".git" in source.parts:
            continue
        package = ".".join(("codeagent", *source.parent.relative_to(ROOT).parts))
        assert any(source.match(pattern) for pattern in data.get(package, [])), (
            f"{source} is not package data"
        )
