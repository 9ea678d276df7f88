"""Fire lag: armed deadlines falling due steadily, from ``due_at`` to the coordinator's webhook.

10,000 arrival deadlines (by default) fall due uniformly over one minute. They
are armed through ``oncall.alerts.deadlines.arm`` in committed transactions of
50, with the broker as sender (each commit hands its wake-ups to Redis, as the
web does), starting ``--lead`` seconds before the first falls due. The circle's
``missed_arrival`` policy is one step: the coordinators at 0 s. A real Celery
worker (prefork, ``--concurrency``) and the real scheduler run beside; the
coordinator's webhook is a receiver in its own process, which writes the receive
time of each delivery. Lag = receive time - the deadline's ``due_at``.

    .venv/bin/python -m bench.fire_lag [--deadlines 10000] [--window 60] [--lead 60]

Goal: p99 <= 1 s.
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
    stats,
    wait_for,
)
from oncall.core.clock import utcnow

NAME = "fire_lag"
GOAL_P99 = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deadlines", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=60.0,
                        help="seconds over which the deadlines fall due")
    parser.add_argument("--lead", type=float, default=60.0,
                        help="seconds from the start of arming to the first deadline")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="pool size of each worker")
    parser.add_argument("--batch", type=int, default=50, help="deadlines per arming commit")
    parser.add_argument("--engine-batch", type=int, default=None,
                        help="ONCALL_SWEEP_BATCH_SIZE of the processes (default: the setting's)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds after the last deadline to wait for deliveries")
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
        say(NAME, f"{len(visits)} visits written; worker(s) and scheduler running")

        first_due = utcnow() + timedelta(seconds=args.lead)
        plan = [(vid, first_due + timedelta(seconds=args.window * i / n))
                for i, vid in enumerate(visits)]
        started = time.monotonic()
        dep.arm(world, plan, batch=args.batch)
        armed_in = time.monotonic() - started
        margin = (first_due - utcnow()).total_seconds()
        say(NAME, f"{n} deadlines armed in {armed_in:.1f} s "
                  f"({n / armed_in:.0f}/s); first falls due in {margin:.1f} s")
        if margin < 0:
            say(NAME, "WARNING: arming ran past the first deadline; raise --lead")

        cpu_before, wall_before = cpu_snapshot(dep), time.monotonic()
        last_due = plan[-1][1]
        limit = (last_due - utcnow()).total_seconds() + args.timeout
        done = wait_for(lambda: len(receiver.first_by_key()) >= n, limit, dep, interval=0.5)
        cpu_after, wall_after = cpu_snapshot(dep), time.monotonic()
        first = receiver.first_by_key()
        lags = [r.received_at - r.due_at for r in first.values() if r.due_at is not None]
        alerts = dep.scalar("SELECT count(*) FROM alerts")
        repeated = receiver.repeated_keys()

        s = stats(lags)
        print(f"[{NAME}] {n} deadlines due over {args.window:g} s; worker(s) "
              f"{args.workers} x prefork {args.concurrency}; scheduler sweep "
              f"{dep.settings.scheduler_sweep_seconds:g} s; engine batch "
              f"{args.engine_batch or dep.settings.sweep_batch_size}")
        print(f"[{NAME}] alerts opened: {alerts}; coordinator messages received: "
              f"{len(first)}; keys received twice: {len(repeated)}")
        print(f"[{NAME}] lag due_at -> received: {fmt_stats(lags)}")
        print_stages(NAME, stages(dep, first))
        print_cpu(NAME, cpu_before, cpu_after, wall_after - wall_before, n, "deadline")
        print(f"[{NAME}] deadlines marked missed, by process: {dep.moved_by()}")
        trouble = dep.trouble()
        if trouble:
            print(f"[{NAME}] errors logged by the processes ({len(trouble)}):")
            for line in trouble[:10]:
                print("  " + line)
        print_machine(NAME)
        met = done and s["p99"] <= GOAL_P99
        print(f"SUMMARY fire_lag: {len(lags)}/{n} received, p50 {s['p50']:.3f} s, "
              f"p99 {s['p99']:.3f} s, max {s['max']:.3f} s; goal p99 <= {GOAL_P99:g} s "
              f"{'MET' if met else 'NOT MET'}")
        return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
