"""Whole-archive conversion (issue 27): throughput, 1 -> 2 worker scaling, no-op rerun, projection.

Run: ``python benchmarks/bench_archive.py [--out docs/benchmarks-archive.md] [--ssc1 3] [--ssc11 3]``

A synthetic download (``sscxr.testing.archives``, small presets) of ``--ssc1`` ssc-1 sessions
with raw TIFFs and whisker videos (one of them as ``.tar.gz``) and ``--ssc11`` ssc-11 animals is
written once, then in the same run converted with ``--raw`` by
``sscxr_conversion.convert_archive`` on a LocalCluster of 1 worker and of 2 workers (one thread
each, so a worker is one core), each into a fresh store root; then the 2-worker root is
converted again (a no-op rerun: every unit skipped). Peak memory per worker is each worker
process's peak RSS (``ru_maxrss``) at the end of its run. Measurement details go to
``benchmarks/NOTES.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from _machine import machine_markdown

WORK = Path(__file__).parent / ".work" / "archive"
REAL_GB = 267  # ssc-1 ~154 GB + ssc-11 ~113 GB (CRCNS)


def write_download(root: Path, n_ssc1: int, n_ssc11: int) -> Path:
    from sscxr.testing.archives import write_ssc1_session, write_ssc11_animal

    arc = root / "crcns_upload_for_manuscript"
    if arc.exists():
        return arc
    scratch = root / "scratch"
    arc.mkdir(parents=True, exist_ok=True)
    for i in range(n_ssc1):
        animal, date = f"an2297{10 + i}", f"2013_12_{1 + i:02d}"
        if i == 0:
            t = write_ssc1_session(scratch / f"{animal}_{date}", animal=animal, date=date, preset="small", seed=i,
                                   tar="tar.gz")
            shutil.move(str(t.tar_path), arc / t.tar_path.name)
        else:
            write_ssc1_session(arc / f"{animal}_{date}", animal=animal, date=date, preset="small", seed=i)
    for i in range(n_ssc11):
        write_ssc11_animal(arc / "ssc-11", animal=f"an27{4424 + i}", preset="small", seed=10 + i,
                           cells_per_plane=60, trials_per_day=40, image_size=256)
    shutil.rmtree(scratch, ignore_errors=True)
    return arc


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(arc: Path, dest: Path, workers: int) -> dict:
    import dask
    from distributed import Client, LocalCluster

    from sscxr_conversion import ConversionSpec, convert_archive
    from sscxr_conversion.tasks import _cluster_config

    shutil.rmtree(dest, ignore_errors=True)
    with dask.config.set(_cluster_config(str(dest))):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    try:
        t0 = time.perf_counter()
        report = convert_archive(arc, str(dest), spec=ConversionSpec(raw=True), client=client, progress=False,
                                 verbose=False)
        seconds = time.perf_counter() - t0
        peaks = sorted(client.run(_peak_rss_mb).values())
        cpu = sum(client.run(_cpu_seconds).values())
    finally:
        client.close()
        cluster.close()
    assert report.exit_code == 0, report.summary()
    return {"workers": workers, "seconds": seconds, "read": sum(u.bytes_read for u in report.units),
            "written": sum(u.bytes_written for u in report.units), "peak_mb": peaks, "worker_cpu_s": cpu,
            "units": {u.unit: [u.status, round(u.seconds, 2), u.bytes_read] for u in report.units}}


def rerun(arc: Path, dest: Path) -> dict:
    from sscxr_conversion import ConversionSpec, convert_archive

    t0 = time.perf_counter()
    report = convert_archive(arc, str(dest), spec=ConversionSpec(raw=True), workers=2, progress=False,
                             verbose=False)
    seconds = time.perf_counter() - t0
    assert all(u.status == "skipped" for u in report.units), report.summary()
    return {"seconds": seconds}


def markdown(arc_bytes: int, n_units: int, one: dict, two: dict, again: dict) -> str:
    gb_min = lambda r: r["read"] / 1e9 / (r["seconds"] / 60)  # noqa: E731
    per_core = (two["read"] / 1e9) / (two["worker_cpu_s"] / 60)  # GB per CPU-minute of the workers
    scaling = one["seconds"] / two["seconds"]
    eff = scaling / 2
    lines = [
        "# Whole-archive conversion benchmark",
        "",
        f"Produced by `python benchmarks/bench_archive.py --out docs/benchmarks-archive.md` (details in "
        "`benchmarks/NOTES.md`).",
        "",
        f"Synthetic download: {n_units} units ({arc_bytes / 1e6:.0f} MB of source: ssc-1 `small` sessions with raw "
        "TIFFs and videos, one as `.tar.gz`; ssc-11 animals), converted with `--raw` by `convert_archive` on a "
        "LocalCluster of one-thread workers, same run.",
        "",
        "| run | time (s) | read | throughput (GB/min) | written | peak RSS per worker (MB) | worker CPU (s) "
        "| cores busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in (one, two):
        lines.append(f"| {r['workers']} worker(s) | {r['seconds']:.1f} | {r['read'] / 1e6:.0f} MB | {gb_min(r):.2f} | "
                     f"{r['written'] / 1e6:.0f} MB | {', '.join(f'{p:.0f}' for p in r['peak_mb'])} | "
                     f"{r['worker_cpu_s']:.1f} | {r['worker_cpu_s'] / r['seconds']:.2f} |")
    lines += [
        f"| no-op rerun | {again['seconds']:.2f} | 0 | - | 0 (report only) | - | - | - |",
        "",
        f"- scaling 1 -> 2 workers: **{scaling:.2f}x** (aim >= 1.7x)",
        f"- no-op rerun: **{100 * again['seconds'] / two['seconds']:.1f}%** of the 2-worker first run (aim < 5%)",
        f"- per-core throughput (source GB per CPU-minute of the workers, 2-worker run): **{per_core:.2f} GB/min**",
        "",
        "Projection for the real archive (267 GB: ssc-1 ~154 GB incl. raw, ssc-11 ~113 GB):",
        "",
        "| cores | assumed efficiency | projected time |",
        "|---|---|---|",
    ]
    for cores in (16, 64):
        minutes = REAL_GB / (per_core * cores * eff)
        lines.append(f"| {cores} | {eff:.2f} (as measured 1 -> 2) | {minutes:.0f} min |")
    lines += [
        "",
        "Assumptions: the per-core throughput of this synthetic archive holds for the real files (real "
        "ssc-1 sessions are mostly raw TIFF bytes, as here; ssc-11 is processed MAT only); the 1 -> 2 "
        "scaling efficiency holds up to 16 and 64 cores, i.e. the source disk and the destination "
        "(local disk or S3) keep up with 16-64x this rate and no core is lost to the driver; every "
        "unit's work spreads over the cluster (raw blocks and subvolume tasks), so the 21 units "
        "keep 64 cores busy except at the end, when the largest session (~30 GB) finishes alone: "
        "the 64-core figure is a lower bound on time.",
        "",
        machine_markdown(),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--ssc1", type=int, default=3)
    ap.add_argument("--ssc11", type=int, default=3)
    ap.add_argument("--from-results", action="store_true", help="rewrite the markdown from the last results.json")
    args = ap.parse_args()
    if args.from_results:
        r = json.loads((WORK / "results.json").read_text())
        text = markdown(r["arc_bytes"], r["n_units"], r["one"], r["two"], r["rerun"])
        print(text)
        if args.out:
            Path(args.out).write_text(text)
        return
    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    arc = write_download(WORK / "download", args.ssc1, args.ssc11)
    from sscxr_conversion import find_units

    units, _ = find_units(arc)
    arc_bytes = sum(u.size for u in units)
    print(f"archive: {len(units)} units, {arc_bytes / 1e6:.0f} MB (written in {time.perf_counter() - t0:.0f} s)",
          file=sys.stderr)
    one = run(arc, WORK / "stores-1", 1)
    print(json.dumps(one), file=sys.stderr)
    two = run(arc, WORK / "stores-2", 2)
    print(json.dumps(two), file=sys.stderr)
    again = rerun(arc, WORK / "stores-2")
    print(json.dumps(again), file=sys.stderr)
    text = markdown(arc_bytes, len(units), one, two, again)
    print(text)
    (WORK / "results.json").write_text(json.dumps({"one": one, "two": two, "rerun": again, "arc_bytes": arc_bytes,
                                                   "n_units": len(units)}, indent=1))
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
