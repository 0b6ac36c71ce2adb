"""The whole synthetic dataset on 1 and 2 dask workers: map_catalog vs a plain client.map loop (issue 28).

Run: ``python benchmarks/bench_dataset.py [--sessions 3] [--animals 4] [--out docs/benchmarks-dataset.md]``

1. Writes synthetic ssc-1 sessions and ssc-11 animals (``sscxr.testing.archives``, ``small``
   presets without raw TIFFs or video, sizes below) and converts each with
   ``sscxr_conversion.convert`` into ``benchmarks/.work/dataset/stores`` (kept between runs);
   ``sscxr.catalog.build_catalog`` makes the catalog.
2. For 1 and then 2 workers (``LocalCluster(n_workers=k, threads_per_worker=1)``, fresh each time),
   the per-cell touch response (``event_response(align_to="first_touch")``, trial mean; pre vs
   post for ssc-11) of every entry, three ways, interleaved:

   - ``map_catalog``: ``sscxr.map_catalog(func, cat, client=client)``;
   - ``client.map``: ``client.map(one_store, urls)``, a task that opens the store with
     ``sscxr.open_store(url, chunks="analysis")`` and computes the same, as one would write it
     without ``map_catalog``;
   - ``client graph``: the stores opened here (``chunks="analysis"``), the lazy results built
     here and computed with ``client.compute``: every block is a scheduler task.

   Measured: wall time, tasks the scheduler ran, bytes each worker process read (``rchar`` of
   ``/proc/<pid>/io``) and its CPU time (idle fraction = 1 - CPU s / (wall s x threads)).
3. Projects the task count and pickled graph size for the real ssc-11 dataset (16 animals x 6
   subvolumes x 4 conditions, 1,500 cells x 45,150 frames per subvolume) from graphs built on
   real-shape stores that hold metadata only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
WORK = Path(__file__).parent / ".work" / "dataset"
SESSIONS = ["an197522_2013_03_08", "an197522_2013_03_10", "an229717_2013_12_01", "an229719_2013_12_02",
            "an229719_2013_12_05"]  # fmt: skip
ANIMALS = ["an250220", "an257220", "an258836", "an271211", "an274424", "an272761", "an274577", "an275801"]
SSC1 = {"preset": "small", "raw": False, "video": False, "cells_per_plane": 100, "n_trials": 90}
SSC11 = {"preset": "small", "cells_per_plane": 60, "trials_per_day": 20}


def touch_response(tree: Any, meta: dict[str, Any]) -> Any:
    """Per cell the trial mean of dF/F 0-1 s after the first touch minus 1-0 s before; ssc-11: pre and post."""
    cond = {"condition": ["pre", "post_touch"]} if meta["archive"] == "ssc-11" else {}
    r = tree.sscx.event_response("dff", align_to="first_touch", **cond)
    return r.response.mean("trial").rename("touch_response")


def one_store(url: str, archive: str) -> Any:
    """The plain way: open, analyse, compute, tabulate, in one task."""
    import dask

    import sscxr

    tree = sscxr.open_store(url, chunks="analysis")
    with dask.config.set(scheduler="sync"):
        return touch_response(tree, {"archive": archive}).compute().to_dataframe().reset_index()


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def build(n_sessions: int, n_animals: int) -> tuple[str, list[str]]:
    from sscxr.testing.archives import write_ssc1_session, write_ssc11_animal
    from sscxr_conversion import convert

    stores = WORK / "stores"
    stores.mkdir(parents=True, exist_ok=True)
    names = []
    for i, name in enumerate(SESSIONS[:n_sessions]):
        if not (stores / f"{name}.zarr" / "zarr.json").exists():
            animal, date = name.split("_", 1)
            kw = {k: v for k, v in SSC1.items() if k != "preset"}
            truth = write_ssc1_session(WORK / "src" / name, animal=animal, date=date, preset=SSC1["preset"], seed=i,
                                       **kw)  # fmt: skip
            convert(truth.mat_path, str(stores / f"{name}.zarr"), overwrite=True, progress=False)
        names.append(name)
    for i, name in enumerate(ANIMALS[:n_animals]):
        if not (stores / f"{name}.zarr" / "zarr.json").exists():
            kw = {k: v for k, v in SSC11.items() if k != "preset"}
            write_ssc11_animal(WORK / "src", animal=name, preset=SSC11["preset"], seed=10 + i, **kw)
            convert(WORK / "src" / name, str(stores / f"{name}.zarr"), overwrite=True, progress=False)
        names.append(name)
    return str(stores), names


# --------------------------------------------------------------------------------------------
# measuring a cluster
# --------------------------------------------------------------------------------------------


def _worker_counters() -> dict[str, float]:
    import psutil

    proc = psutil.Process()
    io = proc.io_counters()
    cpu = proc.cpu_times()
    return {"rchar": float(getattr(io, "read_chars", io.read_bytes)), "cpu": cpu.user + cpu.system}


class TaskCounter:
    """Scheduler plugin: counts the tasks that reach ``memory``."""

    name = "bench-task-counter"

    def __init__(self) -> None:
        self.done = 0

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "memory":
            self.done += 1


def measure(client: Any, run: Any) -> dict[str, Any]:
    from distributed import get_task_stream

    before = client.run(_worker_counters)
    tasks0 = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins[TaskCounter.name].done)
    load0 = os.getloadavg()[0]
    with get_task_stream(client) as stream:
        t0 = time.perf_counter()
        out = run()
        wall = time.perf_counter() - t0
    durations = [sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute") for t in stream.data]
    after = client.run(_worker_counters)
    tasks = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins[TaskCounter.name].done) - tasks0
    threads = client.nthreads()
    read = {w: after[w]["rchar"] - before[w]["rchar"] for w in after}
    cpu = {w: after[w]["cpu"] - before[w]["cpu"] for w in after}
    idle = 1 - sum(cpu.values()) / (wall * sum(threads.values()))
    return {"wall": wall, "tasks": tasks, "read_mb": {w: r / 1e6 for w, r in read.items()}, "idle": idle,
            "rows": len(out), "durations": durations, "load": (load0 + os.getloadavg()[0]) / 2}  # fmt: skip


def makespan(durations: list[float], workers: int) -> float:
    """Longest-first greedy schedule of the tasks on ``workers`` single-thread workers."""
    loads = [0.0] * workers
    for d in sorted(durations, reverse=True):
        loads[loads.index(min(loads))] += d
    return max(loads)


def run_modes(n_workers: int, cat: Any, names: list[str], urls: dict[str, str], repeat: int) -> dict[str, list]:
    from distributed import Client, LocalCluster
    from distributed.diagnostics.plugin import SchedulerPlugin

    import sscxr

    results: dict[str, list] = {"map_catalog": [], "client.map": [], "client graph": []}
    archives = {n: cat[n].metadata["archive"] for n in names}
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:  # fmt: skip
        client.register_plugin(type("Counter", (TaskCounter, SchedulerPlugin), {})())

        def via_map_catalog() -> Any:
            return sscxr.map_catalog(touch_response, cat, names=names, client=client, progress=False)

        def via_client_map() -> Any:
            import pandas as pd

            futures = client.map(one_store, [urls[n] for n in names], [archives[n] for n in names], pure=False)
            return pd.concat(client.gather(futures))

        def via_client_graph() -> Any:
            lazy = [touch_response(sscxr.open_store(urls[n], chunks="analysis"), {"archive": archives[n]})
                    for n in names]  # fmt: skip
            return [r for r in client.gather(client.compute(lazy))]

        client.run(lambda: __import__("sscxr").dataset._OPENED.clear())
        via_client_map()  # warm the workers' imports
        for i in range(repeat):
            client.run(lambda: __import__("sscxr").dataset._OPENED.clear())  # first open each time
            for name, fn in (("map_catalog", via_map_catalog), ("client.map", via_client_map),
                             ("client graph", via_client_graph)):  # fmt: skip
                results[name].append(measure(client, fn))
    return results


# --------------------------------------------------------------------------------------------
# the real dataset, projected
# --------------------------------------------------------------------------------------------


def projection(cells: int = 1500, frames: int = 45150, chunk: tuple[int, int] = (32, 512)) -> dict[str, Any]:
    """One real-shape ssc-11 condition node (6 subvolumes), metadata and small arrays only:
    tasks and pickled size of ``event_response(subvolume="all")``, per subvolume."""
    import cloudpickle
    import dask
    import dask.array as da
    import xarray as xr
    import zarr

    import sscxr
    from sscxr.testing.stores import make_animal_tree

    small = make_animal_tree(n_subvolumes=6, n_cells=4, n_days=2, trials_per_day=3, conditions=("pre",))
    tmp = tempfile.mkdtemp()
    url = f"{tmp}/an274424.zarr"
    tree = {}
    for node in small.subtree:
        ds = node.to_dataset(inherit=False)
        if (node.name or "").startswith("subvolume_"):
            planes = ds.plane.values
            time_s = np.arange(frames) / 7.0
            ds = xr.Dataset(
                {"dff": (("cell", "time"), da.zeros((cells, frames), chunks=chunk), ds.dff.attrs),
                 "frame_time": (("plane", "time"), time_s[None, :] + planes[:, None] * 0.01)},
                coords={"cell": np.arange(cells) + 10000 * int(node.name[-1]), "time": time_s, "plane": planes,
                        "cell_plane": ("cell", np.resize(planes, cells)),
                        "trial": ("time", np.repeat(ds.trial.values[ds.trial.values >= 0][:1], frames))},
                attrs=ds.attrs)  # fmt: skip
        tree[node.path] = ds
    tree_obj = xr.DataTree.from_dict(tree)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enc = {p: {"dff": {"chunks": chunk, "write_empty_chunks": False}} for p in tree if "subvolume_" in p}
        tree_obj.to_zarr(url, mode="w", compute=False, encoding=enc, consolidated=False)  # dff never written
        root = zarr.open_group(url, mode="r+", use_consolidated=False)
        root.attrs.update(sscxr_status="complete")
        zarr.consolidate_metadata(url)
    opened = sscxr.open_store(url, chunks="analysis", validate=False)
    resp = opened.sscx.event_response("dff", align_to="pole_in", condition="pre", subvolume="all")
    graph = dict(resp.__dask_graph__())
    (optimized,) = dask.optimize(resp)
    blocks = len(opened["pre/subvolume_1"].dff.data.chunks[0])
    size = len(cloudpickle.dumps(graph))
    store_chunks = sscxr.open_store(url, chunks="auto", validate=False)
    one = store_chunks.sscx.event_response("dff", align_to="pole_in", condition="pre", subvolume=1)
    auto_tasks = len(dict(dask.optimize(one)[0].__dask_graph__()))
    shutil.rmtree(tmp, ignore_errors=True)
    return {"tasks_per_node": len(graph), "optimized_per_node": len(dict(optimized.__dask_graph__())),
            "subvolumes": 6, "blocks": blocks, "bytes_per_node": size, "block_mb": cells / blocks * frames * 8 / 1e6,
            "auto_tasks_per_subvolume": auto_tasks}  # fmt: skip


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def report(args: Any, names: list[str], runs: dict[int, dict[str, list]], proj: dict[str, Any], setup: float) -> str:
    from _machine import machine_markdown

    lines = [
        "# Whole-dataset analysis on dask.distributed: map_catalog vs client.map",
        "",
        f"Generated by `python benchmarks/bench_dataset.py --sessions {args.sessions} --animals {args.animals} "
        f"--repeat {args.repeat}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (data ready in {setup:.0f} s).",
        "",
        machine_markdown(),
        "",
        f"Data: {args.sessions} ssc-1 sessions (`small` preset, {SSC1['cells_per_plane'] * 9} cells in 3 subvolumes, "
        f"{SSC1['n_trials']} trials) and {args.animals} ssc-11 animals (`small`, 2 subvolumes x "
        f"{SSC11['cells_per_plane'] * 3} cells, pre + post_touch, 3 days x {SSC11['trials_per_day']} trials), "
        "converted with `sscxr_conversion.convert` to local stores; entries: " + ", ".join(names) + ".",
        "Analysis per entry: `event_response(\"dff\", align_to=\"first_touch\")` (ssc-11: `condition=[\"pre\", "
        "\"post_touch\"]`), mean over trials per cell. Times are medians of the repetitions; every repetition "
        "opens the stores anew on the workers.",
        "",
        "| way | workers | wall s | tasks | MB read per worker | idle fraction | scaling efficiency | bound | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for way in ("map_catalog", "client.map", "client graph"):
        walls = {k: statistics.median(r["wall"] for r in runs[k][way]) for k in runs}
        for k in sorted(runs):
            rs = runs[k][way]
            read = " / ".join(f"{statistics.median(r['read_mb'][w] for r in rs):.0f}" for w in sorted(rs[0]["read_mb"]))
            eff = f"{walls[1] / (k * walls[k]):.2f}" if k > 1 and 1 in walls else "-"
            ones = runs[1][way] if 1 in runs else rs
            bound = statistics.median(sum(r["durations"]) / (k * makespan(r["durations"], k)) for r in ones)
            lines.append(f"| {way} | {k} | {walls[k]:.2f} | {rs[0]['tasks']} | {read} | "
                         f"{statistics.median(r['idle'] for r in rs):.2f} | {eff} | {bound:.2f} | "
                         f"{statistics.median(r['load'] for r in rs):.1f} |")  # fmt: skip
    n_nodes = 16 * 4
    lines += [
        "",
        "Scaling efficiency = wall(1 worker) / (2 x wall(2 workers)). Bound = the best efficiency the tasks "
        "allow: their compute times on 1 worker (scheduler task stream) packed longest-first on k workers, "
        "sum / (k x makespan). Idle fraction = 1 - worker CPU s / (wall s x threads), all workers together. "
        "MB read = bytes each worker process read (`rchar` of `/proc/<pid>/io`; workers warmed first). "
        "Load = the machine's 1-minute load average during the run (2 cores, shared with other jobs: above 2, "
        "workers wait for a core, which shows as idle time and lowers the efficiency).",
        "",
        "## The real ssc-11 dataset, projected",
        "",
        f"A real-shape condition node (6 subvolumes of 1,500 cells x 45,150 frames, dF/F float64 in store chunks of "
        f"32 x 512; metadata only, nothing written) opened with `chunks=\"analysis\"`: {proj['blocks']} blocks of "
        f"{proj['block_mb']:.0f} MB per subvolume. `event_response(subvolume=\"all\")` of the node is "
        f"{proj['tasks_per_node']} tasks as built, {proj['optimized_per_node']} after dask's optimisation (what the "
        f"scheduler receives): {proj['optimized_per_node'] / 6:.0f} per subvolume; "
        f"{proj['bytes_per_node'] / 1e3:.0f} kB pickled (cloudpickle of the graph). With the store's own chunks "
        f"(`chunks=\"auto\"`) one subvolume alone is {proj['auto_tasks_per_subvolume']:,} tasks.",
        "",
        "| real ssc-11 dataset (16 animals x 4 conditions x 6 subvolumes) | scheduler tasks | pickled graph |",
        "|---|---|---|",
        f"| one client-side graph, `chunks=\"analysis\"` (`client.compute` of every node) | "
        f"{proj['optimized_per_node'] * n_nodes:,} | {proj['bytes_per_node'] * n_nodes / 1e6:.1f} MB |",
        f"| the same with `chunks=\"auto\"` (store chunks) | {proj['auto_tasks_per_subvolume'] * 6 * n_nodes:,} | - |",
        f"| `map_catalog` (one task per animal; each builds and runs its graph on its worker) | 16 | "
        f"{proj['map_catalog_task_bytes'] * 16 / 1e3:.0f} kB (function + catalog entry per task) |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--animals", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    root, names = build(args.sessions, args.animals)
    from sscxr.catalog import build_catalog

    cat = build_catalog(root)(store_root=root)
    urls = {n: f"{root}/{n}.zarr" for n in names}
    setup = time.perf_counter() - t0
    print(f"data ready in {setup:.1f} s", flush=True)
    proj = projection()
    import cloudpickle

    proj["map_catalog_task_bytes"] = len(cloudpickle.dumps((touch_response, names[0], cat[names[0]], None,
                                                            "analysis", "sync")))  # fmt: skip
    print("projection", proj, flush=True)
    runs = {}
    for k in [int(x) for x in args.workers.split(",")]:
        runs[k] = run_modes(k, cat, names, urls, args.repeat)
        print(k, {w: [round(r["wall"], 2) for r in rs] for w, rs in runs[k].items()}, flush=True)
    text = report(args, names, runs, proj, setup)
    print(text)
    if args.out:
        write_between(Path(args.out), "bench_dataset", text)


def write_between(path: Path, name: str, text: str) -> None:
    """Replace the part of ``path`` between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` (or append it)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    old = path.read_text() if path.exists() else ""
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    if start in old and end in old:
        block = old[: old.index(start)] + block + old[old.index(end) + len(end) + 1:]
    else:
        block = old + ("\n" if old else "") + block
    path.write_text(block)


if __name__ == "__main__":
    main()
