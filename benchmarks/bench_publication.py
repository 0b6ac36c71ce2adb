"""The read cost of safe publication: a location (resolved through its pointer) vs its version URL.

Run: ``python benchmarks/bench_publication.py [--repeat 30] [--preset small]``

On a SeaweedFS server on loopback (never moto: docs/benchmarks-remote.md), the synthetic ssc-1
session is converted once; then ``sscxr.io.open_group(URL, "imaging/subvolume_NN")`` plus one
cell x 80 frames is timed ``--repeat`` times for each URL, interleaved, after one warm-up each.
Reading through the location costs one more GET (``DEST-versions/current.json``); issue 26 asks
for the one-group read path to stay within 1.5x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_markdown  # noqa: E402

NAME = "an197522_2013_03_08"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--preset", default="small")
    args = parser.parse_args()

    import sscxr.io as sio
    from sscxr.testing.archives import write_ssc1_session
    from sscxr.testing.s3 import SeaweedServer
    from sscxr_conversion import convert

    with SeaweedServer() as server, tempfile.TemporaryDirectory() as tmp:
        truth = write_ssc1_session(Path(tmp) / NAME, preset=args.preset, seed=5)
        url = server.url(server.make_bucket(), f"stores/{NAME}.zarr")
        options = server.storage_options()
        result = convert(truth.mat_path, url, storage_options=options, progress=False)
        group = next(k for k in sio.describe(url, storage_options=options) if k.startswith("imaging/subvolume_"))

        def timed(target: str) -> float:
            start = time.perf_counter()
            sio.open_group(target, group, storage_options=options).dff.isel(cell=3, time=slice(0, 80)).values
            return time.perf_counter() - start

        times: dict[str, list[float]] = {"location": [], "version": []}
        timed(url), timed(result.version_url)
        for _ in range(args.repeat):
            times["location"].append(timed(url))
            times["version"].append(timed(result.version_url))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(machine_markdown())
    print(f"\n| URL opened | median | min |\n|---|---|---|")
    print(f"| the location (resolved) | {med['location']:.4f} s | {min(times['location']):.4f} s |")
    print(f"| the version URL | {med['version']:.4f} s | {min(times['version']):.4f} s |")
    print(f"\nratio location / version: {med['location'] / med['version']:.2f}x (aim <= 1.5x)")


if __name__ == "__main__":
    main()
