"""Redis wiped: how much later deadlines fire, and for how long, after the broker loses
everything.

The broker and Redis are a redis-server of the benchmark's own (on a free port).
The benchmark arms arrival deadlines continuously, ``--rate`` a second, each
falling due ``--lead`` seconds after it is armed (``deadlines.arm`` in committed
transactions, wake-ups handed to the broker as the web does), so that deadlines
fall due continuously at the same rate. ``--before`` seconds into the stream of
deadlines falling due, Redis gets FLUSHALL and is restarted (it keeps nothing:
the wake-up tasks the broker held, the ones the worker had reserved, and the
deduplication keys are all gone). The circle's ``missed_arrival`` policy is one
step, the coordinators at 0 s; their webhook is a receiver in its own process.

Reported: the lag (receive time - ``due_at``) before the wipe (the baseline),
the worst lag after it, and how long after the wipe the lag stays above normal
(the baseline p99 plus 0.25 s, at least 1 s).

    .venv/bin/python -m bench.redis_recovery [--rate 20] [--lead 30] [--before 30] [--after 60]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from datetime import timedelta
from typing import Any

from bench.safety_common import (
    COORDINATOR_AT_ONCE,
    Deployment,
    fmt_stats,
    print_machine,
    say,
    stats,
    wait_for,
)
from oncall.core.clock import utcnow

NAME = "redis_recovery"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="deadlines a second")
    parser.add_argument("--lead", type=float, default=30.0,
                        help="seconds between arming a deadline and its due time")
    parser.add_argument("--before", type=float, default=30.0,
                        help="seconds of deadlines falling due before the wipe")
    parser.add_argument("--after", type=float, default=60.0,
                        help="seconds of deadlines falling due after the wipe")
    parser.add_argument("--down", type=float, default=0.0,
                        help="seconds Redis stays stopped between the wipe and the restart")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="pool size of each worker")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.after <= args.lead:
        parser.error("--after must be longer than --lead (deadlines armed after the wipe)")

    with Deployment(NAME, private_redis=True) as dep:
        assert dep.redis is not None
        print_machine(NAME, dep.broker_url)
        world = dep.make_world()
        receiver = dep.start_receiver([world.circle_id])
        dep.add_webhook(world.circle_id, "coordinator", user_id=world.coordinator_id)
        dep.set_policy(world.circle_id, "missed_arrival", COORDINATOR_AT_ONCE)
        arming_seconds = args.before + args.after
        visits = dep.bulk_visits(world, int(args.rate * arming_seconds) + 100)
        dep.start_workers(args.workers, args.concurrency)
        dep.supervise_workers(args.concurrency)
        dep.start_scheduler()

        start = time.time()
        wipe_at = start + args.lead + args.before
        wipe: dict[str, Any] = {}

        def do_wipe() -> None:
            wipe["wiped"], wipe["back"] = dep.redis.wipe_and_restart(args.down)  # type: ignore[union-attr]

        timer = threading.Timer(wipe_at - time.time(), do_wipe)
        timer.start()
        say(NAME, f"arming {args.rate:g}/s for {arming_seconds:g} s, each due {args.lead:g} s "
                  f"later; Redis is wiped in {wipe_at - time.time():.0f} s")
        try:
            armed = arm_steadily(dep, world, visits, args.rate, args.lead, arming_seconds)
        finally:
            timer.join()
        say(NAME, f"{armed} deadlines armed; Redis wiped and back in "
                  f"{wipe['back'] - wipe['wiped']:.2f} s")
        last_due = utcnow() + timedelta(seconds=args.lead)
        limit = (last_due - utcnow()).total_seconds() + args.timeout
        wait_for(lambda: len(receiver.first_by_key()) >= armed, limit, dep, interval=0.5)

        first = receiver.first_by_key()
        points = sorted((r.due_at, r.received_at - r.due_at)
                        for r in first.values() if r.due_at is not None)
        wiped = wipe["wiped"]
        warm = start + args.lead + 5
        baseline = [lag for due, lag in points if warm <= due < wiped]
        after = [(due, lag) for due, lag in points if due >= wiped]
        base = stats(baseline)
        normal = max(1.0, base["p99"] + 0.25)
        late = [(due, lag) for due, lag in after if lag > normal]
        worst = max((lag for _, lag in after), default=float("nan"))
        recovered = (late[-1][0] - wiped) if late else 0.0

        print(f"[{NAME}] {armed} deadlines, {args.rate:g}/s, armed {args.lead:g} s ahead; "
              f"worker(s) {args.workers} x prefork {args.concurrency}; scheduler sweep "
              f"{dep.settings.scheduler_sweep_seconds:g} s, horizon every 30 s")
        print(f"[{NAME}] received {len(first)}/{armed}; keys received twice: "
              f"{len(receiver.repeated_keys())}")
        print(f"[{NAME}] Redis down (FLUSHALL -> answering again): "
              f"{wipe['back'] - wiped:.2f} s")
        print(f"[{NAME}] baseline lag before the wipe: {fmt_stats(baseline)}")
        print(f"[{NAME}] lag of deadlines due after the wipe: "
              f"{fmt_stats([lag for _, lag in after])}")
        print(f"[{NAME}] lag by due time, 5-second windows from the wipe:")
        print(f"  {'window':>12} {'n':>5} {'p50 s':>8} {'max s':>8} {'over normal':>12}")
        window = -10.0
        while window < args.after:
            chosen = [lag for due, lag in points if window <= due - wiped < window + 5]
            if chosen:
                s = stats(chosen)
                over = sum(1 for lag in chosen if lag > normal)
                print(f"  {f'{window:+.0f}..{window + 5:+.0f}':>12} {len(chosen):>5} "
                      f"{s['p50']:>8.3f} {s['max']:>8.3f} {over:>12}")
            window += 5
        print(f"[{NAME}] normal = lag <= {normal:.2f} s; {len(late)} deadlines above it after "
              f"the wipe, the last one due {recovered:.1f} s after the wipe")
        print(f"[{NAME}] deadlines marked missed, by process: {dep.moved_by()}")
        for name, when, tail in dep.restarts:
            last = tail.strip().splitlines()[-1] if tail.strip() else ""
            print(f"[{NAME}] {name} exited {when - wiped:+.1f} s after the wipe and was "
                  f"started again by the supervisor; its last log line: {last[:200]}")
        trouble = dep.trouble()
        if trouble:
            print(f"[{NAME}] errors logged by the processes ({len(trouble)}), first ones:")
            for line in trouble[:8]:
                print("  " + line)
        print_machine(NAME)
        complete = len(first) >= armed
        print(f"SUMMARY redis_recovery: {len(first)}/{armed} received; baseline p99 "
              f"{base['p99']:.3f} s; worst lag after the wipe {worst:.2f} s "
              f"(+{worst - base['p50']:.2f} s over the baseline p50); lag back to normal "
              f"{recovered:.1f} s after the wipe; nothing lost: {'YES' if complete else 'NO'}")
        return 0 if complete else 1


def arm_steadily(dep: Deployment, world: Any, visits: list[int], rate: float, lead: float,
                 seconds: float) -> int:
    """Arm ``rate`` deadlines a second for ``seconds``, each due ``lead`` s later, in
    commits of one tick (0.1 s) each; returns how many were armed."""
    tick = 0.1
    per_tick = rate * tick
    armed = 0
    owed = 0.0
    began = time.monotonic()
    next_tick = began
    while time.monotonic() - began < seconds:
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the pace of the arming
        next_tick += tick
        owed += per_tick
        count = int(owed)
        owed -= count
        if count:
            due = utcnow() + timedelta(seconds=lead)
            dep.arm(world, [(vid, due) for vid in visits[armed:armed + count]], batch=count)
            armed += count
    return armed


if __name__ == "__main__":
    sys.exit(main())
