"""The main job, end to end on an embedded default: ``sscxr demo``.

synthetic ssc-1 archive (real layout) -> ``sscxr convert`` -> catalog entry -> lazy open ->
touch-aligned trial tensor -> plot.
"""

from __future__ import annotations

import time
from pathlib import Path

ANIMAL, DATE = "an197522", "2013_03_08"
SESSION = f"{ANIMAL}_{DATE}"


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
