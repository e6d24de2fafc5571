"""Independent reader of an Excel-style CSV report (BOM, CRLF): Python's csv module reads it as
Excel would be told to (utf-8-sig, dialect excel) and prints the header and a row count.

usage: csv_check.py REPORT
"""
import csv
import sys

with open(sys.argv[1], encoding="utf-8-sig", newline="") as f:
    rows = list(csv.reader(f, dialect="excel"))
print(",".join(rows[0]))
print(f"records={len(rows) - 1}")
