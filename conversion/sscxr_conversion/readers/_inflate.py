"""Raw layer: the errors of damaged DEFLATE data, whichever library inflates it.

Tarballs are inflated by Intel's ISA-L (``isal``) when it is installed, else by zlib; a damaged
stream raises either library's error, both listed in :data:`INFLATE_ERRORS`.

>>> import zlib
>>> try:
...     zlib.decompress(b"not deflate data")
... except INFLATE_ERRORS:
...     print("damaged")
damaged
"""

from __future__ import annotations

import types
import zlib

_inflate_module: types.ModuleType
try:  # ISA-L inflates the same zlib streams about twice as fast
    from isal import isal_zlib as _inflate_module
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _inflate_module = zlib

INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _inflate_module.error)  # damaged DEFLATE data
