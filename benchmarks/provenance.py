"""What a results file records about how it was made: the command as typed and the commit it ran on."""

from __future__ import annotations

import shlex
import sys

from contract.metadata import source_commit


def provenance(module: str, argv: list[str] | None = None) -> dict[str, str]:
    """{"command": "python -m <module> <arguments>", "commit": HEAD (with "-dirty" for local changes)}."""
    arguments = sys.argv[1:] if argv is None else argv
    return {"command": shlex.join(["python", "-m", module, *arguments]), "commit": source_commit()}
