"""Safe publication under failure: conversions SIGKILLed at many points, readers during
overwrites, two writers, stale locks, and removed versions (``docs/publication.md``).

Every kill runs ``sscxr convert`` in a forked subprocess (:class:`KillRunner`) that SIGKILLs
itself at the n-th call of one function; then the location must (a) open as a complete store
whose every value verifies against one of the two sources, or refuse clearly; (b) refuse a
plain ``convert`` naming ``--resume`` / ``--overwrite``; (c) be finished by ``--resume``; and
(d) not be written at all by a ``--resume`` once complete.
"""

from __future__ import annotations

import os
import shutil
import warnings
from typing import Any

import numpy as np
import pytest

import sscxr
from sscxr._fastpath import disabled_by_environment
from sscxr.errors import IncompleteStoreError, StorageAccessError, StoreExistsError
from sscxr.testing.archives import write_ssc1_session, write_ssc11_animal
from sscxr.versions import LOCK, Location
from sscxr_conversion import convert, verify
from sscxr_conversion.testing import KillPoint, KillRunner

W, S, P = "sscxr_conversion.write", "sscxr_conversion.shards", "sscxr_conversion.publish:Publication"
FIN = f"{W}:finalise"
COLLECT = f"{P}.collect"


# --------------------------------------------------------------------------------------------
# sources and the harness, shared by the module
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two distinguishable ssc-1 sessions (same shape, other seeds) and one ssc-11 animal."""
    root = tmp_path_factory.mktemp("sources")
    a = write_ssc1_session(root / "a" / "an197522_2013_03_08", preset="tiny", seed=1)
    b = write_ssc1_session(root / "b" / "an197522_2013_03_08", preset="tiny", seed=2)
    c = write_ssc11_animal(root / "c", preset="tiny", seed=0)
    return {"A": str(a.mat_path), "B": str(b.mat_path), "C": str(c.animal_dir)}


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with KillRunner(tmp_path_factory.mktemp("killlogs")) as run:
        yield run


# --------------------------------------------------------------------------------------------
# one location on one backend: paths, listings, checks
# --------------------------------------------------------------------------------------------


class Where:
    """A location under test: local path or s3:// URL with its options and a listing of objects."""

    def __init__(self, url: str, options: dict[str, Any] | None = None, client: Any = None):
        self.url, self.options, self.client = url, options or None, client

    @property
    def argv_options(self) -> list[str]:
        import json

        public = {k: v for k, v in (self.options or {}).items() if k not in ("key", "secret")}
        return ["--storage-options", json.dumps(public)] if public else []

    @property
    def env(self) -> dict[str, str]:
        """Credentials for the command line go through the environment (on the command line they warn)."""
        if not self.options or "key" not in self.options:
            return {}
        return {"AWS_ACCESS_KEY_ID": self.options["key"], "AWS_SECRET_ACCESS_KEY": self.options["secret"]}

    def listing(self) -> dict[str, Any]:
        """Every object of the location with what changes when it is rewritten."""
        if self.client is None:
            out: dict[str, Any] = {}
            if os.path.islink(self.url):
                out["@link"] = os.readlink(self.url)
            base = self.url + "-versions"
            for folder, _, files in os.walk(base):
                for name in files:
                    st = os.stat(os.path.join(folder, name))
                    out[os.path.relpath(os.path.join(folder, name), base)] = (st.st_size, st.st_mtime_ns)
            return out
        bucket, _, prefix = self.url[len("s3://"):].partition("/")
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {o["Key"]: (o["ETag"], o["LastModified"]) for page in pages for o in page.get("Contents", [])}

    def lock_held(self) -> bool:
        return any(k.endswith(f"-versions/{LOCK}") or k == LOCK for k in self.listing())


def _open(where: Where, archive: str) -> Any:
    opener = sscxr.open_animal if archive == "ssc-11" else sscxr.open_session
    return opener(where.url, storage_options=where.options)


def _verifies(src: str, where: Where) -> bool:
    return verify(src, where.url, storage_options=where.options, raise_on_mismatch=False) == []


def check_after_kill(where: Where, killed_src: str, candidates: dict[str, str], archive: str,
                     old: str | None) -> dict[str, Any]:
    """(a)-(d) of a location after a conversion of ``killed_src`` was killed; returns what was seen.

    ``old`` names the source of the complete store the location held before (None: empty).
    """
    seen: dict[str, Any] = {}
    # (a) the location opens whole, or refuses clearly; never anything else
    try:
        _open(where, archive)
        seen["opened"] = "complete"
    except IncompleteStoreError as exc:
        assert "--resume" in str(exc), exc
        seen["opened"] = "unfinished"
    except StorageAccessError as exc:
        assert "no zarr store" in str(exc), exc
        seen["opened"] = "nothing"
    if old is not None:
        assert seen["opened"] == "complete", "the old store stays current until the new one is complete"
    if seen["opened"] == "complete":
        matching = [name for name, src in candidates.items() if _verifies(src, where)]
        assert len(matching) == 1, f"verifies against {matching}"
        seen["current"] = matching[0]
    loc = Location(where.url, where.options)
    current = loc.current()
    newer = [v.name for v in loc.versions() if current is None or v.name > current]  # the killed run's
    unfinished = bool(newer)
    assert bool(loc.unfinished()) == unfinished, "a version newer than the current one is one to --resume"
    stale_lock = where.lock_held()
    seen["unfinished"], seen["stale_lock"] = unfinished, stale_lock
    # (b) a plain convert is refused, naming the flag that applies
    if unfinished or seen["opened"] == "complete":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(StoreExistsError) as info:
                convert(killed_src, where.url, storage_options=where.options, progress=False)
        assert ("--resume" if unfinished else "--overwrite") in str(info.value), info.value
        took_over = [w for w in caught if "no longer running" in str(w.message)]
        assert bool(took_over) == stale_lock, (stale_lock, [str(w.message) for w in caught])
        assert not where.lock_held(), "a refused conversion leaves no lock"
    # (c) --resume finishes it (or does nothing if it is complete) and the store verifies
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = convert(killed_src, where.url, storage_options=where.options, progress=False, resume=True)
    expected = killed_src if unfinished or seen["opened"] != "complete" else candidates[seen["current"]]
    assert _verifies(expected, where)
    _open(where, archive)
    assert not where.lock_held()
    seen["resumed"] = "finished" if result.groups or not result.skipped[:1] == ["(all: already complete)"] else "no-op"
    # (d) --resume of a complete store writes nothing
    before = where.listing()
    again = convert(killed_src, where.url, storage_options=where.options, progress=False, resume=True)
    assert again.groups == [] and again.skipped == ["(all: already complete)"]
    assert where.listing() == before, "--resume of a complete store wrote something"
    return seen


def _build_old(where: Where, src: str) -> None:
    """A complete store of ``src`` published twice (current + previous): an overwrite collects one."""
    convert(src, where.url, storage_options=where.options, progress=False)
    convert(src, where.url, storage_options=where.options, progress=False, overwrite=True)


def run_kill(runner: Any, where: Where, sources: dict[str, str], point: KillPoint, scenario: str) -> dict[str, Any]:
    """Kill one conversion at ``point`` and check the location. ``scenario``: ``fresh`` (empty
    DEST, source A), ``overwrite`` (DEST holds A, ``--overwrite`` with B) or ``ssc11``."""
    if scenario == "overwrite":
        _build_old(where, sources["A"])
        src, flags, candidates, old = sources["B"], ["--overwrite"], {"A": sources["A"], "B": sources["B"]}, "A"
    elif scenario == "ssc11":
        src, flags, candidates, old = sources["C"], [], {"C": sources["C"]}, None
    else:
        src, flags, candidates, old = sources["A"], [], {"A": sources["A"]}, None
    killed = runner(["convert", src, where.url, "--quiet", *flags, *where.argv_options], point, env=where.env)
    assert killed.returncode == -9, f"never reached {point.label}: rc {killed.returncode}\n{killed.stderr[-2000:]}"
    return check_after_kill(where, src, candidates, "ssc-11" if scenario == "ssc11" else "ssc-1", old)


# --------------------------------------------------------------------------------------------
# 1. kill points
# --------------------------------------------------------------------------------------------


def K(target: str, n: int = 1, when: str = "before", inside: str | None = None, name: str = "") -> KillPoint:
    return KillPoint(target, n, when, inside, name)


LOCAL_POINTS = [
    ("fresh", K(f"{P}._lock", when="after", name="lock taken")),
    ("fresh", K("zarr.storage:LocalStore.set", 1, "after", name="first zarr Store.set (new root)")),
    ("fresh", K(f"{S}:put_many", 1, name="put_many #1")),
    ("fresh", K(f"{S}:put_many", 10, "after", name="put_many #10")),
    ("fresh", K(f"{S}:_create", 90, "torn", name="torn chunk file #90")),
    ("fresh", K(f"{W}:prepare", when="after", name="after prepare (root attrs)")),
    ("fresh", K(f"{W}:write_group", 1, name="write_group #1 before")),
    ("fresh", K(f"{W}:write_group", 4, "after", name="write_group #4 after")),
    ("fresh", K(f"{W}:write_group", 7, "after", name="write_group #7 (last) after")),
    ("fresh", K(FIN, name="finalise: before")),
    ("fresh", K(f"{S}:put_many", 2, inside=FIN, name="finalise: before the root document")),
    ("fresh", K(f"{S}:_create", 4, "torn", inside=FIN, name="finalise: torn group document")),
    ("fresh", K(f"{S}:_create", 9, "torn", inside=FIN, name="finalise: torn root document")),
    ("fresh", K(FIN, when="after", name="finalise: after the root document")),
    ("fresh", K(COLLECT, name="publish: after the switch, before collection")),
    ("fresh", K(f"{P}._unlock", name="unlock: before")),
    ("overwrite", K(f"{P}._lock", when="after", name="overwrite: lock taken")),
    ("overwrite", K(f"{W}:write_group", 3, name="overwrite: write_group #3")),
    ("overwrite", K(f"{S}:put_many", 2, inside=FIN, name="overwrite: finalise before the root document")),
    ("overwrite", K(FIN, when="after", name="overwrite: finalise after the root document")),
    ("overwrite", K(f"{P}._publish_local", name="overwrite: publish before the switch")),
    ("overwrite", K(COLLECT, name="overwrite: after the switch, before collection")),
    ("overwrite", K("zarr.storage:LocalStore.delete_dir", inside=COLLECT, name="overwrite: mid-collection")),
    ("overwrite", K(f"{P}._unlock", name="overwrite: unlock")),
    ("ssc11", K(f"{W}:write_group", 5, "after", name="ssc-11: write_group #5")),
    ("ssc11", K(f"{S}:put_many", 2, inside=FIN, name="ssc-11: finalise before the root document")),
    ("ssc11", K(COLLECT, name="ssc-11: after the switch")),
]


def _on_this_path(points: list[tuple[str, KillPoint]], store_set: str) -> list[tuple[str, KillPoint]]:
    """With ``SSCXR_NO_FASTPATH=1`` finalise consolidates through zarr's public API, which writes
    each document with the store's ``set`` (atomically on local disk: nothing to tear) instead of
    :func:`shards.put_many`: kill at the same places in its sequence of writes instead."""
    if not disabled_by_environment():
        return points
    moved = []
    for scenario, p in points:
        if p.inside == FIN and p.target.startswith(f"{S}:"):
            n, when = (p.n + 1, "before") if p.when == "before" else (p.n, "after")
            p = K(store_set, n, when, inside=FIN, name=f"{p.name} (public path)")
        moved.append((scenario, p))
    return moved


LOCAL_POINTS = _on_this_path(LOCAL_POINTS, "zarr.storage:LocalStore.set")


@pytest.mark.parametrize("scenario, point", LOCAL_POINTS, ids=[p.label for _, p in LOCAL_POINTS])
def test_kill_local(runner, sources, tmp_path, scenario, point):
    seen = run_kill(runner, Where(str(tmp_path / "x.zarr")), sources, point, scenario)
    print(f"KILLRESULT local | {point.label} | {seen}")


def test_kill_after_a_version_named_later(runner, sources, tmp_path, monkeypatch):
    """The current version's name sorts after the next conversion's (same second with a larger
    suffix, or a writer whose clock was ahead): the interrupted overwrite is still found,
    refused plainly naming --resume, and --resume finishes it (not 'already complete')."""
    import sscxr_conversion.publish as publish

    where = Where(str(tmp_path / "x.zarr"))
    ahead = iter(["v20991231T235958Z-fffffe", "v20991231T235958Z-ffffff"])
    real = publish.new_version_name
    monkeypatch.setattr(publish, "new_version_name", lambda after=None: next(ahead, None) or real(after))
    _build_old(where, sources["A"])
    monkeypatch.setattr(publish, "new_version_name", real)
    killed = runner(["convert", sources["B"], where.url, "--quiet", "--overwrite"], K(f"{W}:write_group", 3))
    assert killed.returncode == -9
    seen = check_after_kill(where, sources["B"], {"A": sources["A"], "B": sources["B"]}, "ssc-1", "A")
    assert seen["unfinished"] and seen["resumed"] == "finished"
    assert _verifies(sources["B"], where)


@pytest.fixture(scope="module")
def weed_bucket(seaweed_server: Any) -> Any:
    """One private SeaweedFS bucket for the module (each test uses a prefix of its own)."""
    name = seaweed_server.make_bucket(public=False)
    yield name
    seaweed_server.delete_bucket(name)


def _weed(seaweed_server: Any, bucket: str, tmp_path: Any) -> Where:
    import secrets

    return Where(seaweed_server.url(bucket, f"{secrets.token_hex(4)}/x.zarr"), seaweed_server.storage_options(),
                 seaweed_server.client())


OBJ = "zarr.storage:ObjectStore"
SEAWEED_POINTS = [
    ("fresh", K(f"{P}._lock", when="after", name="s3: lock taken")),
    ("fresh", K(f"{OBJ}.set", 3, name="s3: zarr Store.set #3")),
    ("fresh", K(f"{S}:put_many", 6, "after", name="s3: put_many #6")),
    ("fresh", K(f"{W}:write_group", 4, "after", name="s3: write_group #4")),
    ("fresh", K(f"{S}:put_many", 2, inside=FIN, name="s3: finalise before the root document")),
    ("fresh", K("sscxr.versions:_put", inside=f"{P}.publish", name="s3: before the current.json PUT")),
    ("overwrite", K(f"{P}._lock", when="after", name="s3 overwrite: lock taken")),
    ("overwrite", K(f"{W}:write_group", 3, name="s3 overwrite: write_group #3")),
    ("overwrite", K(FIN, when="after", name="s3 overwrite: after the root document")),
    ("overwrite", K("sscxr.versions:_put", inside=f"{P}.publish", when="after",
                    name="s3 overwrite: after the current.json PUT, before collection")),
    ("overwrite", K(f"{OBJ}.delete_dir", inside=COLLECT, name="s3 overwrite: mid-collection")),
    ("overwrite", K(f"{P}._unlock", name="s3 overwrite: unlock")),
]


SEAWEED_POINTS = _on_this_path(SEAWEED_POINTS, f"{OBJ}.set")


@pytest.mark.seaweedfs
@pytest.mark.parametrize("scenario, point", SEAWEED_POINTS, ids=[p.label for _, p in SEAWEED_POINTS])
def test_kill_seaweedfs(runner, sources, seaweed_server, weed_bucket, tmp_path, scenario, point):
    seen = run_kill(runner, _weed(seaweed_server, weed_bucket, tmp_path), sources, point, scenario)
    print(f"KILLRESULT seaweedfs | {point.label} | {seen}")


# --------------------------------------------------------------------------------------------
# 2. readers during repeated overwrites
# --------------------------------------------------------------------------------------------

READ_VARS = (("imaging/subvolume_01", "dff"), ("imaging/subvolume_02", "dff"), ("whisker", "angle"))


def _arrays(tree: Any) -> list[Any]:
    return [tree[group].ds[name] for group, name in READ_VARS]


@pytest.fixture(scope="module")
def truths(sources, tmp_path_factory) -> dict[str, list[Any]]:
    """The values of :data:`READ_VARS` in a verified store of A and of B."""
    out = {}
    for name in ("A", "B"):
        url = str(tmp_path_factory.mktemp("truth") / f"{name}.zarr")
        convert(sources[name], url, progress=False)
        assert _verifies(sources[name], Where(url))
        out[name] = [a.values for a in _arrays(sscxr.open_session(url))]
    assert all(not np.array_equal(a, b, equal_nan=True) for a, b in zip(out["A"], out["B"]))
    return out


def _slices(rng: Any, truth: list[Any]) -> list[tuple[slice, slice]]:
    """Random cell x time slices, one per variable of :data:`READ_VARS`."""
    out = []
    for values in truth:
        rows, cols = values.shape
        r0, c0 = rng.integers(0, rows), rng.integers(0, cols - 1)
        out.append((slice(r0, rng.integers(r0 + 1, rows + 1)), slice(c0, rng.integers(c0 + 1, min(cols, c0 + 200) + 1))))
    return out


def _which(values: list[Any], truths: dict[str, list[Any]], slices: list[tuple[slice, slice]]) -> str | None:
    """The source every value of one read comes from, or None (a wrong or mixed read)."""
    for name, truth in truths.items():
        if all(np.array_equal(v, t[s], equal_nan=True) for v, t, s in zip(values, truth, slices)):
            return name
    return None


def readers_during_overwrites(runner: Any, where: Where, sources: dict[str, str], truths: dict[str, list[Any]],
                              n_overwrites: int) -> dict[str, Any]:
    """Two reader threads (a kept handle; a reopen per read) while a writer process publishes
    ``n_overwrites`` new versions of DEST, B and A in turn. Returns the counts."""
    import dask
    import threading
    import time

    from sscxr.errors import StoreChangedError

    convert(sources["A"], where.url, storage_options=where.options, progress=False)
    stop = threading.Event()
    reads: list[tuple[str, float, float, str]] = []  # (mode, start, end, "A" | "B" | "changed" | "WRONG")
    errors: list[BaseException] = []

    def reader(mode: str, seed: int) -> None:
        rng = np.random.default_rng(seed)
        handle = None
        try:
            while not stop.is_set():
                start = time.monotonic()
                slices = _slices(rng, truths["A"])
                try:
                    if handle is None or mode == "reopen":
                        handle = sscxr.open_session(where.url, storage_options=where.options)
                    arrays = [a.isel(dict(zip(a.dims, s))).data for a, s in zip(_arrays(handle), slices)]
                    values = dask.compute(*arrays, scheduler="synchronous")
                    outcome = _which(list(values), truths, slices) or "WRONG"
                except StoreChangedError:
                    outcome, handle = "changed", None  # the kept handle's version was removed: reopen
                reads.append((mode, start, time.monotonic(), outcome))
        except BaseException as exc:  # anything else is a failure of the test
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(mode, i)) for i, mode in enumerate(["kept", "reopen"])]
    for t in threads:
        t.start()
    time.sleep(0.3)
    windows = []
    try:
        for i in range(n_overwrites):
            src = sources["B" if i % 2 == 0 else "A"]
            start = time.monotonic()
            done = runner(["convert", src, where.url, "--quiet", "--overwrite", *where.argv_options], env=where.env)
            windows.append((start, time.monotonic()))
            assert done.returncode == 0, done.stderr
    finally:
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    counts = {mode: {o: sum(1 for m, _, _, x in reads if m == mode and x == o) for o in ("A", "B", "changed", "WRONG")}
              for mode in ("kept", "reopen")}
    during = [sum(1 for _, s, e, _ in reads if s < w1 and e > w0) for w0, w1 in windows]
    wrong = sum(c["WRONG"] for c in counts.values())
    assert wrong == 0, counts
    assert all(n > 0 for n in during), f"reads during each overwrite: {during}"
    assert _verifies(sources["A" if n_overwrites % 2 == 0 else "B"], where)
    return {"reads": len(reads), "wrong": wrong, "by_mode": counts, "during_each_overwrite": during,
            "seconds": round(windows[-1][1] - windows[0][0], 1)}


def test_readers_during_overwrites_local(runner, sources, truths, tmp_path):
    result = readers_during_overwrites(runner, Where(str(tmp_path / "x.zarr")), sources, truths, 6)
    print(f"CONCURRENCY local | {result}")


@pytest.mark.seaweedfs
def test_readers_during_overwrites_seaweedfs(runner, sources, truths, seaweed_server, weed_bucket, tmp_path):
    result = readers_during_overwrites(runner, _weed(seaweed_server, weed_bucket, tmp_path), sources, truths, 4)
    print(f"CONCURRENCY seaweedfs | {result}")


# --------------------------------------------------------------------------------------------
# two writers; stale, live and broken locks
# --------------------------------------------------------------------------------------------

STARTER = """
import os, sys, time
import sscxr.cli, sscxr_conversion, sscxr_conversion.write, sscxr_conversion.publish, zarr.storage, xarray
try:
    import obstore, zarr.storage._obstore
except ImportError:
    pass
open(sys.argv[1] + ".ready", "w").close()
while not os.path.exists(sys.argv[1]):  # the starting gun: both take the lock within a few ms
    time.sleep(0.002)
sys.argv = ["sscxr", *sys.argv[2:]]
sscxr.cli.run()
"""


def two_writers(where: Where, sources: dict[str, str], tmp_path: Any, overwrite: bool) -> list[Any]:
    import subprocess
    import sys
    import time

    if overwrite:
        convert(sources["A"], where.url, storage_options=where.options, progress=False)
    gun = str(tmp_path / "gun")
    flags = ["--overwrite"] if overwrite else []
    procs = [subprocess.Popen([sys.executable, "-c", STARTER, gun, "convert", sources[name], where.url, "--quiet",
                               *flags, *where.argv_options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **where.env})
             for name in ("A", "B")]
    deadline = time.monotonic() + 60
    while not (os.path.exists(gun + ".ready") and all(p.poll() is None for p in procs)) or \
            len([p for p in procs if p.poll() is None]) < 2:
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    time.sleep(0.5)  # both imported (each writes .ready; the second one overwrites it)
    open(gun, "w").close()
    results = [(p.wait(120), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    (winner,) = [name for name, r in zip("AB", results) if r[0] == 0]
    (loser,) = [r for r in results if r[0] == 2]
    lines = loser[2].strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in loser[2], loser[2]
    assert lines[0].startswith("sscxr convert: error: ") and "is being written by another conversion" in lines[0]
    assert _verifies(sources[winner], where) and not where.lock_held()
    return lines


@pytest.mark.parametrize("overwrite", [False, True], ids=["empty", "overwrite"])
def test_two_writers_local(sources, tmp_path, overwrite):
    print("TWOWRITERS local", overwrite, two_writers(Where(str(tmp_path / "x.zarr")), sources, tmp_path, overwrite))


@pytest.mark.seaweedfs
@pytest.mark.parametrize("overwrite", [False, True], ids=["empty", "overwrite"])
def test_two_writers_seaweedfs(sources, seaweed_server, weed_bucket, tmp_path, overwrite):
    where = _weed(seaweed_server, weed_bucket, tmp_path)
    print("TWOWRITERS seaweedfs", overwrite, two_writers(where, sources, tmp_path, overwrite))


def _write_lock(where: Where, holder: dict[str, Any]) -> None:
    import json

    from sscxr.versions import _put

    _put(Location(where.url, where.options).store, LOCK, json.dumps(holder).encode())


def _where(backend: str, request: Any, tmp_path: Any) -> Where:
    """``x.zarr`` in ``tmp_path``, or on SeaweedFS (its fixtures taken only then)."""
    if backend == "local":
        return Where(str(tmp_path / "x.zarr"))
    return _weed(request.getfixturevalue("seaweed_server"), request.getfixturevalue("weed_bucket"), tmp_path)


@pytest.mark.parametrize("backend", ["local", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)])
def test_stale_live_and_broken_locks(runner, sources, tmp_path, backend, request):
    import socket

    from sscxr_conversion.publish import _process_start

    where = _where(backend, request, tmp_path)
    src = ["convert", sources["A"], where.url, "--quiet", *where.argv_options]
    # a writer SIGKILLed while holding the lock: the next conversion takes it over, saying so
    killed = runner(src, K(f"{W}:write_group", 2), env=where.env)
    assert killed.returncode == -9 and where.lock_held()
    resumed = runner([*src, "--resume"], env=where.env)
    assert resumed.returncode == 0, resumed.stderr
    took_over = [line for line in resumed.stderr.splitlines() if "no longer running" in line]
    assert len(took_over) == 1 and f"pid {killed.pid} " in took_over[0], resumed.stderr
    assert _verifies(sources["A"], where) and not where.lock_held()
    # a lock whose process is alive (this one) is refused, naming --break-lock
    live = {"token": "x", "host": socket.gethostname(), "pid": os.getpid(), "pid_start": _process_start(os.getpid()),
            "started": "2026-12-07T00:00:00+00:00", "destination": where.url}
    _write_lock(where, live)
    refused = runner([*src, "--overwrite"], env=where.env)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "is being written by another conversion" in lines[0] and "--break-lock" in lines[0]
    assert where.lock_held()
    # --break-lock takes it
    broke = runner([*src, "--overwrite", "--break-lock"], env=where.env)
    assert broke.returncode == 0, broke.stderr
    assert "removed the lock of another conversion (--break-lock) (pid" in broke.stderr, broke.stderr
    assert _verifies(sources["A"], where) and not where.lock_held()
    print(f"LOCKS {backend} | {took_over[0]} | {lines[0]}")


@pytest.mark.parametrize("at", ["publish", "finalise"])
def test_a_writer_whose_lock_was_broken_does_not_publish(sources, tmp_path, monkeypatch, at):
    """Writer 1 is still running when writer 2 breaks its lock (``--overwrite --break-lock``) and
    publishes B (removing writer 1's version). Writer 1 must fail without switching DEST: B
    stays current and whole."""
    import sscxr_conversion.write as write
    from sscxr_conversion.publish import Publication

    where = Where(str(tmp_path / "x.zarr"))
    owner, name = (Publication, "publish") if at == "publish" else (write, "finalise")
    real, nested = getattr(owner, name), []

    def breaks_in_first(*args, **kwargs):
        if not nested:  # writer 1 is about to finalise / publish: writer 2 breaks in and publishes
            nested.append(1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                convert(sources["B"], where.url, progress=False, overwrite=True, break_lock=True)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, breaks_in_first)
    with pytest.raises(Exception) as info:
        convert(sources["A"], where.url, progress=False)
    if at == "publish":
        from sscxr.errors import StoreLockedError

        assert info.type is StoreLockedError and "was not published" in str(info.value)
    monkeypatch.undo()
    assert _verifies(sources["B"], where), "writer 2's store stays current"
    sscxr.open_session(where.url)
    assert not where.lock_held()


# --------------------------------------------------------------------------------------------
# 3. a removed version is an error, never fill values
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["local", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)])
def test_removed_version_raises_store_changed(sources, truths, tmp_path, backend, request):
    from sscxr.errors import StoreChangedError

    where = _where(backend, request, tmp_path)
    convert(sources["A"], where.url, storage_options=where.options, progress=False)           # V1
    v1 = Location(where.url, where.options).current()
    handle = sscxr.open_session(where.url, storage_options=where.options)
    convert(sources["B"], where.url, storage_options=where.options, progress=False, overwrite=True)  # V2
    dff = handle["imaging/subvolume_01"].ds.dff
    assert np.array_equal(dff.values, truths["A"][0], equal_nan=True), "the previous version stays readable"
    convert(sources["A"], where.url, storage_options=where.options, progress=False, overwrite=True)  # V3
    assert not any(f"{v1}/" in key for key in where.listing()), "V1 was collected"
    if backend == "local":  # SeaweedFS keeps the emptied folder in listings (no object in it)
        assert v1 not in [v.name for v in Location(where.url, where.options).versions()]
    with pytest.raises(StoreChangedError, match="open it again"):
        dff.values
    with pytest.raises(StoreChangedError):
        handle["whisker"].ds.angle[0, :10].compute()


def test_removed_version_raises_store_changed_on_a_cluster(sources, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    from sscxr.errors import StoreChangedError

    url = str(tmp_path / "x.zarr")
    convert(sources["A"], url, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        dff = sscxr.open_session(url)["imaging/subvolume_01"].ds.dff
        assert float(dff.sum().compute()) == pytest.approx(float(np.nansum(dff.values)))
        for src in ("B", "A"):
            convert(sources[src], url, progress=False, overwrite=True)
        with pytest.raises(StoreChangedError):
            dff.sum().compute()


def test_version_removed_between_resolving_and_opening(sources, tmp_path, monkeypatch):
    """A reader resolves DEST, then (slow) two more versions are published before it reads the
    root: a clear error, not 'no zarr store' for a location that has one."""
    import sscxr.io as sio
    from sscxr.errors import StoreChangedError

    url = str(tmp_path / "x.zarr")
    convert(sources["A"], url, progress=False)
    real, once = sio._resolve, []

    def slow_resolve(u, options):
        resolved = real(u, options)
        if not once:
            once.append(1)
            for src in ("B", "A"):
                convert(sources[src], url, progress=False, overwrite=True)
        return resolved

    monkeypatch.setattr(sio, "_resolve", slow_resolve)
    with pytest.raises(StoreChangedError):
        sscxr.open_session(url)
    sscxr.open_session(url)  # opening again reads the current version
