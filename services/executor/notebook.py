"""Run a Jupyter notebook headless on a real kernel: ``python -m jobmesh.executor.notebook
NB.ipynb``, inside a job's run directory.

Parameters come as JSON in JOBMESH_PARAMETERS and are injected papermill-style: a cell
tagged ``injected-parameters`` right after the cell tagged ``parameters`` (or first). The
executed notebook is saved next to the log as ``<name>.out.ipynb``. Cell output goes to
the log as each cell finishes, with a progress line per cell. A failing cell fails the
job; its error goes to the ``reason`` file, which the executor reports.

The notebook's code runs on the same Python as a ``.py`` job's: ``venv:``'s ``bin/python``,
else the ``python3`` found first on the job's PATH (that Python needs ``ipykernel``).
nbclient, which drives the kernel, runs here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


def inject(nb: Any, params: dict[str, Any]) -> None:
    from nbformat.v4 import new_code_cell

    if not params:
        return
    lines = ["# Parameters injected by jobmesh"]
    lines += [f"{k} = {v!r}" for k, v in params.items()]
    cell = new_code_cell("\n".join(lines), metadata={"tags": ["injected-parameters"]})
    at = next((i + 1 for i, c in enumerate(nb.cells)
               if "parameters" in c.get("metadata", {}).get("tags", [])), 0)
    nb.cells.insert(at, cell)


def main(argv: list[str]) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    if not argv:
        print("usage: python -m jobmesh.executor.notebook NOTEBOOK.ipynb", file=sys.stderr)
        return 2
    src = Path(argv[0])
    name = os.environ.get("JOBMESH_NOTEBOOK_NAME", src.stem)
    out = src.with_name(f"{name}.out.ipynb")
    params = json.loads(os.environ.get("JOBMESH_PARAMETERS") or "{}")
    nb = nbformat.read(src, as_version=4)
    inject(nb, params)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    done = [0]

    def on_cell_executed(cell: Any, cell_index: int, execute_reply: Any) -> None:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                print(o.get("text", ""), end="", flush=True)
            elif o.get("output_type") in ("execute_result", "display_data"):
                text = o.get("data", {}).get("text/plain")
                if text:
                    print(text, flush=True)
        done[0] += 1
        pct = round(100 * done[0] / max(1, len(code_cells)))
        print(f"# jobmesh progress={pct} msg=\"cell {done[0]}/{len(code_cells)}\"", flush=True)

    client = NotebookClient(nb, timeout=None, kernel_name="python3",
                            resources={"metadata": {"path": str(src.parent)}},
                            on_cell_executed=on_cell_executed)
    python, problem = kernel_python()
    if problem:
        Path("reason").write_text(f"notebook could not run: {problem}\n")
        print(problem, file=sys.stderr)
        return 1
    client.kernel_manager_class = _manager(python)
    try:
        client.execute()
    except CellExecutionError as exc:
        reason = f"{exc.ename}: {exc.evalue}" if getattr(exc, "ename", None) else str(exc)
        Path("reason").write_text(f"notebook cell failed: {reason}\n")
        print(str(exc), file=sys.stderr)
        return 1
    except Exception as exc:  # a kernel that will not start, a missing ipykernel
        Path("reason").write_text(f"notebook could not run: {type(exc).__name__}: {exc}\n")
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        nbformat.write(nb, out)
    return 0


def kernel_python() -> tuple[str, str | None]:
    """The Python the kernel runs on, and why it cannot (None when it can): the venv's,
    else the first ``python3`` on PATH, as for ``.py`` jobs."""
    venv = os.environ.get("JOBMESH_VENV")
    python = f"{venv}/bin/python" if venv else shutil.which("python3")
    if python is None:
        return "", ("no python3 on the job's PATH; install Python 3 with ipykernel, or set "
                    "venv: to an environment that has it")
    try:
        check = subprocess.run([python, "-c", "import ipykernel"], capture_output=True,
                               timeout=120, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return python, f"cannot start {python}: {exc}"
    if check.returncode != 0:
        where = "venv:" if venv else "the first python3 on the job's PATH"
        return python, (f"{python} ({where}) has no ipykernel; install it there "
                        f"('{python} -m pip install ipykernel') or set venv: to an "
                        "environment that has it")
    return python, None


def _manager(python: str) -> Any:
    from jupyter_client.manager import AsyncKernelManager

    class KernelOnJobPython(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments: Any = None) -> list[str]:
            cmd = super().format_kernel_cmd(extra_arguments)
            return [python, *cmd[1:]]

    return KernelOnJobPython


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
