"""Independent readers of a Parquet report: pyarrow and DuckDB each load the whole file and
compare every value with the source rows Postgres gave as text (expected.json); pyarrow
also checks the footer (row count, row groups, the key column's min/max statistics) and the
logical types (UUID, JSON, DECIMAL, timestamps adjusted to UTC or not).

usage: parquet_check.py REPORT EXPECTED [REPORT ...]
More REPORTs are the further files of a split report, in order: each is opened as a Parquet
file of its own (its own footer), and together they must hold the expected rows; then also
`files=<n> rows=<r1>,<r2>,...` is printed.
Prints `pyarrow rows=<n> values=<m> row_groups=<g> key_min=<a> key_max=<b>` and
`duckdb rows=<n> values=<m>`, and exits 0 when every value matches; exits 1 naming the
first mismatches otherwise.

DuckDB holds decimals of at most 38 digits: it reads a wider DECIMAL as a double, so a
`decimal_wide` column is compared with DuckDB as a double, to 15 significant digits (pyarrow
compares it exactly).
"""
import datetime
import json
import math
import struct
import sys
import uuid
from decimal import Decimal

import duckdb
import pyarrow.parquet as pq

report, expected_path = sys.argv[1:3]
reports = [report] + sys.argv[3:]
expected = json.load(open(expected_path, encoding="utf-8"))
columns, kinds, rows = expected["columns"], expected["kinds"], expected["rows"]
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
problems = []


def parse_json(text):
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def float_bits(v, fmt):
    return struct.pack(fmt, v)


def check(kind, v, e, reader):
    if e is None:
        return v is None
    if v is None:
        return False
    if kind == "int":
        return isinstance(v, int) and v == int(e)
    if kind in ("float4", "float8"):
        want = float(e)
        if math.isnan(want):
            return isinstance(v, float) and math.isnan(v)
        fmt = ">f" if kind == "float4" else ">d"
        return isinstance(v, float) and float_bits(v, fmt) == float_bits(want, fmt)
    if kind in ("decimal", "decimal_wide"):
        d = Decimal(e)
        if kind == "decimal_wide" and reader == "duckdb":
            return isinstance(v, float) and math.isclose(v, float(d), rel_tol=1e-15)
        return isinstance(v, Decimal) and v == d and v.as_tuple().exponent == d.as_tuple().exponent
    if kind == "text":
        return v == e
    if kind == "bool":
        return v is (e == "true")
    if kind == "date":
        return isinstance(v, datetime.date) and v.isoformat() == e
    if kind == "timestamp":
        return isinstance(v, datetime.datetime) and v.tzinfo is None and v == datetime.datetime.fromisoformat(e)
    if kind == "timestamptz":
        if not isinstance(v, datetime.datetime) or v.tzinfo is None:
            return False
        return (v - EPOCH) // datetime.timedelta(microseconds=1) == int(e)
    if kind == "uuid":
        if isinstance(v, (bytes, bytearray)):
            v = uuid.UUID(bytes=bytes(v))
        return isinstance(v, uuid.UUID) and str(v) == e
    if kind == "json":
        return isinstance(v, str) and parse_json(v) == parse_json(e)
    if kind == "bytea":
        return isinstance(v, (bytes, bytearray)) and "\\x" + bytes(v).hex() == e
    if kind.startswith("array_"):
        inner = kind[len("array_"):]
        elems = json.loads(e)
        return isinstance(v, list) and len(v) == len(elems) and all(
            check(inner, a, b, reader) for a, b in zip(v, elems)
        )
    raise SystemExit(f"unknown kind {kind}")


def compare(reader, got_rows):
    values = 0
    if len(got_rows) != len(rows):
        problems.append(f"{reader}: {len(got_rows)} rows, expected {len(rows)}")
    for i, (got, want) in enumerate(zip(got_rows, rows)):
        for c, kind, v, e in zip(columns, kinds, got, want):
            if check(kind, v, e, reader):
                values += 1
            elif len(problems) < 20:
                problems.append(f"{reader}: row {i} (id {want[0]}) column {c}: got {v!r:.200}, expected {e!r:.200}")
    return values


# pyarrow: the whole file, in file order (the report is in key order).
import pyarrow
files = [pq.ParquetFile(r) for r in reports]
parquet = files[0]
file_rows = [f.metadata.num_rows for f in files]
table = pyarrow.concat_tables([f.read() for f in files])
if table.column_names != columns:
    problems.append(f"pyarrow: columns {table.column_names}, expected {columns}")
by_column = [table.column(c).to_pylist() for c in columns]
py_rows = [list(r) for r in zip(*by_column)] if columns else []
py_values = compare("pyarrow", py_rows)

meta = parquet.metadata
if sum(file_rows) != len(rows):
    problems.append(f"footer: num_rows {sum(file_rows)}, expected {len(rows)}")
key_mins, key_maxs = [], []
row_groups = 0
for f in files:
    for g in range(f.metadata.num_row_groups):
        row_groups += 1
        stats = f.metadata.row_group(g).column(0).statistics
        if stats is None or not stats.has_min_max:
            problems.append(f"footer: row group {g} has no min/max for {columns[0]}")
            continue
        key_mins.append(stats.min)
        key_maxs.append(stats.max)
keys = [int(r[0]) for r in rows]
key_min, key_max = (min(key_mins), max(key_maxs)) if key_mins else (None, None)
if keys and (key_min, key_max) != (min(keys), max(keys)):
    problems.append(f"footer: key min/max {key_min}/{key_max}, expected {min(keys)}/{max(keys)}")
schema = parquet.schema
for i, (c, kind) in enumerate(zip(columns, kinds)):
    col = schema.column(i)
    logical = str(col.logical_type)
    want = {"uuid": "UUID", "json": "JSON", "decimal": "Decimal", "decimal_wide": "Decimal",
            "timestamptz": "isAdjustedToUTC=true", "timestamp": "isAdjustedToUTC=false",
            "date": "Date", "text": "String"}.get(kind)
    if want and want not in logical:
        problems.append(f"schema: column {c} has logical type {logical}, expected {want}")

# DuckDB: its own Parquet reader, ordered by the key.
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
duck_rows = [list(r) for r in con.execute(
    f"SELECT * FROM read_parquet(?) ORDER BY {columns[0]}", [reports]).fetchall()]
duck_values = compare("duckdb", duck_rows)

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"pyarrow rows={len(py_rows)} values={py_values} row_groups={row_groups} key_min={key_min} key_max={key_max}")
print(f"duckdb rows={len(duck_rows)} values={duck_values}")
if len(files) > 1:
    print(f"files={len(files)} rows={','.join(map(str, file_rows))}")
