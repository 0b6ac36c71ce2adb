"""Synthetic CRCNS archives with the real on-disk layout (``shared/FORMATS.md``).

>>> from sscxr.testing.archives import write_ssc1_session
>>> truth = write_ssc1_session(tmp_path, preset="tiny", seed=0)   # doctest: +SKIP
>>> truth.mat_path.name                                             # doctest: +SKIP
'an197522_2013_03_08_session.mat'
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_ssc1_session", "write_ssc11_animal"]


def __getattr__(name: str) -> Any:  # lazy: scipy/h5py are only needed when writing
    if name in {"write_ssc1_session", "Ssc1Truth", "SSC1_PRESETS"}:
        from . import ssc1

        return getattr(ssc1, name)
    if name in {"write_ssc11_animal", "Ssc11Truth", "SSC11_PRESETS"}:
        from . import ssc11

        return getattr(ssc11, name)
    raise AttributeError(name)
