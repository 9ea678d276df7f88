"""Panic to webhook: how long from a doctor's press until the coordinator's webhook has it.

The web server (``oncall web``, gunicorn) serves the API; a real Celery worker and
the real scheduler run beside. In the background, another process logs calls
through ``POST /api/v1/calls`` at a steady rate. Doctors press the panic button
through ``POST /api/v1/panic`` (``--panics`` presses, ``--rate`` a second,
taking turns among ``--doctors`` doctors); before a doctor presses again, the
coordinator resolves their previous panic through the API, so that every press
opens a new alert instead of joining the last one. The circle keeps its default
panic policy (the coordinators and the police at once); the coordinator and the
police contact are webhooks of a receiver in its own process.

Latency = the receiver's receive time - the instant the benchmark sent the press.

    .venv/bin/python -m bench.panic_latency [--panics 200] [--rate 4] [--call-rate 20]

Goal: p99 <= 250 ms.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from typing import Any

import requests

from bench.safety_common import (
    Deployment,
    fmt_stats,
    percentile,
    print_machine,
    run_call_logger,
    say,
    stats,
    wait_for,
)

NAME = "panic_latency"
GOAL_P99 = 0.250
LOCATION = {"lat": 50.8466, "lon": 4.3528, "accuracy": 25}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--panics", type=int, default=200)
    parser.add_argument("--doctors", type=int, default=20)
    parser.add_argument("--rate", type=float, default=4.0, help="panic presses a second")
    parser.add_argument("--call-rate", type=float, default=20.0,
                        help="calls logged a second in the background (0: none)")
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="pool size of each worker")
    parser.add_argument("--warmup", type=int, default=10, help="presses not counted")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)

    with Deployment(NAME) as dep:
        print_machine(NAME, dep.broker_url)
        world = dep.make_world(doctors=args.doctors, police=True, tokens=True)
        receiver = dep.start_receiver([world.circle_id])
        dep.add_webhook(world.circle_id, "coordinator", user_id=world.coordinator_id)
        dep.add_webhook(world.circle_id, "police", police_contact_id=world.police_id)
        dep.start_workers(args.workers, args.concurrency)
        dep.start_scheduler()
        base = dep.start_web(args.web_workers, args.web_threads)
        say(NAME, f"web on {base}; worker(s), scheduler and receiver running")

        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        results: Any = ctx.Queue()
        logger = None
        if args.call_rate > 0:
            logger = ctx.Process(target=run_call_logger, daemon=True, args=(
                base, world.tokens[world.dispatcher_id], args.call_rate, stop, results))
            logger.start()
        try:
            presses = press_panics(dep, world, base, args)
        finally:
            stop.set()
        calls: tuple[int, list[float], int] = (0, [], 0)
        if logger is not None:
            calls = results.get(timeout=30)
            logger.join(timeout=10)

        counted = presses[args.warmup:]
        alert_ids = [a for a, _, _ in counted]
        rows = dep.rows(
            """
            SELECT o.id, o.alert_id, o.recipient_type, a.opened_at, att.started_at
            FROM outbox o
            JOIN escalation_claims c ON c.id = o.claim_id
            JOIN alerts a ON a.id = o.alert_id
            LEFT JOIN delivery_attempts att ON att.outbox_id = o.id AND att.attempt = 1
            WHERE o.alert_id = ANY(:ids) AND o.purpose = 'alert.step' AND c.repeat_no = 0
            """,
            ids=alert_ids,
        )
        wanted = {str(r[0]) for r in rows}
        wait_for(lambda: wanted <= set(receiver.first_by_key()), args.timeout, dep, 0.2)
        first = receiver.first_by_key()
        pressed = {a: (t0, t1) for a, t0, t1 in counted}
        coordinator: list[float] = []
        police: list[float] = []
        to_open: list[float] = []
        to_send: list[float] = []
        on_wire: list[float] = []
        missing = 0
        for outbox_id, alert_id, recipient_type, opened_at, started_at in rows:
            got = first.get(str(outbox_id))
            if got is None:
                missing += 1
                continue
            t0 = pressed[alert_id][0]
            (coordinator if recipient_type == "user" else police).append(got.received_at - t0)
            if recipient_type == "user" and started_at is not None:
                to_open.append(opened_at.timestamp() - t0)
                to_send.append((started_at - opened_at).total_seconds())
                on_wire.append(got.received_at - started_at.timestamp())
        answers = [t1 - t0 for _, t0, t1 in counted]
        call_latencies = calls[1]

        print(f"[{NAME}] {len(presses)} panics from {args.doctors} doctors at {args.rate:g}/s "
              f"({args.warmup} warm-up presses not counted); web {args.web_workers} x "
              f"{args.web_threads} threads; worker(s) {args.workers} x prefork {args.concurrency}")
        print(f"[{NAME}] background call logging: {calls[0]} calls at {args.call_rate:g}/s, "
              f"{calls[2]} failed; latency p50 {percentile(call_latencies, 50) * 1000:.1f} ms, "
              f"p99 {percentile(call_latencies, 99) * 1000:.1f} ms")
        print(f"[{NAME}] press -> coordinator webhook: {fmt_stats(coordinator, 'ms', 1000)}")
        print(f"[{NAME}] press -> police webhook:      {fmt_stats(police, 'ms', 1000)}")
        print(f"[{NAME}] HTTP answer to the press:     {fmt_stats(answers, 'ms', 1000)}")
        print(f"[{NAME}] where the time went (coordinator message):")
        print(f"  press -> alert opened (request, auth, engine start) "
              f"{fmt_stats(to_open, 'ms', 1000)}")
        print(f"  opened -> send starts (commit, Celery hop, claim)   "
              f"{fmt_stats(to_send, 'ms', 1000)}")
        print(f"  send starts -> received (HTTP, receiver)            "
              f"{fmt_stats(on_wire, 'ms', 1000)}")
        print(f"[{NAME}] messages not received: {missing}; keys received twice: "
              f"{len(receiver.repeated_keys())}")
        trouble = dep.trouble()
        if trouble:
            print(f"[{NAME}] errors logged by the processes ({len(trouble)}):")
            for line in trouble[:10]:
                print("  " + line)
        print_machine(NAME)
        s = stats(coordinator)
        met = missing == 0 and s["p99"] <= GOAL_P99
        print(f"SUMMARY panic_latency: {len(coordinator)} panics, press -> coordinator webhook "
              f"p50 {s['p50'] * 1000:.0f} ms, p99 {s['p99'] * 1000:.0f} ms, "
              f"max {s['max'] * 1000:.0f} ms, with {args.call_rate:g} calls/s logged; "
              f"goal p99 <= {GOAL_P99 * 1000:.0f} ms {'MET' if met else 'NOT MET'}")
        return 0 if met else 1


def press_panics(dep: Deployment, world: Any, base: str,
                 args: argparse.Namespace) -> list[tuple[int, float, float]]:
    """Press the panic buttons at the given rate; (alert id, sent, answered) per press."""
    session = requests.Session()
    coordinator = {"Authorization": f"Bearer {world.tokens[world.coordinator_id]}"}
    previous: dict[int, int] = {}
    presses: list[tuple[int, float, float]] = []
    interval = 1.0 / args.rate
    next_at = time.monotonic()
    for i in range(args.panics + args.warmup):
        doctor = world.doctor_ids[i % len(world.doctor_ids)]
        if doctor in previous:
            answer = session.post(f"{base}/api/v1/alerts/{previous[doctor]}/resolve",
                                  json={"note": "Doctor reached, safe"}, headers=coordinator,
                                  timeout=10)
            answer.raise_for_status()
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the pace of the presses
        next_at += interval
        headers = {"Authorization": f"Bearer {world.tokens[doctor]}"}
        sent = time.time()
        answer = session.post(f"{base}/api/v1/panic", json={"location": LOCATION},
                              headers=headers, timeout=10)
        answered = time.time()
        answer.raise_for_status()
        alert_id = int(answer.json()["alert_id"])
        if previous.get(doctor) == alert_id:
            raise RuntimeError(f"press {i} joined alert {alert_id} instead of opening one")
        previous[doctor] = alert_id
        presses.append((alert_id, sent, answered))
        if i % 50 == 0:
            dep.check_alive()
    session.close()
    return presses


if __name__ == "__main__":
    sys.exit(main())
