#!/usr/bin/env python3
"""Lake interop check: what civiclake writes, other tools read the same way.

Starts `civiclake serve` on a free loopback port with a fresh data directory,
writes rows over HTTP (line protocol), asks civiclake for aggregates over SQL,
stops it with SIGTERM (the server flushes its buffer to Delta on SIGTERM),
then reads the Delta table `<data-dir>/tables/air` with the Python
`deltalake` package, computes the same aggregates with DuckDB and compares
three sets of figures: those implied by the generated data, civiclake's and
DuckDB's. Any mismatch exits non-zero.

Usage: python3 .ci/interop_check.py [path/to/civiclake]   (default target/debug/civiclake)

Standard library + deltalake, duckdb, pyarrow only.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import date, datetime, timedelta, timezone

HEALTH_DEADLINE_S = 60.0
EXIT_DEADLINE_S = 60.0
HTTP_TIMEOUT_S = 120.0
REL_TOL = 1e-9

TABLE = "air"
DISTRICTS = ["Centro", "Nord", "Est", "Sud", "Ovest", "Macrolotto"]
N_SENSORS = 100
FIRST_DAY = date(2026, 11, 24)  # rows span FIRST_DAY and the day after (UTC)
SPAN_NS = 2 * 86_400 * 1_000_000_000
BASE_NS = int(datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=timezone.utc).timestamp()) * 1_000_000_000

# First write: 50,000 rows in 5 requests, fields pm25 and battery.
FIRST_ROWS = 50_000
FIRST_REQUESTS = 5
# Second write: rows of which every other one carries a new field, no2
# (schema evolution: the column appears after the table exists).
SECOND_ROWS = 5_000


class CheckFailed(Exception):
    pass


# --------------------------------------------------------------------------
# Data: deterministic rows, and the figures they imply.
# --------------------------------------------------------------------------


class Row:
    __slots__ = ("sensor", "district", "pm25", "battery", "no2", "ts_ns")

    def __init__(self, sensor, district, pm25, battery, no2, ts_ns):
        self.sensor = sensor
        self.district = district
        self.pm25 = pm25
        self.battery = battery
        self.no2 = no2
        self.ts_ns = ts_ns

    def line(self) -> str:
        fields = f"pm25={self.pm25!r},battery={self.battery!r}"
        if self.no2 is not None:
            fields += f",no2={self.no2!r}"
        return f"{TABLE},sensor={self.sensor},district={self.district} {fields} {self.ts_ns}"


def first_write_rows() -> list[Row]:
    step = SPAN_NS // FIRST_ROWS
    rows = []
    for i in range(FIRST_ROWS):
        s = i % N_SENSORS
        rows.append(
            Row(
                sensor=f"s{s:04d}",
                district=DISTRICTS[s % len(DISTRICTS)],
                pm25=round(5.0 + ((i * 37) % 450) / 10.0, 1),
                battery=round(50.0 + (i % 500) / 10.0, 1),
                no2=None,
                ts_ns=BASE_NS + i * step,
            )
        )
    return rows


def second_write_rows() -> list[Row]:
    step = SPAN_NS // SECOND_ROWS
    rows = []
    for j in range(SECOND_ROWS):
        s = (j * 7) % N_SENSORS
        rows.append(
            Row(
                sensor=f"s{s:04d}",
                district=DISTRICTS[s % len(DISTRICTS)],
                pm25=round(8.0 + ((j * 13) % 300) / 10.0, 1),
                battery=round(40.0 + (j % 600) / 10.0, 1),
                no2=round(10.0 + ((j * 11) % 700) / 10.0, 1) if j % 2 == 0 else None,
                # +1 ns keeps every timestamp distinct from the first write's.
                ts_ns=BASE_NS + j * step + 1,
            )
        )
    return rows


def expected_figures(rows: list[Row]) -> dict:
    days = sorted({datetime.fromtimestamp(r.ts_ns // 1_000_000_000, tz=timezone.utc).date().isoformat() for r in rows})
    return {
        "n": len(rows),
        "s": math.fsum(r.pm25 for r in rows),
        "c": sum(1 for r in rows if r.no2 is not None),
        "districts": dict(sorted(Counter(r.district for r in rows).items())),
        "days": days,
    }


# --------------------------------------------------------------------------
# HTTP helpers (urllib only).
# --------------------------------------------------------------------------


# The admin token the check makes with `civiclake token create` before starting the server.
TOKEN: str | None = None


def http(method: str, url: str, body: bytes | None = None, content_type: str | None = None, timeout: float = HTTP_TIMEOUT_S):
    req = urllib.request.Request(url, data=body, method=method)
    if TOKEN:
        req.add_header("Authorization", f"Bearer {TOKEN}")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc: subprocess.Popen, base: str) -> float:
    start = time.monotonic()
    deadline = start + HEALTH_DEADLINE_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CheckFailed(f"server exited with code {proc.returncode} before /health answered")
        try:
            status, _ = http("GET", f"{base}/health", timeout=2.0)
            if status == 200:
                return time.monotonic() - start
            last = f"HTTP {status}"
        except (urllib.error.URLError, ConnectionError, socket.timeout, OSError) as e:
            last = str(e)
        time.sleep(0.2)
    raise CheckFailed(f"/health did not answer 200 within {HEALTH_DEADLINE_S:.0f} s (last: {last})")


def write_lines(base: str, rows: list[Row]) -> None:
    body = ("\n".join(r.line() for r in rows) + "\n").encode()
    status, resp = http("POST", f"{base}/api/v1/write?table={TABLE}", body, "text/plain; charset=utf-8")
    if not 200 <= status < 300:
        raise CheckFailed(f"write of {len(rows)} rows answered HTTP {status}: {resp[:500]!r}")


def query(base: str, sql: str) -> list[dict]:
    body = json.dumps({"sql": sql, "format": "json"}).encode()
    status, resp = http("POST", f"{base}/api/v1/query", body, "application/json")
    if status != 200:
        raise CheckFailed(f"query answered HTTP {status}: {resp[:500]!r}\n  sql: {sql}")
    try:
        rows = json.loads(resp)
    except json.JSONDecodeError as e:
        raise CheckFailed(f"query answer is not JSON ({e}): {resp[:500]!r}") from e
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise CheckFailed(f"query answer is not a JSON array of objects: {resp[:500]!r}")
    return rows


def stop_gracefully(proc: subprocess.Popen) -> float:
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=EXIT_DEADLINE_S)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"server did not exit within {EXIT_DEADLINE_S:.0f} s of SIGTERM") from None
    if proc.returncode != 0:
        raise CheckFailed(f"server exited with code {proc.returncode} after SIGTERM (expected 0)")
    return time.monotonic() - start


# --------------------------------------------------------------------------
# Reading the lake from outside: deltalake + DuckDB.
# --------------------------------------------------------------------------


def read_lake(table_path: str) -> dict:
    import duckdb
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(table_path):
        raise CheckFailed(f"{table_path} is not a Delta table")
    dt = DeltaTable(table_path)
    partition_columns = list(dt.metadata().partition_columns)
    arrow_table = dt.to_pyarrow_table()
    columns = arrow_table.column_names
    for col in ("pm25", "no2", "district"):
        if col not in columns:
            raise CheckFailed(f"column {col!r} missing from the Delta table (columns: {columns})")

    con = duckdb.connect()
    con.register("air", arrow_table)
    n, s, c = con.execute("SELECT count(*), sum(pm25), count(no2) FROM air").fetchone()
    districts = dict(con.execute("SELECT district, count(*) FROM air GROUP BY district ORDER BY district").fetchall())
    con.close()

    days = sorted({str(p.get("day")) for p in dt.partitions()})
    return {
        "n": n,
        "s": s,
        "c": c,
        "districts": districts,
        "days": days,
        "partition_columns": partition_columns,
        "version": dt.version(),
        "files": len(dt.file_uris()),
    }


# --------------------------------------------------------------------------
# Comparison and report.
# --------------------------------------------------------------------------


def as_int(v):
    """v as an int if it is an integral number (JSON may give 55000 or 55000.0), else v."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def close(a, b) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=0.0)
    except (TypeError, ValueError):
        return False


def compare(label: str, got: dict, want: dict, checks: list[tuple[str, str | None]]) -> None:
    """Append (check name, problem or None) for each figure of `got`."""
    for key, name in (("n", "count(*)"), ("c", "count(no2)")):
        ok = as_int(got.get(key)) == want[key]
        checks.append((f"{label} {name}", None if ok else f"{label}: {name} = {got.get(key)!r}, expected {want[key]!r}"))
    ok = close(got.get("s"), want["s"])
    checks.append(
        (f"{label} sum(pm25)", None if ok else f"{label}: sum(pm25) = {got.get('s')!r}, expected {want['s']!r} (rel tol {REL_TOL})")
    )
    gd = {str(k): as_int(v) for k, v in (got.get("districts") or {}).items()}
    ok = gd == want["districts"]
    checks.append((f"{label} per-district counts", None if ok else f"{label}: per-district counts {gd}, expected {want['districts']}"))


def print_report(want: dict, civ: dict, lake: dict | None) -> None:
    print()
    print(f"{'figure':<22} {'expected':>22} {'civiclake (SQL)':>22} {'Delta via DuckDB':>22}")
    fig = lambda d, k: "-" if d is None or d.get(k) is None else (f"{d[k]:.6f}" if k == "s" else str(d[k]))
    for key, name in (("n", "count(*)"), ("s", "sum(pm25)"), ("c", "count(no2)")):
        print(f"{name:<22} {fig(want, key):>22} {fig(civ, key):>22} {fig(lake, key):>22}")
    for d in want["districts"]:
        cd = (civ.get("districts") or {}).get(d, "-")
        ld = "-" if lake is None else lake["districts"].get(d, "-")
        print(f"{'count ' + d:<22} {want['districts'][d]:>22} {cd!s:>22} {ld!s:>22}")
    if lake is not None:
        print(f"{'day partitions':<22} {len(want['days']):>22} {'':>22} {len(lake['days']):>22}")
        print(f"  expected days: {want['days']}; in the Delta log: {lake['days']}")
        print(f"  partition columns: {lake['partition_columns']}; table version {lake['version']}, {lake['files']} data files")
    print()


def main() -> int:
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(repo_root, "target", "debug", "civiclake")
    binary = os.path.abspath(binary)
    if not os.access(binary, os.X_OK):
        print(f"interop: binary not found or not executable: {binary}", file=sys.stderr)
        return 2

    first = first_write_rows()
    second = second_write_rows()
    want = expected_figures(first + second)

    data_dir = tempfile.mkdtemp(prefix="civiclake-interop-")
    log_path = os.path.join(data_dir, "server.log")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env["CIVICLAKE_FLUSH__MAX_AGE"] = "1s"
    env.setdefault("RUST_LOG", "info")

    print(f"interop: {binary}")
    print(f"interop: data dir {data_dir}, listening on {base}")
    # The first admin token of a new install, made on the data directory as the README says.
    global TOKEN
    made = subprocess.run(
        [binary, "token", "create", "--role", "admin", "--label", "interop", "--data-dir", data_dir],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if made.returncode != 0:
        print(f"interop: FAILED: civiclake token create: {made.stderr.strip()}", file=sys.stderr)
        return 1
    TOKEN = made.stdout.strip().splitlines()[-1]
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [binary, "serve", "--data-dir", data_dir, "--http-addr", f"127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    ok = False
    civ: dict = {}
    lake = None
    try:
        t = wait_healthy(proc, base)
        print(f"interop: /health answered 200 after {t:.1f} s")

        t0 = time.monotonic()
        per_request = FIRST_ROWS // FIRST_REQUESTS
        for k in range(FIRST_REQUESTS):
            write_lines(base, first[k * per_request : (k + 1) * per_request])
        print(f"interop: wrote {FIRST_ROWS} rows in {FIRST_REQUESTS} requests ({time.monotonic() - t0:.1f} s)")
        t0 = time.monotonic()
        write_lines(base, second)
        print(f"interop: wrote {SECOND_ROWS} more rows, {want['c']} of them with the new field no2 ({time.monotonic() - t0:.1f} s)")

        agg = query(base, f"SELECT count(*) AS n, sum(pm25) AS s, count(no2) AS c FROM {TABLE}")
        if len(agg) != 1:
            raise CheckFailed(f"aggregate query returned {len(agg)} rows, expected 1: {agg}")
        civ = dict(agg[0])
        per_district = query(base, f"SELECT district, count(*) AS n FROM {TABLE} GROUP BY district ORDER BY district")
        civ["districts"] = {str(r.get("district")): r.get("n") for r in per_district}

        t = stop_gracefully(proc)
        print(f"interop: server stopped on SIGTERM after {t:.1f} s")

        table_path = os.path.join(data_dir, "tables", TABLE)
        lake = read_lake(table_path)

        checks: list[tuple[str, str | None]] = []
        compare("civiclake", civ, want, checks)
        compare("Delta via DuckDB", lake, want, checks)
        pc = lake["partition_columns"]
        checks.append(("partition columns", None if pc == ["day"] else f"Delta partition columns are {pc}, expected ['day']"))
        days = lake["days"]
        checks.append(
            ("two day partitions", None if len(days) == 2 else f"{len(days)} distinct day partitions in the Delta log ({days}), expected 2")
        )
        checks.append(("day partition values", None if days == want["days"] else f"day partitions {days}, expected {want['days']}"))

        print_report(want, civ, lake)
        problems = [p for _, p in checks if p is not None]
        for p in problems:
            print(f"interop: MISMATCH: {p}", file=sys.stderr)
        sys.stderr.flush()
        print(f"interop: {len(checks) - len(problems)} passed, {len(problems)} failed")
        if problems:
            return 1
        ok = True
        print("interop: OK: civiclake's answers and the Delta table read by deltalake + DuckDB agree")
        return 0
    except CheckFailed as e:
        if civ:
            print_report(want, civ, lake)
        print(f"interop: FAILED: {e}", file=sys.stderr)
        sys.stderr.flush()
        print("interop: 0 passed, 1 failed")
        return 1
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        if ok:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"interop: data dir kept for inspection: {data_dir}", file=sys.stderr)
            try:
                with open(log_path, "rb") as f:
                    tail = f.read()[-4000:].decode(errors="replace")
                print("interop: last lines of the server log:", file=sys.stderr)
                print(tail, file=sys.stderr)
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
