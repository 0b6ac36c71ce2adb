"""Exception classes of sscxr.

Every error subclasses the builtin it refines, so ``except ValueError`` still works, and its
message says what was expected, what was found and what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "closest",
    "InvalidChoiceError",
    "UnknownEntryError",
    "CatalogError",
    "StoreRootNotSetError",
    "SscxrError",
    "SourceFormatError",
    "MissingFieldError",
    "InconsistentSourceError",
    "StoreExistsError",
    "StoreNotFoundError",
    "IncompleteStoreError",
    "SchemaError",
    "Problem",
    "ProblemKind",
    "VerificationError",
    "StoreVersionWarning",
    "MissingDependencyError",
    "StorageAccessError",
    "StoreChangedError",
    "StoreLockedError",
]


class SscxrError(Exception):
    """Base class of every sscxr error."""


class SourceFormatError(SscxrError, ValueError):
    """A source file is not what it should be (not a MAT file, truncated, wrong archive).

    The message names the file, the field path inside it (when there is one) and the problem.
    """

    def __init__(self, file: str, problem: str, *, field: str | None = None, hint: str | None = None):
        self.file = str(file)
        self.field = field
        self.problem = problem
        where = f"{self.file}" + (f", field {field!r}" if field else "")
        msg = f"{where}: {problem}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class MissingFieldError(SourceFormatError, KeyError):
    """A required field is absent from a source file."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


class InconsistentSourceError(SourceFormatError):
    """Fields of a source file disagree with each other (e.g. lengths)."""


class StoreExistsError(SscxrError, FileExistsError):
    """The destination store exists and neither ``--overwrite`` nor ``--resume`` was given."""


class IncompleteStoreError(SscxrError, OSError):
    """A store was opened whose conversion did not finish."""


ProblemKind: TypeAlias = Literal[
    "missing-group", "missing-variable", "missing-attr", "wrong-dims", "wrong-units", "wrong-dtype", "bad-value",
    "mismatch", "other",
]
"""What a :class:`Problem` is about: a group, variable or attr that is absent; a variable's dims,
units or dtype; an attr or root attr with a wrong value (``bad-value``); two groups that disagree
(``mismatch``, e.g. a raw stack and its imaging subvolume); ``other`` for a bare message."""


@dataclass(frozen=True)
class Problem:
    """One schema violation, as data: where (``path``, ``variable``), what (``kind``), and the
    readable ``message`` that ``str()`` gives. Filter on the fields, never on the message.

    ``path`` is the group path without the leading slash (``"imaging/subvolume_01"``; ``""`` for
    the root), ``variable`` the variable's name or None for the group itself or its attrs.

    >>> p = Problem("trials", "start_time", "wrong-units", "/trials/start_time: units are 'ms', expected 's'")
    >>> p.kind, p.in_group("trials"), str(p)
    ('wrong-units', True, "/trials/start_time: units are 'ms', expected 's'")
    """

    path: str
    variable: str | None
    kind: ProblemKind
    message: str

    def __str__(self) -> str:
        return self.message

    def in_group(self, group: str) -> bool:
        """True when the problem is in ``group`` or below it (``""``: anywhere).

        >>> Problem("imaging/subvolume_01/rois", None, "missing-group", "...").in_group("imaging/subvolume_01")
        True
        """
        group = group.strip("/")
        return not group or self.path == group or self.path.startswith(group + "/")


class SchemaError(SscxrError, ValueError):
    """A store does not follow the sscxr schema; ``problems`` lists every violation as a
    :class:`Problem` (a bare message given here becomes one of kind ``"other"`` at the root).

    >>> err = SchemaError([Problem("", None, "missing-attr", "root attrs: missing 'archive'")], where="x.zarr")
    >>> print(err)
    x.zarr violates the sscxr schema in 1 place(s):
      - root attrs: missing 'archive'
    >>> SchemaError(["a bare message"]).problems[0].kind
    'other'
    """

    def __init__(self, problems: Sequence[Problem | str], *, where: str = "store"):
        self.problems = [p if isinstance(p, Problem) else Problem("", None, "other", str(p)) for p in problems]
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{where} violates the sscxr schema in {len(self.problems)} place(s):\n{lines}")


class VerificationError(SscxrError, AssertionError):
    """A store does not hold the same values as its source; ``mismatches`` lists each."""

    def __init__(self, mismatches: list[str]):
        self.mismatches = list(mismatches)
        lines = "\n".join(f"  - {m}" for m in self.mismatches[:50])
        more = f"\n  ... and {len(self.mismatches) - 50} more" if len(self.mismatches) > 50 else ""
        super().__init__(f"{len(self.mismatches)} mismatch(es) between source and store:\n{lines}{more}")


class StoreVersionWarning(UserWarning):
    """A store's content version differs from the one a catalog entry pins."""


class MissingDependencyError(SscxrError, ImportError):
    """An optional dependency needed for this operation is not installed."""

    def __init__(self, package: str, purpose: str, extra: str | None = None, *, install: str | None = None):
        install = install or (f"pip install 'sscxr[{extra}]'" if extra else f"pip install {package}")
        super().__init__(f"{purpose} needs the optional package {package!r}; install it with `{install}`.")


class StorageAccessError(SscxrError, OSError):
    """A store URL could not be reached (bad URL, missing or wrong credentials, no permission)."""


class StoreNotFoundError(StorageAccessError):
    """Nothing is stored at the URL (the service answered: no such store); not an access refusal."""


class StoreChangedError(SscxrError, OSError):
    """The store version a reader opened was removed by a newer conversion: reopen it.

    Raised instead of handing out fill values for chunks that are gone; see
    ``docs/publication.md``.
    """


class StoreLockedError(SscxrError, OSError):
    """Another conversion is writing the same destination (its lock is held)."""


def closest(value: object, valid: Iterable[object], n: int = 3) -> list[str]:
    """Up to ``n`` valid names close to ``value``: those that contain it (a prefix typed, an
    animal id for its sessions), then the most similar (:func:`difflib.get_close_matches`).

    >>> closest("first_tuch", ["pole_in", "first_touch", "first_lick"])
    ['first_touch', 'first_lick']
    >>> closest("an197522", ["an197522_2013_03_08", "an197522_2013_03_10", "an229717_2013_12_01"])
    ['an197522_2013_03_08', 'an197522_2013_03_10']
    """
    text, names = str(value), [str(v) for v in valid]
    containing = [v for v in names if text and text in v] if len(text) >= 3 else []
    similar = difflib.get_close_matches(text, names, n=n, cutoff=0.6)
    return list(dict.fromkeys([*containing, *similar]))[:n]


class InvalidChoiceError(SscxrError, ValueError):
    """An argument is not one of the names it can take; the message suggests the closest and
    lists them all. ``argument``, ``value``, ``valid`` and ``suggestions`` are kept.

    >>> raise InvalidChoiceError("how", "absmx", ["mean", "max", "min", "absmax"])
    Traceback (most recent call last):
    ...
    sscxr.errors.InvalidChoiceError: how='absmx' is not valid; did you mean 'absmax'? Valid: 'mean', 'max', 'min', 'absmax'
    """

    def __init__(self, argument: str, value: object, valid: Iterable[object], *, what: str = "valid",
                 hint: str | None = None):  # fmt: skip
        self.argument, self.value = argument, value
        self.valid = [str(v) for v in valid]
        self.suggestions = closest(value, self.valid)
        guess = f"; did you mean {' or '.join(map(repr, self.suggestions))}?" if self.suggestions else "."
        msg = f"{argument}={value!r} is not {what}{guess} Valid: {', '.join(map(repr, self.valid))}"
        super().__init__(msg + (f" ({hint})" if hint else ""))


class UnknownEntryError(InvalidChoiceError, KeyError):
    """A catalog has no entry of that name (a ``KeyError``, as intake's own)."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class CatalogError(SscxrError, ValueError):
    """intake could not open a catalog or build one of its entries; the message is intake's, in full."""


class StoreRootNotSetError(SscxrError, ValueError):
    """A catalog entry was read but no store root says where the stores are."""
