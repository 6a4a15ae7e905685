"""train.py: "train" on data.csv for --epochs epochs, reporting progress per epoch."""
import argparse

from jobmesh import output, progress

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
args = parser.parse_args()
rows = [line.split(",") for line in open("data.csv").read().split()]
for epoch in range(1, args.epochs + 1):
    progress(100 * epoch / args.epochs, msg=f"epoch {epoch}")
output("rows", len(rows))
print(f"trained on {len(rows)} rows for {args.epochs} epochs")
