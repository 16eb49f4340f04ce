#!/usr/bin/env python3
"""Real clients against civiclake's PostgreSQL and Flight SQL endpoints (issue: analysts'
tools connect directly).

Starts `civiclake serve` with `--pg-addr` and `--flight-addr` on loopback ports and tokens
required, writes a small city (air readings, air sites, noise) over HTTP as an
administrator, then, as an analyst whose token reaches `air*` only:

  * Debian's psql: `\\dt`, `\\d air`, a join, a parameterised query (PREPARE/EXECUTE);
  * psql and psycopg over TLS (`--pg-tls-cert`/`--pg-tls-key`, a self-signed certificate
    made with openssl for 127.0.0.1): `sslmode=verify-full` against that certificate;
  * psycopg: a query with a server-side parameter (extended protocol);
  * ADBC Flight SQL: the same query with a `$1` parameter, fetched as an Arrow table;

each answer compared with the HTTP API's (`POST /api/v1/query`, JSON and Arrow), and the
denied table `noise` refused on all four entry points.

Usage: wire_check.py CIVICLAKE_BIN   (python with psycopg, adbc-driver-flightsql, pyarrow;
psql on PATH)
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import adbc_driver_flightsql.dbapi as flight_sql
import psycopg
import pyarrow as pa
import pyarrow.ipc
from adbc_driver_flightsql import DatabaseOptions

BIN = sys.argv[1]
T0 = 1767225600  # 2026-01-01T00:00:00Z


def fail(msg):
    sys.exit(f"wire check FAILED: {msg}")


def token(data_dir, *args):
    out = subprocess.run(
        [BIN, "token", "create", *args, "--data-dir", data_dir],
        check=True, capture_output=True, text=True,
    ).stdout
    return out.strip().splitlines()[-1].strip()


def http(url, tok, sql, fmt="json"):
    req = urllib.request.Request(
        url + "/api/v1/query",
        data=json.dumps({"sql": sql, "format": fmt}).encode(),
        headers={"authorization": f"Bearer {tok}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
            return r.status, (json.loads(body) if fmt == "json" else body)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def write(url, tok, table, lines):
    req = urllib.request.Request(
        f"{url}/api/v1/write?table={table}", data="\n".join(lines).encode(),
        headers={"authorization": f"Bearer {tok}"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        if r.status != 204:
            fail(f"write {table}: {r.status}")


def rounded(rows):
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in rows]


def self_signed(work):
    """A certificate and key for 127.0.0.1 (openssl), valid for a day."""
    cert, key = os.path.join(work, "pg-cert.pem"), os.path.join(work, "pg-key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=civiclake wire check", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    return cert, key


def main():
    work = tempfile.mkdtemp(prefix="civiclake-wire.")
    data = os.path.join(work, "data")
    cert, key = self_signed(work)
    admin = token(data, "--role", "admin")
    analyst = token(data, "--role", "analyst", "--tables", "air*")
    server = subprocess.Popen(
        [BIN, "serve", "--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0",
         "--pg-addr", "127.0.0.1:0", "--flight-addr", "127.0.0.1:0",
         "--pg-tls-cert", cert, "--pg-tls-key", key,
         "--data-dir", data, "--metrics-sample-interval", "0s",
         "--pipelines-dir", os.path.join(work, "no-pipelines")],
        stdout=subprocess.PIPE, stderr=sys.stderr, text=True,
        env=dict(os.environ, CIVICLAKE_LOG__FILTER="warn"),
    )
    try:
        url = pg = fl = None
        deadline = time.time() + 60
        while url is None and time.time() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            if m := re.search(r"PostgreSQL protocol on postgres://([\d.]+):(\d+)", line):
                pg = (m.group(1), int(m.group(2)))
            if m := re.search(r"Flight SQL on (grpc://[\d.:]+)", line):
                fl = m.group(1)
            if m := re.search(r"listening on (http://[\d.:]+)", line):
                url = m.group(1)
        if not (url and pg and fl):
            fail(f"the server did not print its addresses (http {url}, pg {pg}, flight {fl})")
        print(f"civiclake: {url}, postgres {pg[0]}:{pg[1]}, flight {fl}")

        sensors = [f"s{i}" for i in range(20)]
        write(url, admin, "air", [
            f"air,sensor={s},district=d{i % 4} pm25={(i * 7 + k) % 40 + 0.5} {(T0 + k * 60) * 10**9}"
            for k in range(50) for i, s in enumerate(sensors)
        ])
        write(url, admin, "air_sites", [
            f"air_sites,sensor={s} name=\"Site {i}\",height={i % 3 + 1}i {T0 * 10**9}"
            for i, s in enumerate(sensors)
        ])
        write(url, admin, "noise", [f"noise,sensor=n1 laeq=55.0 {T0 * 10**9}"])

        join = ("SELECT a.sensor, s.name, count(*) AS n, round(avg(a.pm25), 3) AS pm25 "
                "FROM air a JOIN air_sites s ON a.sensor = s.sensor "
                "GROUP BY a.sensor, s.name ORDER BY a.sensor")
        param_sql = "SELECT sensor, pm25 FROM air WHERE pm25 > {} ORDER BY time, sensor LIMIT 50"
        denied = "SELECT * FROM noise"
        status, expected_join = http(url, analyst, join)
        if status != 200:
            fail(f"HTTP join: {status} {expected_join}")
        expected_join = [(r["sensor"], r["name"], r["n"], r["pm25"]) for r in expected_join]
        status, expected_param = http(url, analyst, param_sql.format("30.0"))
        expected_param = [(r["sensor"], r["pm25"]) for r in expected_param]
        if len(expected_param) != 50:
            fail(f"HTTP parameterised query gave {len(expected_param)} rows")
        status, body = http(url, analyst, denied)
        if status != 400 or "noise" not in json.dumps(body):
            fail(f"HTTP did not refuse the denied table: {status} {body}")

        # --- psql
        env = dict(os.environ, PGPASSWORD=analyst, PGCONNECT_TIMEOUT="10")
        conninfo = f"host={pg[0]} port={pg[1]} dbname=civiclake user=analyst sslmode=disable"

        def psql(*args, ok=True):
            r = subprocess.run(["psql", conninfo, "-X", "-v", "ON_ERROR_STOP=1", *args],
                               env=env, capture_output=True, text=True, timeout=60)
            if ok and r.returncode != 0:
                fail(f"psql {args}: exit {r.returncode}: {r.stderr}")
            return r

        out = psql("-c", "\\dt").stdout
        print(out)
        for t in ("air", "air_sites"):
            if not re.search(rf"\b{t}\b", out):
                fail(f"\\dt does not list {t}")
        if "noise" in out:
            fail("\\dt lists the denied table noise")
        out = psql("-c", "\\d air").stdout
        print(out)
        for col in ("sensor", "district", "pm25", "time"):
            if col not in out:
                fail(f"\\d air lacks the column {col}")
        out = psql("-At", "-F", "|", "-c", join).stdout
        got = [tuple(l.split("|")) for l in out.strip().splitlines()]
        got = [(s, n, int(c), float(p)) for s, n, c, p in got]
        if rounded(got) != rounded(expected_join):
            fail(f"psql join differs from HTTP:\n{got[:3]}\n{expected_join[:3]}")
        out = psql("-At", "-F", "|", "-c",
                   "PREPARE over(double precision) AS " + param_sql.format("$1"),
                   "-c", "EXECUTE over(30.0)").stdout
        got = [(s, float(p)) for s, p in (l.split("|") for l in out.strip().splitlines())]
        if rounded(got) != rounded(expected_param):
            fail(f"psql PREPARE/EXECUTE differs from HTTP:\n{got[:3]}\n{expected_param[:3]}")
        r = psql("-c", denied, ok=False)
        if r.returncode == 0 or "noise" not in r.stderr:
            fail(f"psql did not refuse the denied table: {r.returncode} {r.stderr}")
        r = subprocess.run(["psql", conninfo.replace("dbname=civiclake", "dbname=civiclake"),
                            "-c", "SELECT 1"], env=dict(env, PGPASSWORD="wrong"),
                           capture_output=True, text=True, timeout=60)
        if r.returncode == 0 or "password authentication failed" not in r.stderr:
            fail(f"psql with a wrong token: {r.returncode} {r.stderr}")
        print("psql: \\dt, \\d, join, PREPARE/EXECUTE and refusals as expected")

        # --- TLS: the server's certificate verified (verify-full: chain and 127.0.0.1)
        tls = f"host={pg[0]} port={pg[1]} dbname=civiclake user=analyst " \
              f"sslmode=verify-full sslrootcert={cert}"
        r = subprocess.run(["psql", tls, "-X", "-At", "-F", "|", "-c", "\\conninfo",
                            "-c", join], env=env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0 or "SSL connection" not in r.stdout:
            fail(f"psql over TLS: exit {r.returncode}: {r.stdout} {r.stderr}")
        lines = r.stdout.strip().splitlines()
        print(lines[0])
        got = [(s, n, int(c), float(p)) for s, n, c, p in (l.split("|") for l in lines[-len(expected_join):])]
        if rounded(got) != rounded(expected_join):
            fail(f"psql over TLS: the join differs from HTTP:\n{got[:3]}\n{expected_join[:3]}")
        with psycopg.connect(host=pg[0], port=pg[1], dbname="civiclake", user="analyst",
                             password=analyst, sslmode="verify-full", sslrootcert=cert,
                             autocommit=True) as conn:
            if conn.info.pgconn.ssl_in_use != 1:
                fail("psycopg: the connection is not encrypted")
            rows = conn.execute(param_sql.format("%s"), (30.0,)).fetchall()
            if rounded(rows) != rounded(expected_param):
                fail(f"psycopg over TLS differs from HTTP:\n{rows[:3]}\n{expected_param[:3]}")
        print("TLS: psql and psycopg verified the certificate, answers as over HTTP")

        # --- psycopg: server-side parameter (extended protocol)
        with psycopg.connect(host=pg[0], port=pg[1], dbname="civiclake", user="analyst",
                             password=analyst, sslmode="disable", autocommit=True) as conn:
            rows = conn.execute(param_sql.format("%s"), (30.0,)).fetchall()
            if rounded(rows) != rounded(expected_param):
                fail(f"psycopg differs from HTTP:\n{rows[:3]}\n{expected_param[:3]}")
            rows = conn.execute(join).fetchall()
            got = [(s, n, c, float(p)) for s, n, c, p in rows]
            if rounded(got) != rounded(expected_join):
                fail(f"psycopg join differs from HTTP:\n{got[:3]}\n{expected_join[:3]}")
            try:
                conn.execute(denied)
                fail("psycopg: the denied table was not refused")
            except psycopg.Error as e:
                if "noise" not in str(e):
                    fail(f"psycopg: unexpected error {e}")
        print("psycopg: parameterised query, join and refusal as expected")

        # --- ADBC Flight SQL: Arrow all the way
        status, arrow_bytes = http(url, analyst, param_sql.format("30.0"), fmt="arrow")
        http_table = pa.ipc.open_stream(arrow_bytes).read_all()
        with flight_sql.connect(
            fl,
            db_kwargs={DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {analyst}"},
            autocommit=True,
        ) as conn:
            cur = conn.cursor()
            cur.execute(param_sql.format("$1"), (30.0,))
            table = cur.fetch_arrow_table()
            got = list(zip(table.column("sensor").to_pylist(), table.column("pm25").to_pylist()))
            want = list(zip(http_table.column("sensor").to_pylist(),
                            http_table.column("pm25").to_pylist()))
            if rounded(got) != rounded(want) or rounded(got) != rounded(expected_param):
                fail(f"ADBC differs from HTTP Arrow:\n{got[:3]}\n{want[:3]}")
            # Without parameters too: tags arrive dictionary-encoded, as over HTTP.
            cur.execute(join)
            table = cur.fetch_arrow_table()
            got = list(zip(*(table.column(c).to_pylist() for c in ("sensor", "name", "n", "pm25"))))
            if rounded(got) != rounded(expected_join):
                fail(f"ADBC join differs from HTTP:\n{got[:3]}\n{expected_join[:3]}")
            objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
            names = sorted(t["table_name"] for c in objects for s in c["catalog_db_schemas"] or []
                           for t in s["db_schema_tables"] or [])
            if names != ["air", "air_sites"]:
                fail(f"ADBC get_objects lists {names}")
            try:
                cur.execute(denied)
                cur.fetch_arrow_table()
                fail("ADBC: the denied table was not refused")
            except Exception as e:  # the driver's error classes differ by version
                if "noise" not in str(e):
                    fail(f"ADBC: unexpected error {e}")
            cur.close()
        print("ADBC Flight SQL: parameterised query, join, catalog and refusal as expected")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
    if server.returncode not in (0, None):
        fail(f"civiclake serve exited with {server.returncode}")
    print("wire check passed")


if __name__ == "__main__":
    main()
