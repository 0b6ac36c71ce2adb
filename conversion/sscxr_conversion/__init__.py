"""sscxr-conversion: CRCNS ssc-1 / ssc-11 MATLAB archives -> sscxr zarr stores.

>>> from sscxr_conversion import convert, verify                    # doctest: +SKIP
>>> result = convert("an197522_2013_03_08_session.mat", "out.zarr")  # doctest: +SKIP
>>> verify("an197522_2013_03_08_session.mat", "out.zarr")           # doctest: +SKIP
[]
>>> report = convert_archive("crcns_download/", "stores/", workers=4)  # doctest: +SKIP
"""

from __future__ import annotations

from .archive import ArchiveReport, UnitReport, convert_archive, find_units, is_archive_source
from .pipeline import ConversionResult, convert, detect_archive
from .spec import ConversionSpec
from .verify import verify

__all__ = ["convert", "verify", "detect_archive", "ConversionSpec", "ConversionResult", "convert_archive",
           "ArchiveReport", "UnitReport", "find_units", "is_archive_source"]
