"""One-line messages the CLI commands (cli, demo, bench) print: shared here, below all of them."""
from __future__ import annotations

import re
import sys


def short_reason(why: str) -> str:
    """A vendor message without its nested detail: 'hiprtc unavailable (X: y (z); hint); pip install
    w' -> 'hiprtc unavailable; pip install w'."""
    line = why.splitlines()[0] if why else ""
    while True:
        shorter = re.sub(r"\s*\([^()]*\)", "", line)
        if shorter == line:
            return line
        line = shorter


def refuse(cmd: str, why: str) -> int:
    """One line on stderr and exit status 2, as argparse does for a bad option."""
    print(f"jitgemm {cmd}: {why}", file=sys.stderr)
    return 2
