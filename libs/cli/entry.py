"""The ``jobmesh`` entry point. Jobs call ``jobmesh progress N`` and ``jobmesh output K V``
often, so those two answer with the standard library alone (no typer, NATS or pydantic
imports: a few milliseconds instead of a few hundred)."""

from __future__ import annotations

import sys


def _fast(argv: list[str]) -> int | None:
    if len(argv) < 2 or argv[1] not in ("progress", "output") or "--help" in argv:
        return None
    from jobmesh import progress_line

    if argv[1] == "progress":
        rest = argv[2:]
        msg = None
        for flag in ("-m", "--msg"):
            if flag in rest:
                i = rest.index(flag)
                if i + 1 >= len(rest):
                    return None
                msg = rest[i + 1]
                rest = rest[:i] + rest[i + 2:]
        if len(rest) != 1:
            return None
        try:
            value = float(rest[0])
        except ValueError:
            return None
        if not 0 <= value <= 100:
            print("error: progress must be between 0 and 100", file=sys.stderr)
            return 2
        print(progress_line(value, msg), flush=True)
        return 0
    if len(argv) != 4 or not argv[2].replace("_", "").replace("-", "").isalnum():
        return None  # let the full command explain the problem
    print(f"# jobmesh output {argv[2]}={argv[3]}", flush=True)
    return 0


def main() -> None:
    code = _fast(sys.argv)
    if code is not None:
        sys.exit(code)
    from .main import main as full

    full()


if __name__ == "__main__":
    main()
