#!/usr/bin/env python3
"""The DuckDB side of civiclake's benchmarks: correctness check, DuckDB timings, storage sizes.

Subcommands (the Rust benchmark harness calls `bench` and `storage`; keep their interfaces):

  check   --server URL [--token T] --source TABLE=PATH ... --queries DIR
          Runs every query of DIR on civiclake (POST /api/v1/query, JSON) and on DuckDB over
          the sources, compares the results row by row, prints one line per query and exits 1
          if any query differs or fails (0 otherwise).
  bench   --source TABLE=PATH ... --queries DIR --repeat N --workdir DIR --json OUT
          Times every query on DuckDB over the Parquet files (`parquet`) and over tables loaded
          into a DuckDB database file (`native`): cold run, then N hot runs (p50, p95).
  storage --source TABLE=PATH ... --workdir DIR --json OUT
          Per table: rows, bytes of the source files per column, size of a DuckDB database
          holding the table, and of a reference Parquet file written by pyarrow.

A source PATH is a Parquet file, a glob of Parquet files, or `delta:DIR` (the active files of
the Delta table in DIR). Every TABLE becomes a DuckDB view over read_parquet of its files.
Queries are DIR/*.sql (civiclake's DataFusion dialect); DIR/duckdb/<name>.sql, when present,
is the DuckDB variant of <name>.sql.

Standard library + duckdb, pyarrow, deltalake only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import glob
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

REL_TOL = 1e-9
ABS_TOL = 1e-6
HTTP_TIMEOUT_S = 600.0
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Sort order of the tables loaded into DuckDB and of the pyarrow reference file.
SORT_COLUMNS = ("sensor", "time")
TAG_COLUMNS = ["sensor", "district"]


class UsageError(Exception):
    """Bad arguments or inputs: printed without a traceback, exit code 2."""


# --------------------------------------------------------------------------
# Sources and queries
# --------------------------------------------------------------------------


def delta_files(directory: str) -> list[str]:
    from deltalake import DeltaTable

    try:
        uris = DeltaTable(directory).file_uris()
    except Exception as e:  # deltalake raises several types (TableNotFoundError, OSError...)
        raise UsageError(f"cannot open the Delta table {directory!r}: {e}") from e
    return [u.removeprefix("file://") for u in uris]


def parse_sources(items: list[str]) -> dict[str, list[str]]:
    """`TABLE=PATH` arguments → {table: [parquet files]}, in argument order."""
    sources: dict[str, list[str]] = {}
    for item in items:
        table, sep, path = item.partition("=")
        if not sep or not path:
            raise UsageError(f"--source {item!r}: expected TABLE=PATH")
        if not TABLE_NAME.match(table):
            raise UsageError(f"--source {item!r}: {table!r} is not a valid table name")
        if table in sources:
            raise UsageError(f"--source {item!r}: table {table!r} given twice")
        if path.startswith("delta:"):
            files = delta_files(path.removeprefix("delta:"))
            if not files:
                raise UsageError(f"--source {item!r}: the Delta table has no active files")
        elif any(c in path for c in "*?["):
            files = sorted(glob.glob(path, recursive=True))
            if not files:
                raise UsageError(f"--source {item!r}: no file matches the glob")
        else:
            if not os.path.isfile(path):
                raise UsageError(f"--source {item!r}: no such file")
            files = [path]
        sources[table] = [os.path.abspath(f) for f in files]
    if not sources:
        raise UsageError("at least one --source TABLE=PATH is needed")
    return sources


class Query:
    def __init__(self, name: str, civiclake_sql: str, duckdb_sql: str):
        self.name = name
        self.civiclake_sql = civiclake_sql
        self.duckdb_sql = duckdb_sql


def load_queries(directory: str) -> list[Query]:
    root = Path(directory)
    if not root.is_dir():
        raise UsageError(f"--queries {directory!r}: not a directory")
    queries = []
    for path in sorted(root.glob("*.sql")):
        sql = path.read_text(encoding="utf-8")
        variant = root / "duckdb" / path.name
        duck = variant.read_text(encoding="utf-8") if variant.is_file() else sql
        queries.append(Query(path.stem, sql, duck))
    if not queries:
        raise UsageError(f"--queries {directory!r}: no *.sql file")
    for variant in sorted((root / "duckdb").glob("*.sql")):
        if not (root / variant.name).is_file():
            raise UsageError(f"{variant}: a DuckDB variant without {root / variant.name}")
    return queries


def sql_string(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def read_parquet_sql(files: list[str]) -> str:
    listing = ", ".join(sql_string(f) for f in files)
    # union_by_name: the files of a Delta table may predate a column; no hive partitioning:
    # a Delta table's `day=...` directories are not columns of the files.
    return f"read_parquet([{listing}], union_by_name = true, hive_partitioning = false)"


def duck_connect(database: str = ":memory:", read_only: bool = False):
    conn = duckdb.connect(database, read_only=read_only)
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def create_views(conn, sources: dict[str, list[str]]) -> None:
    for table, files in sources.items():
        conn.execute(f'CREATE VIEW "{table}" AS SELECT * FROM {read_parquet_sql(files)}')


def duck_run(conn, sql: str) -> tuple[list[str], list[tuple]]:
    cur = conn.execute(sql)
    rows = cur.fetchall()
    return [d[0] for d in cur.description], rows


# --------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------


def civiclake_query(server: str, token: str | None, sql: str) -> tuple[list[str], list[list]]:
    body = json.dumps({"sql": sql, "format": "json"}).encode()
    req = urllib.request.Request(
        server.rstrip("/") + "/api/v1/query",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
            data = resp.read()
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        raise RuntimeError(f"HTTP {e.code}: {detail}") from e
    except (urllib.error.URLError, OSError) as e:
        raise RuntimeError(f"cannot reach {server}: {e}") from e
    objects = json.loads(data)
    if not isinstance(objects, list):
        raise RuntimeError(f"expected a JSON array, got {type(objects).__name__}")
    columns = list(objects[0].keys()) if objects else []
    return columns, [[o.get(c) for c in columns] for o in objects]


def epoch_micros(value: dt.datetime | dt.date) -> int:
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:  # naive timestamps are UTC in both engines here
        value = value.replace(tzinfo=dt.timezone.utc)
    return (value - EPOCH) // dt.timedelta(microseconds=1)


def parse_timestamp(text: str) -> int | None:
    try:
        return epoch_micros(dt.datetime.fromisoformat(text))
    except ValueError:
        return None


def same_value(civ, duck) -> bool:
    """civiclake's JSON value `civ` equals DuckDB's Python value `duck`."""
    if civ is None or duck is None:
        return civ is None and duck is None
    if isinstance(duck, (dt.datetime, dt.date)):
        return isinstance(civ, str) and parse_timestamp(civ) == epoch_micros(duck)
    if isinstance(duck, bool) or isinstance(civ, bool):
        return civ == duck
    if isinstance(duck, decimal.Decimal):
        duck = float(duck)
    if isinstance(duck, (int, float)) and isinstance(civ, (int, float)):
        if isinstance(duck, int) and isinstance(civ, int):
            return civ == duck
        if math.isnan(civ) or math.isnan(duck):
            return math.isnan(civ) and math.isnan(duck)
        return math.isclose(civ, duck, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return civ == duck


def compare(civ_cols, civ_rows, duck_cols, duck_rows) -> str | None:
    """None when the results agree, else what differs first."""
    if civ_rows and len(civ_cols) != len(duck_cols):
        return f"{len(civ_cols)} columns {civ_cols} from civiclake, {len(duck_cols)} {duck_cols} from DuckDB"
    if civ_rows and civ_cols != duck_cols:
        return f"columns {civ_cols} from civiclake, {duck_cols} from DuckDB"
    if len(civ_rows) != len(duck_rows):
        return f"{len(civ_rows)} rows from civiclake, {len(duck_rows)} from DuckDB"
    for i, (c_row, d_row) in enumerate(zip(civ_rows, duck_rows)):
        for name, c, d in zip(duck_cols, c_row, d_row):
            if not same_value(c, d):
                return (
                    f"row {i} column {name}: civiclake {c!r}, DuckDB {shown(d)!r}; "
                    f"civiclake row {c_row}, DuckDB row {[shown(v) for v in d_row]}"
                )
    return None


def shown(value):
    """A DuckDB value as printed in a mismatch: timestamps in ISO 8601, like civiclake's."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def cmd_check(args) -> int:
    sources = parse_sources(args.source)
    queries = load_queries(args.queries)
    conn = duck_connect()
    create_views(conn, sources)
    failures = 0
    width = max(len(q.name) for q in queries)
    for q in queries:
        try:
            civ_cols, civ_rows = civiclake_query(args.server, args.token, q.civiclake_sql)
        except (RuntimeError, ValueError) as e:
            print(f"{q.name:<{width}}  FAILED on civiclake: {e}")
            failures += 1
            continue
        try:
            duck_cols, duck_rows = duck_run(conn, q.duckdb_sql)
        except duckdb.Error as e:
            print(f"{q.name:<{width}}  FAILED on DuckDB: {e}")
            failures += 1
            continue
        diff = compare(civ_cols, civ_rows, duck_cols, duck_rows)
        if diff is None and not civ_rows:
            diff = "no rows on either side: the query compares nothing on this data"
        if diff is None:
            print(f"{q.name:<{width}}  {len(civ_rows):>7} rows  ok")
        else:
            print(f"{q.name:<{width}}  {len(civ_rows):>7} rows  MISMATCH: {diff}")
            failures += 1
    conn.close()
    print(f"check: {len(queries) - failures} of {len(queries)} queries agree")
    return 1 if failures else 0


# --------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------


def percentile(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(p / 100.0 * len(sorted_ms)))
    return sorted_ms[rank - 1]


def timed(conn, sql: str) -> tuple[float, int]:
    start = time.perf_counter()
    rows = conn.execute(sql).fetchall()
    return (time.perf_counter() - start) * 1000.0, len(rows)


def measure(open_conn, sql: str, repeat: int) -> dict:
    conn = open_conn()
    try:
        cold_ms, rows = timed(conn, sql)
        hot = sorted(timed(conn, sql)[0] for _ in range(repeat))
    finally:
        conn.close()
    return {
        "cold_ms": round(cold_ms, 3),
        "p50_ms": round(percentile(hot, 50), 3),
        "p95_ms": round(percentile(hot, 95), 3),
        "rows": rows,
    }


def remove_database(path: Path) -> None:
    for p in (path, Path(str(path) + ".wal")):
        if p.exists():
            p.unlink()


def load_native(path: Path, sources: dict[str, list[str]]) -> float:
    remove_database(path)
    start = time.perf_counter()
    conn = duck_connect(str(path))
    try:
        for table, files in sources.items():
            order = ", ".join(f'"{c}"' for c in SORT_COLUMNS)
            conn.execute(
                f'CREATE TABLE "{table}" AS SELECT * FROM {read_parquet_sql(files)} ORDER BY {order}'
            )
        conn.execute("CHECKPOINT")
    finally:
        conn.close()
    return time.perf_counter() - start


def write_json(path: str, doc: dict) -> None:
    out = Path(path)
    if out.parent:
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def cmd_bench(args) -> int:
    if args.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    sources = parse_sources(args.source)
    queries = load_queries(args.queries)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / "native.duckdb"

    def open_parquet():
        conn = duck_connect()
        create_views(conn, sources)
        return conn

    def open_native():
        return duck_connect(str(database), read_only=True)

    load_s = load_native(database, sources)
    probe = duck_connect()
    threads = probe.execute("SELECT current_setting('threads')").fetchone()[0]
    probe.close()
    results: dict[str, dict] = {}
    width = max(len(q.name) for q in queries)
    print(f"duckdb {duckdb.__version__}, {threads} threads, native load {load_s:.2f} s")
    print(f"{'query':<{width}}  {'mode':<7} {'cold ms':>10} {'p50 ms':>10} {'p95 ms':>10} {'rows':>8}")
    for q in queries:
        results[q.name] = {}
        for mode, opener in (("parquet", open_parquet), ("native", open_native)):
            try:
                m = measure(opener, q.duckdb_sql, args.repeat)
            except duckdb.Error as e:
                raise UsageError(f"query {q.name} failed on DuckDB ({mode}): {e}") from e
            results[q.name][mode] = m
            print(
                f"{q.name:<{width}}  {mode:<7} {m['cold_ms']:>10.2f} {m['p50_ms']:>10.2f} "
                f"{m['p95_ms']:>10.2f} {m['rows']:>8}"
            )
    write_json(
        args.json,
        {
            "duckdb_version": duckdb.__version__,
            "threads": threads,
            "repeat": args.repeat,
            "load_native_s": round(load_s, 3),
            "queries": results,
        },
    )
    remove_database(database)
    return 0


# --------------------------------------------------------------------------
# storage
# --------------------------------------------------------------------------


def column_bytes(files: list[str]) -> tuple[int, dict[str, int], int]:
    """(rows, {top-level column: compressed bytes summed over row groups}, file bytes)."""
    rows = 0
    columns: dict[str, int] = {}
    total = 0
    for f in files:
        total += os.path.getsize(f)
        meta = pq.ParquetFile(f).metadata
        rows += meta.num_rows
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                chunk = group.column(c)
                name = chunk.path_in_schema.split(".")[0]
                columns[name] = columns.get(name, 0) + chunk.total_compressed_size
    return rows, columns, total


def read_plain(files: list[str]) -> pa.Table:
    """The rows of `files` as one table, dictionary columns decoded (sortable)."""
    tables = []
    for f in files:
        t = pq.ParquetFile(f).read()
        fields = [
            pa.field(fl.name, fl.type.value_type, fl.nullable)
            if pa.types.is_dictionary(fl.type)
            else fl
            for fl in t.schema
        ]
        tables.append(t.cast(pa.schema(fields)))
    return pa.concat_tables(tables, promote_options="default")


def native_bytes(path: Path, table: str, files: list[str]) -> int:
    load_native(path, {table: files})
    size = path.stat().st_size
    wal = Path(str(path) + ".wal")
    if wal.exists():
        size += wal.stat().st_size
    remove_database(path)
    return size


def pyarrow_reference(path: Path, files: list[str]) -> tuple[int, dict[str, int]]:
    table = read_plain(files)
    keys = [(c, "ascending") for c in SORT_COLUMNS if c in table.column_names]
    table = table.sort_by(keys)
    tags = [c for c in TAG_COLUMNS if c in table.column_names]
    pq.write_table(table, path, compression="zstd", use_dictionary=tags)
    _, columns, total = column_bytes([str(path)])
    path.unlink()
    return total, columns


def cmd_storage(args) -> int:
    sources = parse_sources(args.source)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tables: dict[str, dict] = {}
    print(f"{'table':<10} {'rows':>10} {'lake bytes':>12} {'duckdb bytes':>13} {'pyarrow bytes':>14}")
    for table, files in sources.items():
        rows, lake_columns, lake_total = column_bytes(files)
        duck = native_bytes(workdir / f"storage-{table}.duckdb", table, files)
        ref_total, ref_columns = pyarrow_reference(workdir / f"reference-{table}.parquet", files)
        tables[table] = {
            "rows": rows,
            "lake": {"bytes": lake_total, "columns": lake_columns},
            "duckdb_native_bytes": duck,
            "pyarrow_reference": {"bytes": ref_total, "columns": ref_columns},
        }
        print(f"{table:<10} {rows:>10} {lake_total:>12} {duck:>13} {ref_total:>14}")
    write_json(
        args.json,
        {"duckdb_version": duckdb.__version__, "pyarrow_version": pa.__version__, "tables": tables},
    )
    return 0


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def sources_arg(p):
        p.add_argument(
            "--source",
            action="append",
            default=[],
            metavar="TABLE=PATH",
            help="a table: Parquet file, glob, or delta:DIR (repeatable)",
        )

    p = sub.add_parser("check", help="compare every query's result on civiclake and DuckDB")
    p.add_argument("--server", required=True, help="civiclake base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--token", default=os.environ.get("CIVICLAKE_TOKEN"), help="bearer token")
    sources_arg(p)
    p.add_argument("--queries", required=True, help="directory of *.sql (and duckdb/*.sql)")
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("bench", help="time every query on DuckDB (parquet and native)")
    sources_arg(p)
    p.add_argument("--queries", required=True, help="directory of *.sql (and duckdb/*.sql)")
    p.add_argument("--repeat", type=int, required=True, help="hot runs per query and mode")
    p.add_argument("--workdir", required=True, help="directory for the DuckDB database file")
    p.add_argument("--json", required=True, help="output JSON file")
    p.set_defaults(run=cmd_bench)

    p = sub.add_parser("storage", help="bytes per table: lake files, DuckDB, pyarrow reference")
    sources_arg(p)
    p.add_argument("--workdir", required=True, help="directory for the scratch files")
    p.add_argument("--json", required=True, help="output JSON file")
    p.set_defaults(run=cmd_storage)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as e:
        print(f"duckdb_side.py {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
