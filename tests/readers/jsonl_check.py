"""Independent reader of a JSON Lines report: Python's own json module loads every line and
compares every value with the source rows Postgres gave as text (expected.json).

usage: jsonl_check.py REPORT EXPECTED NUMERIC_MODE(string|number) OFFSET
Prints `rows=<n> values=<m>` and exits 0 when every value matches; exits 1 naming the first
mismatches otherwise.
"""
import datetime
import json
import math
import struct
import sys
from decimal import Decimal

report, expected_path, numeric_mode, offset = sys.argv[1:5]
expected = json.load(open(expected_path, encoding="utf-8"))
columns, kinds, rows = expected["columns"], expected["kinds"], expected["rows"]
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
SPECIAL = ("NaN", "Infinity", "-Infinity")
problems = []


def num(text):
    return json.loads(text, parse_float=Decimal, parse_int=Decimal, object_pairs_hook=list)


def same_number(v, e):
    return isinstance(v, Decimal) and v == Decimal(e) and v.is_signed() == Decimal(e).is_signed()


def check(kind, v, e):
    if e is None:
        return v is None
    if kind == "int":
        return isinstance(v, Decimal) and v == Decimal(e) and v == v.to_integral_value()
    if kind in ("float4", "float8"):
        if e in SPECIAL:
            return v == e
        if not isinstance(v, Decimal):
            return False
        a, b = float(v), float(e)
        if kind == "float4":
            a, b = (struct.unpack("f", struct.pack("f", x))[0] for x in (a, b))
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if kind == "numeric":
        if numeric_mode == "string" or e in SPECIAL:
            return v == e
        d = Decimal(e)
        return isinstance(v, Decimal) and v == d and v.as_tuple().exponent == d.as_tuple().exponent
    if kind == "bool":
        return v is (e == "true")
    if kind == "timestamp":
        return isinstance(v, str) and "T" in v and datetime.datetime.fromisoformat(v) == datetime.datetime.fromisoformat(e)
    if kind == "timestamptz":
        if not isinstance(v, str) or not v.endswith(offset):
            return False
        dt = datetime.datetime.fromisoformat(v)
        return (dt - EPOCH) // datetime.timedelta(microseconds=1) == int(e)
    if kind == "json":
        return v == num(e)
    if kind.startswith("array_"):
        element = kind[len("array_"):]
        e = json.loads(e)
        return isinstance(v, list) and len(v) == len(e) and all(check(element, a, b) for a, b in zip(v, e))
    return v == e  # text, varchar, uuid, date, bytea


with open(report, "rb") as f:
    data = f.read()
if data.startswith(b"\xef\xbb\xbf"):
    sys.exit("the report starts with a BOM")
if data and not data.endswith(b"\n"):
    sys.exit("the report does not end with a line break")
lines = data.decode("utf-8").split("\n")[:-1] if data else []
if len(lines) != len(rows):
    sys.exit(f"{len(lines)} lines, {len(rows)} source rows")
values = 0
for n, (line, want) in enumerate(zip(lines, rows), 1):
    pairs = json.loads(line, parse_float=Decimal, parse_int=Decimal, object_pairs_hook=list)
    keys = [k for k, _ in pairs]
    if keys != columns:
        problems.append(f"line {n}: keys {keys}")
        continue
    for (key, v), kind, e in zip(pairs, kinds, want):
        values += 1
        if not check(kind, v, e):
            problems.append(f"line {n} column {key} ({kind}): got {str(v)[:80]!r}, source {str(e)[:80]!r}")
if problems:
    print("\n".join(problems[:20]), file=sys.stderr)
    sys.exit(1)
print(f"rows={len(lines)} values={values}")
