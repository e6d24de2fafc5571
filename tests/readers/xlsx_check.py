"""Independent reader of an XLSX report: openpyxl loads the workbook and every cell is
compared, type and value, with the source rows Postgres gave as text (expected.json).

usage: xlsx_check.py REPORT EXPECTED SHEET_NAME SHEET_ROWS TRUNCATE(0|1)
Checks the sheets are SHEET_NAME, "SHEET_NAME (2)", ... with a bold header row each and the
data rows SHEET_ROWS says (comma-separated, one number per sheet), dates with their number
formats; prints
`sheets=<n> rows=<n> values=<m>` and exits 0 when every value matches; exits 1 naming the
first mismatches otherwise.
"""
import datetime
import json
import math
import re
import sys
from decimal import Decimal

import openpyxl

report, expected_path, sheet_name, sheet_rows, truncate = sys.argv[1:6]
sheet_rows = [int(n) for n in sheet_rows.split(",")]
truncate = truncate == "1"
expected = json.load(open(expected_path, encoding="utf-8"))
columns, kinds, rows = expected["columns"], expected["kinds"], expected["rows"]
EXCEL_MAX = 9.99999999999999e307
TINY = 2.2250738585072014e-308
problems = []


def number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def in_range(x):
    return x == 0 or TINY <= abs(x) <= EXCEL_MAX


def excel_day(text):
    """The date of an ISO text that Excel can hold, else None."""
    try:
        d = datetime.date.fromisoformat(text)
    except ValueError:
        return None
    return d if datetime.date(1900, 3, 1) <= d <= datetime.date(9999, 12, 31) else None


def excel_moment(text):
    """The timestamp (cut to the millisecond) of an ISO text Excel can hold, else None."""
    try:
        t = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if not (t.year >= 1900 and t.date() >= datetime.date(1900, 3, 1) and t.year <= 9999):
        return None
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def to_millisecond(v):
    # openpyxl turns the serial into microseconds; the report holds milliseconds.
    ms = round(v.microsecond / 1000)
    return v.replace(microsecond=0) + datetime.timedelta(milliseconds=ms)


def matches(kind, cell, e):
    v = cell.value
    if e is None or e == "":
        return v is None
    if kind == "int":
        if abs(int(e)) < 10**15:
            return number(v) and v == int(e)
        return v == e
    if kind == "float":
        if e in ("NaN", "Infinity", "-Infinity", "-0"):
            return v == e
        x = float(e)
        if not in_range(x):
            return v == e
        return number(v) and float(v) == x and math.copysign(1, float(v)) == math.copysign(1, x)
    if kind == "numeric":
        if e in ("NaN", "Infinity", "-Infinity"):
            return v == e
        d = Decimal(e)
        digits = len(d.normalize().as_tuple().digits) if d != 0 else 1
        if d == 0 or (digits <= 15 and in_range(float(d)) and Decimal(repr(float(d))) == d):
            return number(v) and Decimal(repr(float(v))) == d
        return v == e
    if kind == "bool":
        return v is (e == "true")
    if kind == "date":
        day = excel_day(e)
        if day is None:
            return v == e
        return (isinstance(v, datetime.datetime) and v.time() == datetime.time(0)
                and v.date() == day and cell.number_format == "yyyy-mm-dd")
    if kind == "timestamp":
        moment = excel_moment(e)
        if moment is None:
            return v == e
        return (isinstance(v, datetime.datetime) and to_millisecond(v) == moment
                and cell.number_format == "yyyy-mm-dd hh:mm:ss.000")
    # text, uuid, json, ...
    want = e[:32767] if truncate else e
    return isinstance(v, str) and ooxml_unescape(v) == want


def ooxml_unescape(text):
    """What Excel shows for a stored string: OOXML writes characters XML cannot hold (control
    characters, CR) as _xHHHH_, and a literal "_xHHHH_" as "_x005F_xHHHH_". openpyxl 3.1
    leaves them as stored, Excel decodes them."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


book = openpyxl.load_workbook(report)
names = [sheet_name] + [f"{sheet_name} ({i})" for i in range(2, len(sheet_rows) + 1)]
if book.sheetnames != names:
    sys.exit(f"sheets {book.sheetnames}, expected {names}")
values = 0
seen = 0
for s, ws in enumerate(book.worksheets):
    grid = list(ws.iter_rows())
    if not grid:
        sys.exit(f"sheet {ws.title!r} is empty")
    header = grid[0]
    if [c.value for c in header] != columns:
        sys.exit(f"sheet {ws.title!r} header {[c.value for c in header]}, expected {columns}")
    if not all(c.font.b for c in header):
        sys.exit(f"sheet {ws.title!r} header is not bold")
    body = grid[1:]
    want = sheet_rows[s]
    if len(body) != want:
        sys.exit(f"sheet {ws.title!r} has {len(body)} data rows, expected {want}")
    for r, line in enumerate(body):
        source = rows[seen + r]
        cells = list(line) + [None] * (len(columns) - len(line))
        for c, (kind, e) in enumerate(zip(kinds, source)):
            cell = cells[c]
            ok = matches(kind, cell, e) if cell is not None else (e is None or e == "")
            values += 1
            if not ok and len(problems) < 20:
                got = None if cell is None else (type(cell.value).__name__, cell.value, cell.number_format)
                problems.append(f"sheet {ws.title!r} row {r + 2} {columns[c]} ({kind}): got {got!r}, source {e!r}")
    seen += len(body)
if seen != len(rows):
    sys.exit(f"{seen} data rows, {len(rows)} source rows")
if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"sheets={len(book.worksheets)} rows={seen} values={values}")
