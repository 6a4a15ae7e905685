"""The report step of docs/hpc.md's first workflow: summarise the trained model."""
from pathlib import Path

print(f"model.pt: {Path('model.pt').stat().st_size} bytes")
