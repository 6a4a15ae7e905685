"""Pretend to train: read the staged data, report progress per epoch, publish accuracy."""
import argparse
import os
import time

from jobmesh import output, progress

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
args = parser.parse_args()
rows = [line.split(",") for line in open("data/digits.csv").read().split()]
accuracy = 0.0
for epoch in range(1, args.epochs + 1):
    time.sleep(0.2)
    accuracy = round(1 - 1 / (epoch + len(rows)), 3)
    progress(100 * epoch / args.epochs, msg=f"epoch {epoch} acc {accuracy}")
print(f"trained on {len(rows)} rows with seed {os.environ['SEED']}")
output("accuracy", accuracy)
