"""Burst: thousands of deadlines falling due in the same second.

6,000 arrival deadlines (by default) fall due within one second ``S`` (spread
uniformly over it; ``--spread 0`` puts them all on the same instant). They are
armed through ``oncall.alerts.deadlines.arm`` in committed transactions with the
broker as sender, ``--lead`` seconds ahead. The circle's ``missed_arrival``
policy is one step, the coordinators at 0 s; the coordinator's webhook is a
receiver in its own process. A real Celery worker and the real scheduler run
beside.

Reported: the time from ``S`` until every alert is committed (the benchmark
polls the database every 50 ms: engine time) and until the receiver has every
coordinator notification (engine and delivery).

    .venv/bin/python -m bench.burst [--deadlines 6000] [--spread 1]

Goal: every notification received within 3 s of ``S``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta

from bench.safety_common import (
    COORDINATOR_AT_ONCE,
    Deployment,
    cpu_snapshot,
    fmt_stats,
    print_cpu,
    print_machine,
    print_stages,
    say,
    stages,
    wait_for,
)
from oncall.core.clock import utcnow

NAME = "burst"
GOAL_SECONDS = 3.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deadlines", type=int, default=6_000)
    parser.add_argument("--spread", type=float, default=1.0,
                        help="the deadlines fall due uniformly within this many seconds")
    parser.add_argument("--lead", type=float, default=50.0,
                        help="seconds from the start of arming to the burst")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="pool size of each worker")
    parser.add_argument("--batch", type=int, default=50, help="deadlines per arming commit")
    parser.add_argument("--engine-batch", type=int, default=None,
                        help="ONCALL_SWEEP_BATCH_SIZE of the processes (default: the setting's)")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    n = args.deadlines

    env = {"ONCALL_SWEEP_BATCH_SIZE": str(args.engine_batch)} if args.engine_batch else {}
    with Deployment(NAME, env=env) as dep:
        print_machine(NAME, dep.broker_url)
        world = dep.make_world()
        receiver = dep.start_receiver([world.circle_id])
        dep.add_webhook(world.circle_id, "coordinator", user_id=world.coordinator_id)
        dep.set_policy(world.circle_id, "missed_arrival", COORDINATOR_AT_ONCE)
        visits = dep.bulk_visits(world, n)
        dep.start_workers(args.workers, args.concurrency)
        dep.start_scheduler()

        ahead = utcnow() + timedelta(seconds=args.lead)
        second = ahead.replace(microsecond=0) + timedelta(seconds=1)
        plan = [(vid, second + timedelta(seconds=args.spread * i / n))
                for i, vid in enumerate(visits)]
        started = time.monotonic()
        dep.arm(world, plan, batch=args.batch)
        margin = (second - utcnow()).total_seconds()
        say(NAME, f"{n} deadlines armed in {time.monotonic() - started:.1f} s; "
                  f"the burst starts in {margin:.1f} s")
        if margin < 0:
            say(NAME, "WARNING: arming ran past the burst; raise --lead")

        # Wait for the burst, then watch the database (alerts committed) and the receiver.
        wait_for(lambda: utcnow() >= second, margin + 5, dep, interval=0.01)
        cpu_before, wall_before = cpu_snapshot(dep), time.monotonic()
        s_ts = second.timestamp()
        opened_at: float | None = None
        limit = time.monotonic() + args.timeout
        while time.monotonic() < limit:
            if opened_at is None and dep.scalar("SELECT count(*) FROM alerts") >= n:
                opened_at = time.time()
            if len(receiver.first_by_key()) >= n:
                break
            dep.check_alive()
            time.sleep(0.05)
        if opened_at is None and dep.scalar("SELECT count(*) FROM alerts") >= n:
            opened_at = time.time()
        cpu_after, wall_after = cpu_snapshot(dep), time.monotonic()
        first = receiver.first_by_key()
        received = [r.received_at for r in first.values()]
        all_received = len(first) >= n
        last_received = max(received) - s_ts if received else float("nan")
        opened = (opened_at - s_ts) if opened_at is not None else float("nan")
        lags = [r.received_at - r.due_at for r in first.values() if r.due_at is not None]
        first_opened = dep.scalar("SELECT min(opened_at) FROM alerts")
        last_pass = dep.scalar("SELECT max(opened_at) FROM alerts")

        print(f"[{NAME}] {n} deadlines due within {args.spread:g} s of S; worker(s) "
              f"{args.workers} x prefork {args.concurrency}; scheduler sweep "
              f"{dep.settings.scheduler_sweep_seconds:g} s; engine batch "
              f"{args.engine_batch or dep.settings.sweep_batch_size}")
        print(f"[{NAME}] first engine pass started S+{first_opened.timestamp() - s_ts:.3f} s, "
              f"last S+{last_pass.timestamp() - s_ts:.3f} s")
        print(f"[{NAME}] all {n} alerts committed by S+{opened:.2f} s (polled every 50 ms)")
        print(f"[{NAME}] all {len(first)}/{n} coordinator messages received by "
              f"S+{last_received:.2f} s; keys received twice: {len(receiver.repeated_keys())}")
        print(f"[{NAME}] per message, due_at -> received: {fmt_stats(lags)}")
        print_stages(NAME, stages(dep, first))
        print_cpu(NAME, cpu_before, cpu_after, wall_after - wall_before, n, "deadline")
        print(f"[{NAME}] deadlines marked missed, by process: {dep.moved_by()}")
        trouble = dep.trouble()
        if trouble:
            print(f"[{NAME}] errors logged by the processes ({len(trouble)}):")
            for line in trouble[:10]:
                print("  " + line)
        print_machine(NAME)
        met = all_received and last_received <= GOAL_SECONDS
        print(f"SUMMARY burst: {len(first)}/{n} received; alerts committed by S+{opened:.2f} s, "
              f"all received by S+{last_received:.2f} s; goal <= {GOAL_SECONDS:g} s "
              f"{'MET' if met else 'NOT MET'}")
        return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
