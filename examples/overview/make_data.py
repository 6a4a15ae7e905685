"""prepare: write N rows of made-up data to data.csv (no network needed)."""
import argparse
import random

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, default=10)
args = parser.parse_args()
rng = random.Random(42)
with open("data.csv", "w") as out:
    for i in range(args.n):
        out.write(f"{i},{rng.random():.4f}\n")
print(f"wrote {args.n} rows to data.csv")
