"""ssc-11 conversion cost vs only reading the same files (issue 5), same run, same machine.

Run: ``python benchmarks/bench_convert_ssc11.py [--preset full] [--set cells_per_plane=200 ...]
[--workers N] [--repeat 2] [--out docs/benchmarks-conversion-ssc11.md]``

Two synthetic animals of the same size are written: every file MAT v5, and every file v7.3.
For each, in fresh Python processes (alternating, ``--repeat`` times, best time kept):

- **read**: every ``an*sess_struct.mat`` of the animal loaded whole, the way a Python user would:
  ``scipy.io.loadmat(squeeze_me=True, struct_as_record=False)`` for v5, ``pymatreader.read_mat``
  for v7.3, plus for v7.3 the floor ``h5py``: every dataset of the file read once;
- **convert**: ``sscxr_conversion.convert`` of the animal folder to a fresh local store.

Peak memory is the process's peak RSS growth during the step (imports excluded).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from _machine import machine_markdown

WORK = Path(__file__).parent / ".work"
DEFAULTS = {"n_subvolumes": 2, "cells_per_plane": 200, "trials_per_day": 80}

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
mode, animal, store, workers = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
files = sorted(animal.glob("session_neuropilone_*/an*sess_struct.mat"))
if mode == "convert":
    import shutil
    from sscxr_conversion import convert
    shutil.rmtree(store, ignore_errors=True)
elif mode == "loadmat":
    import scipy.io
elif mode == "pymatreader":
    import pymatreader
else:
    import h5py
def h5_all(path):
    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            obj[()]
    with h5py.File(path, "r") as f:
        f.visititems(visit)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if mode == "convert":
    convert(animal, store, overwrite=True, progress=False, workers=workers or None)
for path in files if mode != "convert" else []:
    if mode == "loadmat":
        scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    elif mode == "pymatreader":
        pymatreader.read_mat(str(path))
    else:
        h5_all(path)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mb": (peak - before) / 1024}))
"""


def animal(preset: str, version: str, overrides: dict) -> Path:
    """The synthetic animal folder (written once, reused by later runs with the same settings).

    It is written by a child process: Linux carries a parent's peak RSS into its children's
    ``ru_maxrss``, so a large writer in this process would hide the measured peaks.
    """
    tag = "_".join(f"{k}{v}" for k, v in sorted(overrides.items()))
    folder = WORK / f"ssc11_{preset}_{tag}_v{version}"
    done = folder / ".complete"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        code = ("import sys, json; from sscxr.testing.archives import write_ssc11_animal; "
                "write_ssc11_animal(sys.argv[1], preset=sys.argv[2], seed=0, mat_versions=sys.argv[3], "
                "keep_truth=False, **json.loads(sys.argv[4]))")
        subprocess.run([sys.executable, "-c", code, str(folder), preset, version, json.dumps(overrides)], check=True)
        done.touch()
    return folder / "an274424"


def run(mode: str, src: Path, store: Path, workers: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(src), str(store), str(workers)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def source_bytes(src: Path) -> int:
    return sum(p.stat().st_size for p in src.glob("session_neuropilone_*/an*sess_struct.mat"))


def measure(src: Path, modes: list[str], repeat: int, workers: int) -> dict[str, dict]:
    store = WORK / f"{src.parent.name}.zarr"
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(repeat):
        for mode in modes:
            runs[mode].append(run(mode, src, store, workers))
    out = {m: {"seconds": min(r["seconds"] for r in rs), "peak_mb": min(r["peak_mb"] for r in rs)}
           for m, rs in runs.items()}
    out["store_mb"] = {"seconds": du(store) / 1e6, "peak_mb": 0.0}
    return out


def table(version: str, src: Path, res: dict[str, dict], baseline: str, repeat: int) -> list[str]:
    names = {"loadmat": "`scipy.io.loadmat` every file (baseline)", "pymatreader": "`pymatreader.read_mat` every file (baseline)",
             "h5py": "`h5py`: every dataset read once (floor)", "convert": "`sscxr convert` the animal folder"}
    rows = [f"### MAT v{version}: {source_bytes(src) / 1e6:.0f} MB of subvolume files", "",
            f"| step | best of {repeat} (s) | peak RSS growth (MB) |", "|---|---|---|"]
    rows += [f"| {names[m]} | {r['seconds']:.2f} | {r['peak_mb']:.0f} |" for m, r in res.items() if m in names]
    base, conv = res[baseline], res["convert"]
    rows += ["", f"- time ratio convert / {baseline}: **{conv['seconds'] / base['seconds']:.2f}x** (target <= 1.5x)",
             f"- memory ratio: **{conv['peak_mb'] / max(base['peak_mb'], 1):.2f}x**",
             f"- store {res['store_mb']['seconds']:.0f} MB vs sources {source_bytes(src) / 1e6:.0f} MB", ""]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="full")
    ap.add_argument("--set", nargs="*", default=[], help="Ssc11Params overrides, e.g. cells_per_plane=200")
    ap.add_argument("--workers", type=int, default=0, help="0: local threads; N: dask LocalCluster")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    overrides = {**DEFAULTS, **{k: int(v) for k, v in (s.split("=", 1) for s in args.set)}}
    how = "local threads" if not args.workers else f"dask LocalCluster, {args.workers} workers"
    text = [f"## ssc-11 conversion vs reading ({args.preset} preset with {overrides}, {how})", ""]
    v5 = animal(args.preset, "5", overrides)
    text += table("5", v5, measure(v5, ["loadmat", "convert"], args.repeat, args.workers), "loadmat", args.repeat)
    v73 = animal(args.preset, "7.3", overrides)
    res = measure(v73, ["pymatreader", "h5py", "convert"], args.repeat, args.workers)
    text += table("7.3", v73, res, "pymatreader", args.repeat)
    text += [f"- convert / h5py floor: **{res['convert']['seconds'] / res['h5py']['seconds']:.2f}x**", "",
             machine_markdown(), ""]
    print("\n".join(text))
    if args.out:
        path = Path(args.out)
        old = path.read_text() if path.exists() else "# ssc-11 conversion benchmarks\n\n"
        path.write_text(old.rstrip() + "\n\n" + "\n".join(text))


if __name__ == "__main__":
    main()
