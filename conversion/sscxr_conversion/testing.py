"""Testing helpers for the converter: conversions killed in the middle (one group, or any call)."""

from __future__ import annotations

import os
import subprocess
import sys
import dataclasses
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CRASH_MID_GROUP = textwrap.dedent("""
    import os, signal, sys
    import sscxr_conversion.write as write
    real, count = write.write_group, [0]
    def crashing(store, path, ds, spec, **options):
        count[0] += 1
        if count[0] == int(sys.argv[3]):      # die in the middle of a group: half its variables
            half = ds[list(ds.data_vars)[: max(1, len(ds.data_vars) // 2)]]
            half.to_zarr(store, group=path, mode="w", zarr_format=3, consolidated=False)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(store, path, ds, spec, **options)
    write.write_group = crashing
    from sscxr_conversion import convert
    convert(sys.argv[1], sys.argv[2], progress=False)
""")


def run_killed_conversion(src: str | os.PathLike, dest: str, crash_at: int,
                          timeout: float = 120) -> subprocess.CompletedProcess:
    """Convert ``src`` to ``dest`` in a subprocess that SIGKILLs itself half-way through the
    ``crash_at``-th group write (returncode -9 when it got that far).

    >>> proc = run_killed_conversion("an197522_2013_03_08_session.mat", "x.zarr", 2)  # doctest: +SKIP
    >>> proc.returncode                                                               # doctest: +SKIP
    -9
    """
    return subprocess.run([sys.executable, "-c", CRASH_MID_GROUP, str(src), str(dest), str(crash_at)],
                          capture_output=True, text=True, timeout=timeout)


def unfinished_version(dest: str, storage_options: Any = None) -> str:
    """The URL of the newest unfinished version under ``dest`` (an interrupted conversion).

    >>> unfinished_version("x.zarr")                     # doctest: +SKIP
    'x.zarr-versions/v20261207T150102Z-3fa9c1'
    """
    from sscxr.versions import Location

    found = Location(dest, storage_options).unfinished()
    if not found:
        raise AssertionError(f"{dest}: no unfinished version")
    return found[-1].url


# --------------------------------------------------------------------------------------------
# A generic crash harness: SIGKILL a conversion at the n-th call of any function
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KillPoint:
    """Where to SIGKILL a conversion: at the ``n``-th call of ``target``, ``before`` or ``after`` it.

    ``target`` is ``"module:function"`` or ``"module:Class.method"``. A function is replaced in
    every loaded ``sscxr``/``sscxr_conversion``/``zarr`` module that holds it (``from x import f``
    copies included), a method on its class. With ``inside``, only calls made while that other
    target runs count (e.g. ``delete_dir`` during ``Publication.collect``). ``torn`` kills after
    a local file was created but before its bytes were written (``shards._create``): a torn object.

    >>> KillPoint("sscxr_conversion.write:write_group", n=2).label
    'write_group#2-before'
    """

    target: str
    n: int = 1
    when: str = "before"
    inside: str | None = None
    name: str = ""

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        inside = f"@{self.inside.rsplit(':', 1)[1].rsplit('.', 1)[-1]}" if self.inside else ""
        return f"{self.target.rsplit(':', 1)[1].rsplit('.', 1)[-1]}{inside}#{self.n}-{self.when}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _resolve_target(target: str) -> tuple[Any, str, Any]:
    """(owner object, attribute name, current value) of ``module:attr`` or ``module:Class.attr``."""
    import importlib

    module_name, _, attr = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name, owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)


def _patch_everywhere(target: str, make: Any) -> None:
    """Replace ``target`` by ``make(original)`` where it is looked up."""
    owner, name, original = _resolve_target(target)
    wrapped = make(original)
    if isinstance(owner, type):
        setattr(owner, name, wrapped)
        return
    for module in list(sys.modules.values()):
        mod_name = getattr(module, "__name__", "") or ""
        if mod_name.split(".")[0] not in {"sscxr", "sscxr_conversion", "zarr"}:
            continue
        for key, value in list(vars(module).items()):
            if value is original:
                setattr(module, key, wrapped)


def install_kill_point(point: KillPoint | Mapping[str, Any], counts: dict[str, int] | None = None) -> None:
    """Patch this process so it SIGKILLs itself at ``point`` (with ``counts``, only count calls)."""
    import asyncio
    import functools
    import signal
    import threading

    point = point if isinstance(point, KillPoint) else KillPoint(**point)
    lock = threading.Lock()
    state = {"calls": 0, "inside": 0}

    def die() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def hit(when: str) -> None:
        if point.inside and not state["inside"]:
            return
        with lock:
            if when == "before":
                state["calls"] += 1
            number = state["calls"]
        if counts is not None:
            if when == "before":
                counts[point.label] = number
            return
        if number == point.n and when == point.when:
            die()

    def make(original: Any) -> Any:
        if asyncio.iscoroutinefunction(original):
            @functools.wraps(original)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                hit("before")
                result = await original(*args, **kwargs)
                hit("after")
                return result
            return async_wrapper

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            hit("before")
            result = original(*args, **kwargs)
            if point.when == "torn" and counts is None and isinstance(result, int) and state["calls"] == point.n:
                die()  # shards._create returned the new file's descriptor: an empty object
            hit("after")
            return result
        return wrapper

    if point.inside:
        def make_inside(original: Any) -> Any:
            @functools.wraps(original)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                state["inside"] += 1
                try:
                    return original(*args, **kwargs)
                finally:
                    state["inside"] -= 1
            return wrapper

        _patch_everywhere(point.inside, make_inside)
    _patch_everywhere(point.target, make)


ZYGOTE = textwrap.dedent("""
    import json, os, sys, traceback
    import sscxr.cli, sscxr.io, sscxr.versions, sscxr_conversion, sscxr_conversion.write
    import sscxr_conversion.publish, sscxr_conversion.shards, sscxr_conversion.pipeline
    import sscxr_conversion.ssc11_pipeline, sscxr_conversion.verify
    import zarr.storage, xarray, scipy.io, h5py
    try:
        import obstore, zarr.storage._obstore, s3fs
    except ImportError:
        pass
    from sscxr_conversion.testing import install_kill_point
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.flush(); sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            for fd, suffix in ((1, ".out"), (2, ".err")):
                os.dup2(os.open(job["log"] + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
            code = 70
            try:
                os.environ.update(job.get("env") or {})
                counts = {} if job.get("count") else None
                for point in job.get("points") or []:
                    install_kill_point(point, counts)
                code = sscxr.cli.main(job["argv"])
                if counts is not None:
                    print("COUNTS " + json.dumps(counts), file=sys.stderr)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush(); sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "pid": pid}), flush=True)
""")


@dataclass
class Killed:
    """What a harness run did: its exit code (``-9``: killed at its point), stdout and stderr."""

    returncode: int
    stdout: str
    stderr: str
    pid: int = 0

    def counts(self) -> dict[str, int]:
        import json

        lines = [line for line in self.stderr.splitlines() if line.startswith("COUNTS ")]
        return json.loads(lines[-1][7:]) if lines else {}


class KillRunner:
    """Run ``sscxr convert`` in forked subprocesses of one process that imported everything once
    (a fork costs ~10 ms against ~3 s of imports), each killed at a :class:`KillPoint`.

    >>> with KillRunner(tmp_path) as run:                                          # doctest: +SKIP
    ...     run(["convert", src, dest, "--quiet"], KillPoint("sscxr_conversion.write:finalise"))
    Killed(returncode=-9, ...)
    """

    def __init__(self, logs: str | os.PathLike[str], timeout: float = 120):
        self.logs, self.timeout = os.fspath(logs), timeout
        self.proc: subprocess.Popen[str] | None = None
        self._n = 0

    def __enter__(self) -> KillRunner:
        os.makedirs(self.logs, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self._answer()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)

    def _answer(self) -> dict[str, Any]:
        import json

        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the kill harness process died")
        return dict(json.loads(line))

    def __call__(self, argv: list[str], point: KillPoint | None = None, *,
                 count: list[KillPoint] | None = None, env: dict[str, str] | None = None) -> Killed:
        """Run ``sscxr`` with ``argv`` (and ``env`` added to its environment), killed at ``point``;
        or count the calls of each of ``count``."""
        import json

        assert self.proc is not None and self.proc.stdin is not None
        self._n += 1
        log = os.path.join(self.logs, f"run{self._n:03d}")
        points = [p.to_json() for p in count] if count else [point.to_json()] if point else []
        job = {"argv": [str(a) for a in argv], "log": log, "points": points, "count": bool(count), "env": env or {}}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        answer = self._answer()
        with open(log + ".out") as out, open(log + ".err") as err:
            return Killed(int(answer["rc"]), out.read(), err.read(), int(answer["pid"]))
