#!/usr/bin/env bash
# Make a small "data set" (no network needed) and report progress.
set -euo pipefail
mkdir -p data
for i in $(seq 1 5); do
  echo "$i,$((i * 7 % 10))" >> data/digits.csv
  jobmesh progress $((i * 20)) -m "row $i"
done
echo "wrote $(wc -l < data/digits.csv) rows"
