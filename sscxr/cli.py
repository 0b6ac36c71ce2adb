"""The ``sscxr`` command: convert, verify, info, demo, catalog.

Every failure prints one clear line on stderr and exits with status 2 (1 for a failed
verification); tracebacks are for bugs only. An interrupted command (Ctrl-C: SIGINT, or
SIGTERM, as ``kill`` and batch schedulers send) stops cleanly, says so in one line and exits
with status 130 (SIGINT) or 143 (SIGTERM), the shell's 128 + signal number.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from .errors import SourceFormatError, SscxrError, StorageAccessError


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same cleanup runs."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sscxr`` command for ``argv`` (default: ``sys.argv[1:]``) and return its exit status.

    The console script is :func:`run`, which exits with this status.
    """
    args = _parser().parse_args(argv)
    if not getattr(args, "func", None):
        _parser().print_help()
        return 2
    _warn_secret_options(args)
    try:
        with _sigterm_as_interrupt(), _warnings_as_lines(args.command):
            return int(args.func(args) or 0)
    except BrokenPipeError:  # `sscxr info URL | head`: the reader left; nothing more to say
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes stdout at exit
        return 0
    except SscxrError as exc:
        print(f"sscxr {args.command}: error: {exc}", file=sys.stderr)
        return 1 if type(exc).__name__ == "VerificationError" else 2
    except KeyboardInterrupt as exc:
        print(f"sscxr {args.command}: interrupted; rerun with --resume to finish", file=sys.stderr)
        return 143 if isinstance(exc, _Terminated) else 130


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`_Terminated` (a ``KeyboardInterrupt``) in the main thread inside
    the block; the previous handler is restored after it. Elsewhere than the main thread (where
    Python allows no handler) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _warnings_as_lines(command: str) -> Iterator[None]:
    """Python warnings raised by the command (a stale lock taken over, a pinned version) as one
    ``sscxr COMMAND: warning: ...`` line each, not ``file:line: UserWarning`` plus source."""
    import warnings

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        print(f"sscxr {command}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _warn_secret_options(args: argparse.Namespace) -> None:
    """One warning line when ``--storage-options`` holds a credential: ``ps`` shows it."""
    options = getattr(args, "storage_options", None)
    if not options:
        return
    from .credentials import is_secret as _is_secret

    def names(value: Any) -> list[str]:
        if isinstance(value, Mapping):
            return [str(k) for k, v in value.items() if _is_secret(str(k), v)] + [
                n for v in value.values() for n in names(v)]
        return [n for v in value for n in names(v)] if isinstance(value, list | tuple) else []

    found = names(options)
    if found:
        print(f"sscxr {args.command}: warning: --storage-options holds credentials ({', '.join(sorted(set(found)))}), "
              "which any user of this machine sees in `ps` and your shell keeps in its history; set "
              "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials, "
              "instead (docs/remote.md)", file=sys.stderr)  # fmt: skip


def run() -> NoReturn:
    """The console script: :func:`main`, then exit with its status.

    A command that used obstore (S3, see :mod:`sscxr.io`) ends without the interpreter's
    finalization: the exit handlers run (``atexit``), the output is flushed, and the process
    exits (``os._exit``). obstore delivers each result from a thread of its own runtime, which
    calls back into Python (``loop.call_soon_threadsafe``) and takes the GIL again after waking
    the loop; when that happens after the interpreter has started finalizing, Python before 3.14
    ends the thread with ``pthread_exit``, which cannot unwind through Rust frames: the process
    aborts (SIGABRT, "Fatal Python error: Aborted") after the command has done all its work.
    Seen in 14 of 130 ``sscxr convert ... s3://`` runs on a loaded 2-core machine, and in none of
    110 since (python/cpython#87135; PyO3/pyo3#4874).
    """
    try:
        code = main()
    except SystemExit as exc:  # argparse's --help and usage errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    _quiet_teardown()
    if "obstore" not in sys.modules:
        sys.exit(code)
    from ._exit_compat import exit_now  # atexit's private runner; sys.exit where it cannot be used

    exit_now(code)


def _quiet_teardown() -> None:
    """After the command has printed its result or its one error line, what the interpreter's
    teardown reports is noise: s3fs/aiohttp sessions never closed ("Unclosed client session",
    through the ``asyncio`` logger) and zarr's abandoned reads of a failed open, whose
    aiobotocore context cannot be reset from the finalizer ("Exception ignored in: <coroutine
    ...get>... ValueError: ... created in a different Context"): many lines after the one that
    matters."""
    import logging

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    sys.unraisablehook = lambda unraisable: None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sscxr", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command")
    _convert_parser(sub.add_parser("convert", help="convert an ssc-1 session or ssc-11 animal to zarr"))
    v = sub.add_parser("verify", help="prove a store holds the same values as its source")
    v.add_argument("src"), v.add_argument("dest")
    _storage_arg(v)
    v.set_defaults(func=_verify)
    i = sub.add_parser("info", help="print a store's tree, sizes and provenance (or, with --versions, "
                                    "this installation's versions and fast paths)")
    i.add_argument("url", nargs="?")
    i.add_argument("--versions", action="store_true",
                   help="print the versions of Python, sscxr and its packages, and each fast path's state")
    _storage_arg(i)
    i.set_defaults(func=_info)
    d = sub.add_parser("demo", help="synthetic archive -> store -> catalog -> aligned result + plot")
    d.add_argument("--out", default="demo-output", help="folder for the archive, store and plot")
    d.add_argument("--preset", default="small", help="synthetic archive size (tiny, small, full)")
    d.add_argument("--write-archive", metavar="DIR", help="only write the synthetic archive into DIR")
    d.set_defaults(func=_demo)
    _catalog_parser(sub.add_parser("catalog", help="build or search the intake catalog"))
    return p


def _storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-options", type=_json, default=None, metavar="JSON",
                   help='fsspec options, e.g. \'{"anon": true}\' or endpoint_url/key/secret')


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--storage-options is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--storage-options must be a JSON object")
    return value


def _convert_parser(c: argparse.ArgumentParser) -> None:
    c.add_argument("src", help="session .mat, session/animal folder, or the archive's .tar/.tar.gz")
    c.add_argument("dest", help="store URL: path, memory://..., s3://bucket/x.zarr, ...")
    _storage_arg(c)
    par = c.add_mutually_exclusive_group()
    par.add_argument("--workers", type=int, help="run on a dask.distributed LocalCluster of N worker processes (the cores shared among them)")
    par.add_argument("--scheduler", help="run on an existing dask.distributed scheduler (ADDRESS)")
    c.add_argument("--raw", action=argparse.BooleanOptionalAction, default=False,
                   help="include raw imaging TIFFs and whisker videos")
    c.add_argument("--red", action="store_true", help="with --raw, keep the red channel too")
    c.add_argument("--allow-missing", action="store_true", help="with --raw, mask frames of absent TIFFs")
    mode = c.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing store")
    mode.add_argument("--resume", action="store_true", help="finish an interrupted conversion")
    c.add_argument("--break-lock", action="store_true",
                   help="take over DEST's writer lock even if another conversion seems to hold it")
    c.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    c.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: when stderr is a terminal)")
    _archive_args(c)
    c.set_defaults(func=_convert)


def _archive_args(c: argparse.ArgumentParser) -> None:
    """Options of a SRC holding several units (a whole archive; DEST is then a store root)."""
    a = c.add_argument_group("several units (SRC a download folder; DEST a folder of stores)")
    a.add_argument("--dry-run", action="store_true",
                   help="list the units, their sources and sizes, what would be written and an estimate; write nothing")
    a.add_argument("--only", action="append", metavar="GLOB", help="convert only units whose name matches (repeatable)")
    a.add_argument("--check-hashes", action="store_true",
                   help="compare sources by sha256 even when name, size and mtime are as recorded")
    a.add_argument("--units-in-flight", type=int, metavar="N",
                   help="units converted at once (default: one per worker process); bounds memory")


def _catalog_parser(c: argparse.ArgumentParser) -> None:
    sub = c.add_subparsers(dest="catalog_command")
    b = sub.add_parser("build", help="write/refresh catalog entries from the stores under ROOT")
    b.add_argument("root")
    b.add_argument("--out", help="catalog YAML to write (default: print)")
    _storage_arg(b)
    b.set_defaults(func=_catalog_build)
    ls = sub.add_parser("list", help="list catalog entries, optionally filtered")
    ls.add_argument("--catalog", help="catalog path or URL (default: the shipped one)")
    ls.add_argument("--archive"), ls.add_argument("--animal"), ls.add_argument("--ablation")
    ls.set_defaults(func=_catalog_list)


def _conversion() -> Any:
    try:
        import sscxr_conversion
    except ImportError as exc:
        from .errors import MissingDependencyError

        raise MissingDependencyError("sscxr-conversion", "converting and verifying",
                                     install="pip install ./conversion (from the sscxr source tree)") from exc
    return sscxr_conversion


def _convert(args: argparse.Namespace) -> int:
    _check_convert_args(args)
    conv = _conversion()
    if conv.is_archive_source(args.src, args.dest):
        return _convert_archive(args, conv)
    archive_only = [f"--{k.replace('_', '-')}" for k in ("dry_run", "only", "check_hashes", "units_in_flight")
                    if getattr(args, k, None)]
    if archive_only:
        print(f"sscxr convert: error: {' '.join(archive_only)} applies to a SRC holding several units (a download "
              f"folder), and {args.src} is one unit", file=sys.stderr)
        return 2
    spec = conv.ConversionSpec(raw=args.raw, red=args.red, allow_missing=args.allow_missing)
    with _storage_failures(args.dest, args.storage_options):
        result = conv.convert(args.src, args.dest, storage_options=args.storage_options, spec=spec,
                              workers=args.workers, scheduler=args.scheduler, overwrite=args.overwrite,
                              resume=args.resume, progress=_bars(args), break_lock=args.break_lock)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not args.quiet:
        print(result)
    return 0


_STORAGE_MODULES = ("obstore", "botocore", "aiobotocore", "s3fs", "aiohttp", "gcsfs", "adlfs")


@contextlib.contextmanager
def _storage_failures(dest: str, storage_options: Mapping[str, Any] | None) -> Iterator[None]:
    """A failure of the storage client writing a remote DEST, from wherever in the conversion it
    comes, as one :class:`StorageAccessError` line (``sscxr.io.storage_errors``). Errors of the
    local source (an ``OSError`` with a file name, anything else) pass unchanged."""
    from ._stores import LOCAL_PROTOCOLS as _LOCAL_PROTOCOLS, protocol as _protocol, storage_errors

    if "::" not in dest and _protocol(dest) in _LOCAL_PROTOCOLS:
        yield
        return
    try:
        yield
    except SscxrError:
        raise
    except Exception as exc:
        local_file = isinstance(exc, OSError) and exc.filename is not None and os.path.exists(str(exc.filename))
        if local_file or not (type(exc).__module__.split(".")[0] in _STORAGE_MODULES or isinstance(exc, OSError)):
            raise
        with storage_errors(dest, storage_options, writing=True):
            raise


def _check_convert_args(args: argparse.Namespace) -> None:
    """Refuse, before any reading, what would fail late or hang: ``--workers`` below 1, a SRC
    that does not exist, a local DEST that is a file or cannot be created."""
    if args.workers is not None and args.workers < 1:
        raise SscxrError(f"--workers must be 1 or more (got {args.workers}); leave it out to run in this process")
    if not Path(args.src).exists():
        raise SourceFormatError(args.src, "does not exist")
    _check_local_dest(args.dest)


def _check_local_dest(dest: str) -> None:
    """A local DEST must be a directory or not exist, and be creatable (tries one file there)."""
    from ._stores import LOCAL_PROTOCOLS as _LOCAL_PROTOCOLS, protocol as _protocol

    if "::" in dest or _protocol(dest) not in _LOCAL_PROTOCOLS:
        return
    path = Path(os.path.expanduser(dest.split("://", 1)[1] if "://" in dest else dest))
    if path.exists() and not path.is_dir():
        raise StorageAccessError(f"DEST {dest} is a file, not a store: give a new path (stores end in .zarr)")
    parent = path if path.is_dir() else next((p for p in path.absolute().parents if p.exists()), Path("/"))
    if not parent.is_dir():
        raise StorageAccessError(f"DEST {dest} cannot be created: {parent} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".sscxr-write-probe-", dir=parent)
    except OSError as exc:
        raise StorageAccessError(f"DEST {dest} cannot be written: {parent} is not writable "
                                 f"({exc.strerror or type(exc).__name__})") from None  # fmt: skip
    os.close(fd)
    os.unlink(probe)


def _bars(args: argparse.Namespace) -> bool:
    """Progress bars on a terminal only: redirected to a file or a pipe (a batch job's log) they
    would only add lines of carriage returns to the messages."""
    if args.quiet or args.progress is False:
        return False
    return bool(args.progress) or sys.stderr.isatty()


def _convert_archive(args: argparse.Namespace, conv: Any) -> int:
    """SRC holds several units: each to DEST/<unit>.zarr, a report and a catalog at DEST."""
    if args.units_in_flight is not None and args.units_in_flight < 1:
        print("sscxr convert: error: --units-in-flight must be at least 1", file=sys.stderr)
        return 2
    spec = conv.ConversionSpec(raw=args.raw, red=args.red, allow_missing=args.allow_missing)
    with _storage_failures(args.dest, args.storage_options):
        report = conv.convert_archive(args.src, args.dest, storage_options=args.storage_options, spec=spec,
                                      workers=args.workers, scheduler=args.scheduler, only=args.only,
                                      dry_run=args.dry_run, overwrite=args.overwrite,
                                      check_hashes=args.check_hashes, units_in_flight=args.units_in_flight,
                                      progress=_bars(args), verbose=not args.quiet, break_lock=args.break_lock)
    print(report.summary())
    for unit in report.failed:
        print(f"sscxr convert: {unit.unit} failed: {unit.error}", file=sys.stderr)
    return int(report.exit_code)


def _verify(args: argparse.Namespace) -> int:
    _conversion().verify(args.src, args.dest, storage_options=args.storage_options)
    print(f"{args.dest}: every value matches {args.src}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .info import describe_store, show_versions

    if args.url is not None:
        print(describe_store(args.url, storage_options=args.storage_options))
    if args.versions or args.url is None:
        show_versions()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo, write_archive

    if args.write_archive:
        print(write_archive(args.write_archive, preset=args.preset))
        return 0
    run_demo(args.out, preset=args.preset)
    return 0


def _catalog_build(args: argparse.Namespace) -> int:
    from .catalog import build_catalog

    text = build_catalog(args.root, storage_options=args.storage_options, out=args.out)
    if not args.out:
        print(text)
    return 0


def _catalog_list(args: argparse.Namespace) -> int:
    from .catalog import find, open_catalog

    cat = open_catalog(args.catalog)
    query = {k: v for k in ("archive", "animal", "ablation") if (v := getattr(args, k))}
    for name in find(cat, **query):
        print(name)
    return 0


if __name__ == "__main__":  # pragma: no cover
    run()
