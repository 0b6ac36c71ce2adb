"""Progress bars that suit where the code runs, without warnings (needs ``tqdm``: ``sscxr[progress]``).

In a Jupyter kernel with ipywidgets installed, :func:`progress_bar` is a widget
(``tqdm.auto``); everywhere else (a terminal, a script, a notebook without ipywidgets) it is
the text bar of ``tqdm``. ``tqdm.auto`` alone would print ``TqdmWarning: IProgress not found``
in a notebook without ipywidgets; this never does.

>>> import io
>>> with progress_bar(total=3, desc="groups", file=io.StringIO()) as bar:
...     for _ in range(3):
...         _ = bar.update(1)
>>> bar.n
3
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable
from typing import Any

from .errors import MissingDependencyError

__all__ = ["progress_bar", "progress_class"]


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (lab, notebook, VS Code, colab), the case tqdm.auto renders as a widget."""
    return "ipykernel.zmqshell" in sys.modules or "IPython.utils._process_emscripten" in sys.modules


def _widgets_importable() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def progress_class() -> type:
    """The tqdm class to use here: ``tqdm.auto.tqdm`` in a notebook with ipywidgets, else ``tqdm.std.tqdm``.

    >>> progress_class().__module__
    'tqdm.std'
    """
    try:
        from tqdm.std import TqdmWarning, tqdm
    except ImportError as exc:
        raise MissingDependencyError("tqdm", "progress bars", "progress") from exc
    if _in_notebook() and _widgets_importable():
        with warnings.catch_warnings():  # an ipywidgets too old for tqdm: the text bar, silently
            warnings.simplefilter("ignore", TqdmWarning)
            from tqdm.auto import tqdm as auto

        return auto
    return tqdm


def progress_bar(iterable: Iterable[Any] | None = None, *, total: float | None = None, desc: str | None = None,
                 unit: str = "it", disable: bool = False, **kwargs: Any) -> Any:
    """A tqdm progress bar of :func:`progress_class` (same arguments as ``tqdm.tqdm``).

    >>> sum(progress_bar(range(4), desc="cells", disable=True))
    6
    """
    return progress_class()(iterable, total=total, desc=desc, unit=unit, disable=disable, **kwargs)
