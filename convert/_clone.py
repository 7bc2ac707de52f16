"""Puts the package of this clone first on sys.path, for the scripts beside this file.

`python convert/<script>.py` puts convert/, not the repository root, on sys.path, so without this a clone that was
never installed could not import `modeling_ast`. Where the package is installed, the clone's own code still wins:
these scripts exist only in a clone, and its code may be newer than a non-editable install of it.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
