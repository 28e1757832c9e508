#!/usr/bin/env python3
"""Export scikit-learn's handwritten digits (BSD-3-Clause, 1,797 samples x 64 features) to CSV.

Columns: pixel_0 .. pixel_63 (integers 0-16, an 8x8 image row by row) and `target` (the digit 0-9).
Usage: export_digits.py OUT.csv
"""
import csv
import sys

from sklearn.datasets import load_digits


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    digits = load_digits()
    with open(sys.argv[1], "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([f"pixel_{i}" for i in range(digits.data.shape[1])] + ["target"])
        for row, target in zip(digits.data, digits.target):
            writer.writerow([int(v) for v in row] + [int(target)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
