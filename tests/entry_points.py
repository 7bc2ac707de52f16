"""The console scripts setup.cfg declares, run without installing the package: `entry_point_command("ast-tag")` is
the command line that calls the declared function on this interpreter (what the installed script does)."""

from __future__ import annotations

import configparser
import sys
from pathlib import Path

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


def console_scripts() -> dict[str, str]:
    """{script name: "module:function"} from setup.cfg's [options.entry_points] console_scripts."""
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG, encoding="utf-8")
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict((part.strip() for part in line.split("=", 1)) for line in lines)


def entry_point_command(name: str) -> list[str]:
    """argv prefix that runs script `name` as pip's generated wrapper would: sys.exit(function())."""
    module, function = console_scripts()[name].split(":")
    code = f"import sys; from {module} import {function}; sys.argv[0] = {name!r}; sys.exit({function}())"
    return [sys.executable, "-c", code]
