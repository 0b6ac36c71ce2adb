"""Keep ``ci/oldest.txt`` and the declared lower bounds one and the same, and show what got installed.

``python ci/oldest.py check`` (run by ``ci/test-oldest`` inside the oldest environment):

1. every package pinned in ``ci/oldest.txt`` that ``pyproject.toml`` or
   ``conversion/pyproject.toml`` declares must be pinned at exactly its declared lower bound
   (``numpy>=1.26`` ↔ ``numpy==1.26.0``), and every declared lower bound of a package listed in
   :data:`CORE` must have a pin, so a bound nobody tested cannot slip in;
2. every pinned package must be installed at exactly its pinned version (pip honours ``-c``, but
   a reused environment may have drifted);

and prints one line per pinned package with the version found. Exit status 1 lists every problem.

``python ci/oldest.py key`` prints a digest of everything that decides the environment's contents
(the pins, both ``pyproject.toml`` files, the Python version), so a matching environment is reused.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # packaging is imported where needed: ``key`` runs before any environment exists
    from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "ci" / "oldest.txt"
PYPROJECTS = (ROOT / "pyproject.toml", ROOT / "conversion" / "pyproject.toml")

# packages whose lower bound must be proven here (a pin in ci/oldest.txt is required for them)
CORE = ("numpy", "xarray", "zarr", "numcodecs", "pandas", "fsspec", "s3fs", "obstore", "dask",
        "distributed", "scipy", "h5py")


def read_pins(path: Path = PINS) -> dict[str, Version]:
    """``{canonical name: version}`` from a constraints file of ``name==version`` lines."""
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pins: dict[str, Version] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)", line)
        if match is None:
            raise SystemExit(f"{path}:{number}: expected 'name==version', got {line!r}")
        pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


def declared_lower_bounds(paths: tuple[Path, ...] = PYPROJECTS) -> dict[str, tuple[Version, str]]:
    """``{canonical name: (lowest version allowed, where)}`` over every dependency with a ``>=``."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    bounds: dict[str, tuple[Version, str]] = {}
    for path in paths:
        project = tomllib.loads(path.read_text())["project"]
        groups = {"dependencies": project.get("dependencies", [])}
        groups |= {f"[{extra}]": reqs for extra, reqs in project.get("optional-dependencies", {}).items()}
        for group, requirements in groups.items():
            for text in requirements:
                requirement = Requirement(text)
                lows = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
                if lows:
                    where = f"{path.relative_to(ROOT)} {group}: {text}"
                    bounds[canonicalize_name(requirement.name)] = (max(lows), where)
    return bounds


def problems(pins: dict[str, Version], bounds: dict[str, tuple[Version, str]]) -> list[str]:
    """Every mismatch between the pins, the declared bounds and what is installed."""
    from packaging.version import Version

    found: list[str] = []
    for name, (low, where) in sorted(bounds.items()):
        if name in pins and pins[name] != low:
            found.append(f"{name}: pinned at {pins[name]} in ci/oldest.txt, but the lower bound is {low} "
                         f"({where}); make the two the same version")
        elif name not in pins and name in CORE:
            found.append(f"{name}: {where} has no pin in ci/oldest.txt, so its lower bound is untested")
    for name in CORE:
        if name not in pins and name not in bounds:
            found.append(f"{name}: core package without a pin in ci/oldest.txt")
    for name, pinned in sorted(pins.items()):
        try:
            installed = Version(version(name))
        except PackageNotFoundError:
            found.append(f"{name}: pinned at {pinned} in ci/oldest.txt but not installed")
            continue
        if installed != pinned:
            found.append(f"{name}: {installed} installed, but ci/oldest.txt pins {pinned} "
                         f"(delete the environment and run ci/test-oldest again)")
    return found


def environment_key() -> str:
    """Digest of the pins, both pyproject files and the interpreter: equal keys, same install."""
    digest = hashlib.sha256(sys.version.encode())
    for path in (PINS, *PYPROJECTS):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    if argv == ["key"]:
        print(environment_key())
        return 0
    if argv != ["check"]:
        print("usage: python ci/oldest.py check|key", file=sys.stderr)
        return 2
    pins = read_pins()
    print(f"oldest supported versions (ci/oldest.txt), Python {sys.version.split()[0]}:")
    for name, pinned in sorted(pins.items()):
        try:
            print(f"  {name:<14} {version(name)}")
        except PackageNotFoundError:
            print(f"  {name:<14} (not installed; pinned {pinned})")
    found = problems(pins, declared_lower_bounds())
    for line in found:
        print(f"ci/oldest.py: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
