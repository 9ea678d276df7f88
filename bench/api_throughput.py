"""Call logging throughput through the API, against a bare INSERT endpoint.

Starts gunicorn on loopback serving the service on PostgreSQL, then drives
``POST /api/v1/calls`` (a dispatcher logging a call: authentication, validation,
number normalisation, caller lookup, call row, timeline event) and ``POST
/bench/bare`` (one INSERT, same stack) with wrk from another process, in the same
run, and prints requests per second and latency percentiles of each.

    .venv/bin/python bench/api_throughput.py [--seconds 20] [--connections 8] [--workers 4]

Needs PostgreSQL on 127.0.0.1:5432 (``ONCALL_TEST_PG``) and ``wrk`` on the PATH.
Goal: the call endpoint reaches at least half the bare endpoint's throughput,
with p99 latency under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_SERVER = os.environ.get("ONCALL_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
DB_NAME = "oncall_bench"
DB_URL = PG_SERVER.replace("postgresql://", "postgresql+psycopg://", 1) + f"/{DB_NAME}"
SECRET = "bench-secret-key-" + "b" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_database() -> str:
    """A fresh database, migrated, with a circle, a dispatcher and a token."""
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (DB_NAME,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}"')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')

    from flask_migrate import upgrade

    from bench.bench_app import bench_metadata
    from config.settings import Settings
    from oncall import create_app
    from oncall.accounts.auth import hash_token, new_token
    from oncall.accounts.models import ApiToken, User
    from oncall.accounts.passwords import hash_password
    from oncall.circles.models import Circle
    from oncall.core.clock import utcnow
    from oncall.extensions import db

    app = create_app(Settings(profile="test", secret_key=SECRET, database_url=DB_URL))
    with app.app_context():
        upgrade()
        bench_metadata.create_all(db.engine)
        now = utcnow()
        circle = Circle(
            name="Bench circle", timezone="Europe/Brussels", country="BE", created_at=now
        )
        db.session.add(circle)
        db.session.flush()
        user = User(
            circle_id=circle.id,
            email="dispatcher@bench.test",
            name="Bench dispatcher",
            role="dispatcher",
            password_hash=hash_password("bench password 123"),
            created_at=now,
        )
        db.session.add(user)
        db.session.flush()
        token = new_token()
        db.session.add(
            ApiToken(
                circle_id=circle.id,
                user_id=user.id,
                token_hash=hash_token(token),
                prefix=token[:10],
                label="bench",
                created_at=now,
                expires_at=now + timedelta(days=1),
            )
        )
        db.session.commit()
        db.engine.dispose()
    return token


def start_gunicorn(port: int, workers: int, threads: int) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        ONCALL_PROFILE="production",
        ONCALL_SECRET_KEY=SECRET,
        ONCALL_DATABASE_URL=DB_URL,
        ONCALL_LOG_LEVEL="WARNING",
    )
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen(
        [
            gunicorn,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread" if threads > 1 else "sync",
            "--log-level",
            "warning",
            "bench.bench_app:app",
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("gunicorn did not answer /health within 30 s")


LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
"""


def run_wrk(url: str, body: str, token: str | None, seconds: int, connections: int) -> dict:
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA.format(body=json.dumps(body), auth=auth))
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t",
                "1",
                "-c",
                str(connections),
                "-d",
                f"{seconds}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        os.unlink(script.name)
    return parse_wrk(out)


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(out: str) -> dict:
    result: dict = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        result[f"p{pct}_ms"] = _ms(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in", out)
    result["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    result["socket_errors"] = m.group(1) if m else ""
    return result


def median_round(rounds: list[dict]) -> dict:
    """The round with the median throughput (its latencies come with it)."""
    ordered = sorted(rounds, key=lambda r: r["rps"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["rps_all"] = [round(r["rps"]) for r in rounds]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternate the two endpoints this many times; medians are reported",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian package 'wrk')")

    token = prepare_database()
    port = free_port()
    server = start_gunicorn(port, args.workers, args.threads)
    base = f"http://127.0.0.1:{port}"
    call_body = json.dumps(
        {
            "caller_number": "0470 12 34 56",
            "caller_name": "Bench caller",
            "reason": "fever since this morning",
            "patient": {"name": "Bench patient", "age": 42},
            "address": {
                "street": "Rue du Banc",
                "number": "1",
                "postcode": "1000",
                "city": "Bruxelles",
            },
            "outcome": "consultation_booked",
        }
    )
    try:
        # Warm up both endpoints (connections, caches) before measuring.
        run_wrk(f"{base}/bench/bare", "{}", None, 3, args.connections)
        run_wrk(f"{base}/api/v1/calls", call_body, token, 3, args.connections)
        # Alternate the endpoints so that drift in the machine's speed during the run
        # falls on both alike; report the median round of each.
        bare_rounds, call_rounds = [], []
        for _ in range(args.rounds):
            bare_rounds.append(
                run_wrk(f"{base}/bench/bare", "{}", None, args.seconds, args.connections)
            )
            call_rounds.append(
                run_wrk(f"{base}/api/v1/calls", call_body, token, args.seconds, args.connections)
            )
        bare = median_round(bare_rounds)
        calls = median_round(call_rounds)
    finally:
        server.terminate()
        server.wait(timeout=30)

    ratio = calls["rps"] / bare["rps"] if bare["rps"] else 0.0
    figures = {
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "gunicorn": f"{args.workers} workers x {args.threads} threads",
        "wrk": (
            f"1 thread, {args.connections} connections, {args.rounds} rounds of {args.seconds} s"
        ),
        "bare_insert": bare,
        "log_call": calls,
        "ratio": round(ratio, 3),
        "goal_met": ratio >= 0.5 and (calls["p99_ms"] or 1e9) < 50 and calls["errors"] == 0,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"machine: {figures['machine']}; gunicorn {figures['gunicorn']}; wrk {figures['wrk']}")
    print(f"{'endpoint':<22}{'req/s':>10}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    for name, r in (("POST /bench/bare", bare), ("POST /api/v1/calls", calls)):
        print(
            f"{name:<22}{r['rps']:>10.0f}{r['p50_ms']:>10.2f}{r['p90_ms']:>10.2f}"
            f"{r['p99_ms']:>10.2f}{r['errors']:>10}"
        )
    print(f"req/s of each round: bare {bare['rps_all']}, calls {calls['rps_all']}")
    print(f"ratio calls/bare: {ratio:.2f} (goal >= 0.50); goal met: {figures['goal_met']}")


if __name__ == "__main__":
    main()
