"""The main job, end to end on an embedded default: ``sscxr demo``; and the demo stores.

synthetic ssc-1 archive (real layout) -> ``sscxr convert`` -> catalog entry -> lazy open ->
touch-aligned trial tensor -> plot.

:func:`demo_stores` builds, once, a folder of small converted stores (two ssc-1 sessions of one
animal, the first with raw frames and whisker video; two ssc-11 touch-ablation animals) that the
notebooks in ``docs/notebooks/`` fall back to when no store root is configured.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

ANIMAL, DATE = "an197522", "2013_03_08"
SESSION = f"{ANIMAL}_{DATE}"
SESSION_2 = f"{ANIMAL}_2013_03_10"
"""The second ssc-1 session of the demo stores (the same animal two days later; no raw media)."""
DEMO_ANIMAL = "an274424"
"""The ssc-11 animal of the demo stores (a touch-ablation animal, as in the catalog)."""
DEMO_ANIMAL_2 = "an274577"
"""The second ssc-11 animal: touch ablation too, its post condition named ``post`` as in the catalog."""
DEMO_UNITS = (SESSION, SESSION_2, DEMO_ANIMAL, DEMO_ANIMAL_2)
"""Every store of the demo folder: catalog entry names, so a whole-catalog analysis finds more than one."""
DEMO_DIR_ENV = "SSCXR_DEMO_DIR"
DEMO_VERSION = 2
"""Bumped when the demo stores change (archive presets, converter options): older caches are rebuilt."""
_DEMO_SSC1 = {"preset": "tiny", "n_trials": 24, "raw": True, "raw_subvolumes": (1,), "video": True,
              "n_video_trials": 4, "frames_per_tiff": 200}  # fmt: skip
_DEMO_SSC1_2 = {"preset": "tiny", "n_trials": 24}
_DEMO_SSC11 = {"preset": "tiny", "trials_per_day": 8}
_DEMO_SSC11_2 = {"preset": "tiny", "trials_per_day": 8, "conditions": ("pre", "post"), "post_kind": "touch",
                 "curation": "nyu"}  # seed 1: one cell near an ablated one, so near_ablated is not all False
_MARKER = "demo.json"


def write_archive(directory: str | Path, *, preset: str = "small") -> str:
    """Write the synthetic session archive into ``directory``; return an inventory as text."""
    from .testing.archives import write_ssc1_session

    directory = Path(directory)
    truth = write_ssc1_session(directory / SESSION, animal=ANIMAL, date=DATE, preset=preset, seed=0)
    files = sorted(p for p in (directory / SESSION).rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    lines = [f"synthetic ssc-1 session {SESSION} ({preset}): {len(files)} files, {total / 1e6:.1f} MB"]
    lines += [f"  {p.relative_to(directory)}  {p.stat().st_size / 1e6:.2f} MB" for p in files[:12]]
    if len(files) > 12:
        lines.append(f"  ... and {len(files) - 12} more")
    lines.append(f"  session file: {truth.mat_path.name}")
    return "\n".join(lines)


def run_demo(out: str | Path = "demo-output", *, preset: str = "small") -> Path:
    """Run the whole main job into ``out``; return the path of the saved plot."""
    from sscxr_conversion import convert, verify

    import sscxr

    from .plot import plot_trial_tensor

    out = Path(out).resolve()
    t0 = time.perf_counter()
    print(write_archive(out / "archive", preset=preset))
    src, store = out / "archive" / SESSION, out / "stores" / f"{SESSION}.zarr"
    result = convert(src, str(store), overwrite=True)
    verify(src, str(store))
    print(f"\nconverted and verified: {result}")
    cat = sscxr.open_catalog()(store_root=str(out / "stores"))  # the shipped catalog, local root
    session = cat[SESSION].read()
    print(f"\nopened through the catalog entry {SESSION!r}:\n{session}")
    subvolume = int(session["trials"].subvolume.to_series().loc[lambda s: s >= 0].iloc[0])
    tensor = session.sscx.trial_tensor("dff", subvolume=subvolume, align_to="first_touch", window=(-2.0, 4.0))
    print(f"\nfirst-touch aligned dF/F of subvolume {subvolume}:\n{tensor}")
    figure = out / "first_touch_dff.png"
    plot_trial_tensor(tensor, path=figure)
    print(f"\nplot saved: {figure}  ({time.perf_counter() - t0:.1f} s in all)")
    return figure


def demo_dir() -> Path:
    """Where :func:`demo_stores` builds by default: ``$SSCXR_DEMO_DIR``, else
    ``$XDG_CACHE_HOME/sscxr/demo-stores`` (``~/.cache/sscxr/demo-stores``)."""
    if os.environ.get(DEMO_DIR_ENV):
        return Path(os.environ[DEMO_DIR_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "sscxr" / "demo-stores"


def _demo_ready(folder: Path) -> bool:
    try:
        marker = json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("demo_version") == DEMO_VERSION and all((folder / f"{u}.zarr").exists() for u in DEMO_UNITS)


def demo_stores(folder: str | os.PathLike[str] | None = None, *, progress: bool = True) -> str:
    """A folder of small synthetic stores to try sscxr on; built once, then reused. Returns the folder.

    ``folder/an197522_2013_03_08.zarr`` is an ssc-1 session (2 subvolumes of 3 planes, 24 trials,
    raw frames of subvolume 1 and whisker videos: ``sscxr convert --raw``),
    ``folder/an197522_2013_03_10.zarr`` a second session of that animal (24 trials, no raw media),
    ``folder/an274424.zarr`` an ssc-11 animal (conditions ``pre`` and ``post_touch``, 3 ablated
    cells), ``folder/an274577.zarr`` another (``pre`` and ``post``, 3 ablated cells, 1 near one,
    NYU curation files only), and ``folder/catalog.yaml`` the catalog with all four pinned
    (``sscxr.open_catalog(folder + "/catalog.yaml")(store_root=folder)``). The synthetic archives
    (``sscxr.testing.archives``, the real CRCNS layout) are written to a temporary folder and
    converted by ``sscxr_conversion.convert`` (needs ``pip install ./conversion``); ``progress``
    shows the conversions' progress bars. Default ``folder``: :func:`demo_dir`.

    >>> root = demo_stores()                                                  # doctest: +SKIP
    >>> session = sscxr.open_catalog()(store_root=root)["an197522_2013_03_08"].read()  # doctest: +SKIP
    """
    out = Path(folder).expanduser() if folder is not None else demo_dir()
    if _demo_ready(out):
        return str(out)
    from sscxr_conversion import ConversionSpec, convert

    from .catalog import build_catalog
    from .testing.archives import write_ssc1_session, write_ssc11_animal

    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="sscxr-demo-") as tmp:
        src = Path(tmp)
        write_ssc1_session(src / SESSION, animal=ANIMAL, date=DATE, seed=0, **_DEMO_SSC1)
        convert(src / SESSION, str(out / f"{SESSION}.zarr"), spec=ConversionSpec(raw=True), overwrite=True,
                progress=progress)
        write_ssc1_session(src / SESSION_2, animal=ANIMAL, date=SESSION_2.removeprefix(f"{ANIMAL}_"), seed=1,
                           **_DEMO_SSC1_2)
        convert(src / SESSION_2, str(out / f"{SESSION_2}.zarr"), overwrite=True, progress=progress)
        write_ssc11_animal(src, animal=DEMO_ANIMAL, seed=0, **_DEMO_SSC11)
        convert(src / DEMO_ANIMAL, str(out / f"{DEMO_ANIMAL}.zarr"), overwrite=True, progress=progress)
        write_ssc11_animal(src, animal=DEMO_ANIMAL_2, seed=1, **_DEMO_SSC11_2)
        convert(src / DEMO_ANIMAL_2, str(out / f"{DEMO_ANIMAL_2}.zarr"), overwrite=True, progress=progress)
    build_catalog(str(out), out=str(out / "catalog.yaml"))
    (out / _MARKER).write_text(json.dumps({"demo_version": DEMO_VERSION, "units": list(DEMO_UNITS)}))
    return str(out)
