"""Second independent reader of an XLSX report: LibreOffice (`soffice --headless
--convert-to csv`, every sheet to a CSV file of its own) opens the workbook, and each value
it writes is compared with the source rows Postgres gave as text (expected.json).

usage: xlsx_soffice_check.py SOFFICE REPORT EXPECTED SHEET_NAME SHEET_ROWS
SHEET_ROWS is the data rows of each sheet, comma-separated; the sheets must be SHEET_NAME,
"SHEET_NAME (2)", ... each opening with the header row. Prints `sheets=<n> rows=<n>
values=<m>` and exits 0 when every value matches; exits 1 naming the first mismatches.

What LibreOffice's CSV writer does to values, and how they are compared: numbers are
written with at most 15 significant digits (what a spreadsheet shows; the exact double is
openpyxl's check), so a number is compared with the source rounded to 15 digits; booleans
are TRUE and FALSE; dates and timestamps are written in their cells' number formats; a line
break inside a cell is written as LF, so a CR in the source text is compared as LF.
"""
import csv
import datetime
import math
import os
import subprocess
import sys
import tempfile
from decimal import Decimal

soffice, report, expected_path, sheet_name, sheet_rows = sys.argv[1:6]
sheet_rows = [int(n) for n in sheet_rows.split(",")]
import json

expected = json.load(open(expected_path, encoding="utf-8"))
columns, kinds, rows = expected["columns"], expected["kinds"], expected["rows"]
EXCEL_MAX = 9.99999999999999e307
TINY = 2.2250738585072014e-308


def in_range(x):
    return x == 0 or TINY <= abs(x) <= EXCEL_MAX


def shown(x):
    """The double LibreOffice's 15 significant digits stand for."""
    return float(f"{x:.15g}")


def lines(text):
    return text.replace("\r\n", "\n").replace("\r", "\n")


def matches(kind, v, e):
    if e is None or e == "":
        return v == ""
    if kind == "int":
        if abs(int(e)) < 10**15:
            return v == str(int(e))
        return v == e
    if kind == "float":
        if e in ("NaN", "Infinity", "-Infinity", "-0"):
            return v == e
        x = float(e)
        if not in_range(x):
            return v == e
        return float(v) == shown(x) and math.copysign(1, float(v)) == math.copysign(1, x)
    if kind == "numeric":
        if e in ("NaN", "Infinity", "-Infinity"):
            return v == e
        d = Decimal(e)
        digits = len(d.normalize().as_tuple().digits) if d != 0 else 1
        if d == 0 or (digits <= 15 and in_range(float(d)) and Decimal(repr(float(d))) == d):
            return float(v) == shown(float(d))
        return v == e
    if kind == "bool":
        return v == ("TRUE" if e == "true" else "FALSE")
    if kind == "date":
        return v == e
    if kind == "timestamp":
        try:
            t = datetime.datetime.fromisoformat(e)
        except ValueError:
            return v == e
        if not (t.year >= 1900 and t.date() >= datetime.date(1900, 3, 1) and t.year <= 9999):
            return v == e
        return v == t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"
    return v == lines(e)


names = [sheet_name] + [f"{sheet_name} ({i})" for i in range(2, len(sheet_rows) + 1)]
with tempfile.TemporaryDirectory() as work:
    # Its own profile, so that concurrent conversions do not share (or lock) one.
    profile = "file://" + os.path.join(work, "profile")
    out = os.path.join(work, "csv")
    # 44: comma, 34: double quote, 76: UTF-8, 1: from line 1; "false" in the ninth token
    # writes values rather than their shown text where it can; -1: every sheet.
    options = "44,34,76,1,,0,false,true,false,false,false,-1"
    done = subprocess.run(
        [soffice, "--headless", "--norestore", f"-env:UserInstallation={profile}",
         "--convert-to", f"csv:Text - txt - csv (StarCalc):{options}", "--outdir", out, report],
        capture_output=True, text=True, timeout=600)
    stem = os.path.splitext(os.path.basename(report))[0]
    found = sorted(os.listdir(out)) if os.path.isdir(out) else []
    want = sorted(f"{stem}-{n}.csv" for n in names)
    if found != want:
        sys.exit(f"LibreOffice wrote {found}, expected {want}\n{done.stdout}\n{done.stderr}")
    problems = []
    seen = values = 0
    for name, count in zip(names, sheet_rows):
        with open(os.path.join(out, f"{stem}-{name}.csv"), encoding="utf-8", newline="") as f:
            grid = list(csv.reader(f))
        if not grid or grid[0] != columns:
            sys.exit(f"sheet {name!r} header {grid[:1]}, expected {columns}")
        body = grid[1:]
        if len(body) != count:
            sys.exit(f"sheet {name!r} has {len(body)} data rows, expected {count}")
        for r, line in enumerate(body):
            source = rows[seen + r]
            line = line + [""] * (len(columns) - len(line))
            for c, (kind, e) in enumerate(zip(kinds, source)):
                values += 1
                if not matches(kind, line[c], e) and len(problems) < 20:
                    problems.append(f"sheet {name!r} row {r + 2} {columns[c]} ({kind}): "
                                    f"got {line[c]!r}, source {e!r}")
        seen += count
if seen != len(rows):
    sys.exit(f"{seen} data rows, {len(rows)} source rows")
if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"sheets={len(names)} rows={seen} values={values}")
