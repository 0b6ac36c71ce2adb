"""Testing helpers shipped with sscxr: synthetic archives, store assertions.

``sscxr.testing.archives`` writes synthetic CRCNS ssc-1 / ssc-11 archives with the real on-disk
layout (see ``shared/FORMATS.md``) and returns the ground truth it wrote.
"""
