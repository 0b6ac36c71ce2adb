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

import pytest

import sscxr
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

        return ["--storage-options", json.dumps(self.options)] if self.options else []

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
    unfinished = bool(loc.unfinished())
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
    killed = runner(["convert", src, where.url, "--quiet", *flags, *where.argv_options], point)
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
    ("fresh", K(f"{W}:EarlyArrays._write", 1, "after", name="EarlyArrays: first dF/F written")),
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
    ("overwrite", K(f"{W}:EarlyArrays._write", 2, "after", name="overwrite: EarlyArrays #2")),
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


@pytest.mark.seaweedfs
@pytest.mark.parametrize("scenario, point", SEAWEED_POINTS, ids=[p.label for _, p in SEAWEED_POINTS])
def test_kill_seaweedfs(runner, sources, seaweed_server, weed_bucket, tmp_path, scenario, point):
    seen = run_kill(runner, _weed(seaweed_server, weed_bucket, tmp_path), sources, point, scenario)
    print(f"KILLRESULT seaweedfs | {point.label} | {seen}")
