"""A seeded fuzz run of the loader (issue 14): random mutations of valid workflows,
YAML tags, aliases, huge numbers, control characters, deep nesting. Every case ends as a
loaded workflow (which survives JSON and a scheduler decision) or a clean SpecError,
never another exception, each within bench/fuzz_loader.py's time bound. The full run of
20,000 cases is ``bench/fuzz_loader.py``."""

from __future__ import annotations

import importlib.util
import resource
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

_PATH = Path(__file__).resolve().parents[2] / "bench" / "fuzz_loader.py"
_spec = importlib.util.spec_from_file_location("fuzz_loader", _PATH)
assert _spec is not None and _spec.loader is not None
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

CASES = 2000  # about 10 s; bench/fuzz_loader.py runs 20,000


@pytest.mark.parametrize("part", range(4))
def test_every_fuzzed_workflow_is_loaded_or_refused_cleanly(part: int) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    size = CASES // 4
    crashes, slowest, _ = fuzz.run(seed=2026, cases=size, start=part * size)
    assert crashes == [], "\n\n".join(f"case {n}:\n{fuzz.make_case(2026, n)[:300]}\n{what}"
                                      for n, what in crashes[:3])
    assert slowest < fuzz.TIME_BOUND
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 500, f"the fuzz cases took {grown_mb:.0f} MB"


def test_the_fuzzer_makes_the_hostile_kinds_it_promises() -> None:
    texts = [fuzz.make_case(2026, n) for n in range(400)]
    assert any("*a" in t and "&a" in t for t in texts)            # alias bombs
    assert any("!!int" in t or "!!timestamp" in t for t in texts)  # tags
    assert any("[[[[[[" in t for t in texts)                       # deep nesting
    assert any("\x00" in t for t in texts)                         # control characters
    assert any(str(10 ** 100) in t for t in texts)                 # huge numbers
    assert fuzz.check("x: !!int a\n", Path(".")) is None           # a clean refusal
    assert fuzz.check("workflow: {nodes: {a: {exec: 'true'}}}\n", Path(".")) is None
