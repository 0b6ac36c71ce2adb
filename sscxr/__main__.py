"""``python -m sscxr``: the ``sscxr`` command (see :mod:`sscxr.cli`).

>>> import subprocess, sys
>>> subprocess.run([sys.executable, "-m", "sscxr", "--help"], capture_output=True).returncode  # doctest: +SKIP
0
"""

from sscxr.cli import run

if __name__ == "__main__":
    run()
