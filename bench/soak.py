"""Soak: mixed traffic for minutes, a worker killed and Redis restarted along the way;
at the end, nothing lost and nothing duplicated.

The whole service runs as in production: ``oncall web`` (gunicorn), two Celery
workers, the scheduler, and a redis-server of the benchmark's own as broker. The
benchmark plays the people, through the API only:

* a dispatcher logs calls, and turns some into visits whose arrival deadline falls
  8 to 25 s later (assigned to the doctor on duty with the fewest open visits);
* doctors check in on time (most), late (after the alert opened: it resolves
  itself) or never; once in, they expect to stay one minute and check out on
  time (most), late, or never;
* doctors press the panic button now and then; the coordinator resolves it;
* the coordinator watches the open alerts, acknowledges some and resolves them.

Missed deadlines follow a shortened policy (doctor at once, coordinator after 5 s
and every 10 s, police after 20 s); panics the circle's default one
(coordinator and police at once, coordinator again every 60 s). Everyone is a
webhook of one receiver in its own process.

At 35 % of the run one worker is killed with SIGKILL (children included) and a
new one started 5 s later; at 65 % Redis gets FLUSHALL and is restarted. After
the traffic stops, every deadline still armed falls due, the coordinator
resolves what is open, and the messages settle. Then the checks:

* nothing lost: no deadline left armed past its time, every missed deadline has
  its alert, every panic pressed has its own alert, every step that fell due
  before the alert was acknowledged or resolved has its claim, every outbox row
  is delivered (or cancelled because its alert was acknowledged or resolved),
  and the receiver got every delivered row;
* nothing duplicated: claims unique per (alert, level) and (alert, step,
  repeat), one outbox row per claim and address, no idempotency key accepted
  twice by the receiver, no step fired after its alert was stopped.

    .venv/bin/python -m bench.soak [--minutes 10]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from bench.safety_common import (
    CALL_BODY,
    Deployment,
    World,
    fmt_stats,
    print_machine,
    say,
    wait_for,
)

NAME = "soak"
MISSED_POLICY = [
    {"target": "doctor", "after_seconds": 0, "repeat_every_seconds": None,
     "stop_on": "acknowledge"},
    {"target": "coordinator", "after_seconds": 5, "repeat_every_seconds": 10,
     "stop_on": "acknowledge"},
    {"target": "police", "after_seconds": 20, "repeat_every_seconds": None,
     "stop_on": "resolve"},
]
#: A step counts as due when its alert was still unstopped this long after its time
#: (the engine's lag is allowed).
STEP_TOLERANCE = timedelta(seconds=3)
#: A step's ``fired_at`` is its engine pass's start; an acknowledgement that waited for
#: that pass's lock carries an earlier time than the pass's commit.
FIRED_TOLERANCE = timedelta(seconds=1)
LOCATION = {"lat": 50.8466, "lon": 4.3528, "accuracy": 25}
VISIT_CALL = {k: v for k, v in CALL_BODY.items() if k != "outcome"}


class Traffic:
    """The people of the circle: timed actions run by a small thread pool."""

    def __init__(self, dep: Deployment, world: World, base: str, seed: int) -> None:
        self.dep = dep
        self.world = world
        self.base = base
        self.rng = random.Random(seed)
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._local = threading.local()
        self.pool = ThreadPoolExecutor(8, thread_name_prefix="people")
        self.counts: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.panics: list[int] = []
        self.handled: set[int] = set()
        self.panicking: set[int] = set()
        self.accepting = True

    # plumbing ---------------------------------------------------------------

    def at(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn, args))

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def call(self, method: str, path: str, user_id: int, body: Any = None,
             what: str = "", *, already: str = "") -> Any:
        """One API request as ``user_id``; the JSON answer, or None on failure (counted).

        With ``already``, a 409 (someone did it first) is counted under that name."""
        headers = {"Authorization": f"Bearer {self.world.tokens[user_id]}"}
        try:
            answer = self._session().request(method, f"{self.base}/api/v1{path}", json=body,
                                             headers=headers, timeout=15)
        except requests.RequestException as exc:
            self.failures[f"{what}: {type(exc).__name__}"] += 1
            return None
        if answer.status_code == 409 and already:
            self.counts[already] += 1
            return None
        if answer.status_code >= 300:
            self.failures[f"{what}: HTTP {answer.status_code}"] += 1
            return None
        self.counts[what] += 1
        return answer.json() if answer.content else {}

    def _run(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except Exception as exc:  # one failed action must not stop the traffic
            self.failures[f"{fn.__name__}: {type(exc).__name__}"] += 1

    def run(self, seconds: float) -> None:
        """Run the actions as they fall due for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready = []
            with self._lock:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    ready.append(heapq.heappop(self._heap))
                wait = (self._heap[0][0] - now) if self._heap else 0.05
            for _, _, fn, args in ready:
                self.pool.submit(self._run, fn, args)
            time.sleep(min(max(wait, 0.005), 0.05))  # the pace of the actions
        self.accepting = False
        with self._lock:
            self._heap.clear()
        self.pool.shutdown(wait=True)

    # the people ------------------------------------------------------------------

    def log_call(self, every: float) -> None:
        if self.accepting:
            self.at(self.rng.expovariate(1 / every), self.log_call, every)
            self.call("POST", "/calls", self.world.dispatcher_id, CALL_BODY, "calls logged")

    def new_visit(self, every: float) -> None:
        if not self.accepting:
            return
        self.at(self.rng.expovariate(1 / every), self.new_visit, every)
        call = self.call("POST", "/calls", self.world.dispatcher_id, VISIT_CALL, "calls logged")
        if call is None:
            return
        lead = self.rng.uniform(8, 25)
        arrive_by = datetime.now(UTC) + timedelta(seconds=lead)
        visit = self.call("POST", "/visits", self.world.dispatcher_id, {
            "call_id": call["id"], "zone_id": self.world.zone_id,
            "arrive_by": arrive_by.isoformat(),
        }, "visits created")
        if visit is None or visit.get("status") != "assigned":
            return
        doctor = int(visit["doctor_id"])
        fate = self.rng.random()
        if fate < 0.6:
            self.at(self.rng.uniform(2, lead - 2), self.check_in, visit["id"], doctor, "on time")
        elif fate < 0.75:
            self.at(lead + self.rng.uniform(8, 20), self.check_in, visit["id"], doctor, "late")
        else:
            self.counts["arrivals never checked in"] += 1

    def check_in(self, visit_id: int, doctor: int, when: str) -> None:
        done = self.call("POST", f"/visits/{visit_id}/check-in", doctor,
                         {"expected_minutes": 1, "location": LOCATION}, f"check-ins {when}")
        if done is None:
            return
        fate = self.rng.random()
        if fate < 0.7:
            self.at(self.rng.uniform(15, 50), self.check_out, visit_id, doctor, "on time")
        elif fate < 0.85:
            self.at(60 + self.rng.uniform(8, 20), self.check_out, visit_id, doctor, "late")
        else:
            self.counts["departures never checked out"] += 1

    def check_out(self, visit_id: int, doctor: int, when: str) -> None:
        self.call("POST", f"/visits/{visit_id}/check-out", doctor, {"note": "Seen"},
                  f"check-outs {when}")

    def press_panic(self, every: float) -> None:
        if not self.accepting:
            return
        self.at(self.rng.expovariate(1 / every), self.press_panic, every)
        with self._lock:
            free = [d for d in self.world.doctor_ids if d not in self.panicking]
            if not free:
                return
            doctor = self.rng.choice(free)
            self.panicking.add(doctor)
        pressed = self.call("POST", "/panic", doctor, {"location": LOCATION}, "panics pressed")
        if pressed is None:
            with self._lock:
                self.panicking.discard(doctor)
            return
        alert_id = int(pressed["alert_id"])
        with self._lock:
            self.panics.append(alert_id)
            self.handled.add(alert_id)
        self.at(self.rng.uniform(5, 15), self.resolve_panic, alert_id, doctor)

    def resolve_panic(self, alert_id: int, doctor: int) -> None:
        self.call("POST", f"/alerts/{alert_id}/resolve", self.world.coordinator_id,
                  {"note": "Doctor reached, safe"}, "panics resolved",
                  already="resolves of resolved alerts (409)")
        with self._lock:
            self.panicking.discard(doctor)

    def watch_alerts(self, every: float) -> None:
        if not self.accepting:
            return
        self.at(every, self.watch_alerts, every)
        page = self.call("GET", "/alerts?status=open&limit=200", self.world.coordinator_id,
                         None, "alert lists read")
        for item in (page or {}).get("items", []):
            alert_id = int(item["id"])
            with self._lock:
                if alert_id in self.handled:
                    continue
                self.handled.add(alert_id)
            if self.rng.random() < 0.5:
                self.at(self.rng.uniform(3, 12), self.acknowledge, alert_id)
            self.at(self.rng.uniform(15, 40), self.resolve, alert_id)

    def acknowledge(self, alert_id: int) -> None:
        self.call("POST", f"/alerts/{alert_id}/acknowledge", self.world.coordinator_id, None,
                  "alerts acknowledged", already="acknowledgements refused (409)")

    def resolve(self, alert_id: int) -> None:
        self.call("POST", f"/alerts/{alert_id}/resolve", self.world.coordinator_id,
                  {"note": "Doctor reached by phone"}, "alerts resolved",
                  already="resolves of resolved alerts (409)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--doctors", type=int, default=12)
    parser.add_argument("--visit-every", type=float, default=2.0,
                        help="mean seconds between two new visits")
    parser.add_argument("--call-every", type=float, default=0.5,
                        help="mean seconds between two calls without a visit")
    parser.add_argument("--panic-every", type=float, default=12.0,
                        help="mean seconds between two panics")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    seconds = args.minutes * 60

    with Deployment(NAME, private_redis=True) as dep:
        assert dep.redis is not None
        print_machine(NAME, dep.broker_url)
        world = dep.make_world(doctors=args.doctors, police=True, shifts=True, tokens=True)
        receiver = dep.start_receiver([world.circle_id])
        dep.add_webhook(world.circle_id, "coordinator", user_id=world.coordinator_id)
        dep.add_webhook(world.circle_id, "police", police_contact_id=world.police_id)
        for doctor in world.doctor_ids:
            dep.add_webhook(world.circle_id, f"doctor/{doctor}", user_id=doctor)
        for kind in ("missed_arrival", "missed_checkout"):
            dep.set_policy(world.circle_id, kind, MISSED_POLICY)
        dep.start_workers(2, 2)
        dep.supervise_workers(2, delay=5)
        dep.start_scheduler()
        base = dep.start_web(3, 4)
        say(NAME, f"web on {base}, 2 workers x prefork 2, scheduler, receiver; "
                  f"traffic for {args.minutes:g} min")

        traffic = Traffic(dep, world, base, args.seed)
        traffic.at(0, traffic.log_call, args.call_every)
        traffic.at(0, traffic.new_visit, args.visit_every)
        traffic.at(3, traffic.press_panic, args.panic_every)
        traffic.at(1, traffic.watch_alerts, 3.0)
        faults: dict[str, Any] = {}

        def kill_worker() -> None:
            victim = dep.workers[0]
            faults["killed"] = time.time()
            say(NAME, f"{victim.name} (pid {victim.pid}) killed with SIGKILL")
            victim.kill()  # the supervisor starts another 5 s later

        def restart_redis() -> None:
            faults["wiped"], faults["back"] = dep.redis.wipe_and_restart()  # type: ignore[union-attr]
            say(NAME, f"Redis wiped and restarted ({faults['back'] - faults['wiped']:.2f} s)")

        timers = [threading.Timer(0.35 * seconds, kill_worker),
                  threading.Timer(0.65 * seconds, restart_redis)]
        for timer in timers:
            timer.daemon = True
            timer.start()
        try:
            traffic.run(seconds)
        finally:
            for timer in timers:
                timer.cancel()
                if timer.is_alive():
                    timer.join()
        say(NAME, "traffic stopped; waiting for the armed deadlines to fall due")

        # Drain: every armed deadline falls due, the coordinator resolves what is open.
        wait_for(lambda: not dep.scalar("SELECT count(*) FROM deadlines WHERE state = 'armed'"),
                 150, dep, 0.5)
        open_ids = [r[0] for r in dep.rows("SELECT id FROM alerts WHERE status <> 'resolved'")]
        for alert_id in open_ids:
            traffic.resolve(alert_id)
        settled = wait_for(
            lambda: not dep.scalar("SELECT count(*) FROM outbox WHERE state = 'pending'"),
            120, dep, 0.5)
        say(NAME, f"{len(open_ids)} alerts resolved at the end; outbox settled: {settled}")
        wait_for(lambda: _all_received(dep, receiver), 30, dep, 0.5)
        ok = report(dep, traffic, receiver, faults, args)
        return 0 if ok else 1


def _all_received(dep: Deployment, receiver: Any) -> bool:
    delivered = {str(r[0]) for r in dep.rows("SELECT id FROM outbox WHERE state = 'delivered'")}
    return delivered <= set(receiver.first_by_key())


def report(dep: Deployment, traffic: Traffic, receiver: Any, faults: dict[str, Any],
           args: argparse.Namespace) -> bool:
    """Print the counts, run the checks; True when nothing was lost or duplicated."""
    checks: list[tuple[str, bool, str]] = []

    def check(name: str, passed: bool, detail: str = "") -> None:
        checks.append((name, passed, detail))

    states = dict(dep.rows("SELECT state, count(*) FROM deadlines GROUP BY state"))
    kinds = dict(dep.rows("SELECT kind, count(*) FROM alerts GROUP BY kind"))
    outbox_states = dict(dep.rows("SELECT state, count(*) FROM outbox GROUP BY state"))
    claims_total = dep.scalar("SELECT count(*) FROM escalation_claims")

    overdue = dep.scalar("SELECT count(*) FROM deadlines WHERE state = 'armed' "
                         "AND due_at <= now()")
    check("no deadline left armed past its time", overdue == 0, f"{overdue} left")
    orphans = dep.scalar("""
        SELECT count(*) FROM deadlines d WHERE d.state = 'missed' AND NOT EXISTS (
            SELECT 1 FROM alerts a WHERE a.id = d.alert_id AND a.deadline_id = d.id)""")
    check("every missed deadline has its alert", orphans == 0, f"{orphans} without")
    panic_alerts = {r[0] for r in dep.rows("SELECT id FROM alerts WHERE kind = 'panic'")}
    pressed = set(traffic.panics)
    check("every panic pressed has its own alert",
          pressed <= panic_alerts and len(pressed) == len(traffic.panics),
          f"{len(traffic.panics)} presses, {len(pressed)} distinct alerts, "
          f"{len(pressed - panic_alerts)} missing")

    missing_steps, late_steps = _step_claims(dep)
    check("every step due before its alert was stopped has its claim", not missing_steps,
          f"{len(missing_steps)} missing {missing_steps[:5]}")
    check("no step fired after its alert was stopped", not late_steps,
          f"{len(late_steps)} {late_steps[:5]}")
    doubled = dep.scalar("""
        SELECT count(*) FROM (SELECT alert_id, level FROM escalation_claims
                              GROUP BY alert_id, level HAVING count(*) > 1) x""")
    gaps = dep.scalar("""
        SELECT count(*) FROM (SELECT alert_id FROM escalation_claims GROUP BY alert_id
                              HAVING min(level) <> 1 OR max(level) <> count(*)) x""")
    check("claims unique per (alert, level), levels 1..n", doubled == 0 and gaps == 0,
          f"{doubled} doubled, {gaps} alerts with gaps")
    twice = dep.scalar("""
        SELECT count(*) FROM (SELECT claim_id, channel, address FROM outbox
                              WHERE claim_id IS NOT NULL
                              GROUP BY claim_id, channel, address HAVING count(*) > 1) x""")
    check("one outbox row per claim and address", twice == 0, f"{twice} doubled")
    unsent = outbox_states.get("pending", 0) + outbox_states.get("failed", 0)
    check("every outbox row delivered (or cancelled by its alert's stop)", unsent == 0,
          f"{outbox_states}")
    delivered = {str(r[0]) for r in dep.rows("SELECT id FROM outbox WHERE state = 'delivered'")}
    got = receiver.first_by_key()
    check("the receiver got every delivered row", delivered <= set(got),
          f"{len(delivered - set(got))} not received")
    strangers = set(got) - {str(r[0]) for r in dep.rows("SELECT id FROM outbox")}
    check("the receiver got nothing that is not in the outbox", not strangers,
          f"{len(strangers)}")
    repeated = receiver.repeated_keys()
    check("no idempotency key accepted twice by the receiver", not repeated,
          f"{len(repeated)} keys: {sorted(repeated.items())[:5]}")

    fire = [row[0] for row in dep.rows(
        "SELECT EXTRACT(EPOCH FROM fired_at - due_at) FROM escalation_claims")]

    print(f"[{NAME}] {args.minutes:g} min of traffic; {args.doctors} doctors; worker "
          f"killed at {_clock(faults, 'killed')}, Redis wiped at {_clock(faults, 'wiped')}")
    print(f"[{NAME}] requests: " + ", ".join(f"{k} {v}" for k, v in sorted(traffic.counts.items())))
    print(f"[{NAME}] failed requests: "
          + (", ".join(f"{k} {v}" for k, v in sorted(traffic.failures.items())) or "none"))
    print(f"[{NAME}] deadlines by state: {states}")
    print(f"[{NAME}] alerts by kind: {kinds}; claims (steps fired): {claims_total}")
    print(f"[{NAME}] outbox by state: {outbox_states}; receiver: {len(receiver.accepted())} "
          f"accepted POSTs, {len(got)} distinct keys")
    print(f"[{NAME}] step fired_at - due_at (engine lag): {fmt_stats([float(x) for x in fire])}")
    print(f"[{NAME}] deadlines marked missed, by process: {dep.moved_by()}")
    for name, when, tail in dep.restarts:
        last = tail.strip().splitlines()[-1] if tail.strip() else ""
        print(f"[{NAME}] {name} exited at {time.strftime('%H:%M:%S', time.localtime(when))}"
              f" and was started again; its last log line: {last[:200]}")
    trouble = dep.trouble()
    print(f"[{NAME}] error lines logged by the processes: {len(trouble)}")
    for line in trouble[:8]:
        print("  " + line)
    print(f"[{NAME}] checks:")
    for name, passed, detail in checks:
        print(f"  {'ok  ' if passed else 'FAIL'} {name}" + ("" if passed else f": {detail}"))
    print_machine(NAME)
    ok = all(passed for _, passed, _ in checks)
    missed = states.get("missed", 0)
    print(f"SUMMARY soak: {args.minutes:g} min, {sum(traffic.counts.values())} requests, "
          f"{missed} missed deadlines, {len(traffic.panics)} panics, {sum(kinds.values())} "
          f"alerts, {claims_total} steps, {outbox_states.get('delivered', 0)} messages "
          f"delivered; worker killed and Redis restarted; nothing lost: "
          f"{'YES' if ok else 'NO'} ({sum(p for _, p, _ in checks)}/{len(checks)} checks)")
    return ok


def _clock(faults: dict[str, Any], key: str) -> str:
    """The time of day of a fault, or "never"."""
    return time.strftime("%H:%M:%S", time.localtime(faults[key])) if key in faults else "never"


def _step_claims(dep: Deployment) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(alert, step) pairs that fell due while the alert ran but have no claim, and
    claims fired after the alert was stopped for their step."""
    alerts = dep.rows("SELECT id, due_at, policy, acknowledged_at, resolved_at FROM alerts")
    fired: dict[tuple[int, int], list[datetime]] = {}
    for alert_id, step, fired_at in dep.rows(
            "SELECT alert_id, step_index, fired_at FROM escalation_claims"):
        fired.setdefault((alert_id, step), []).append(fired_at)
    missing: list[tuple[int, int]] = []
    late: list[tuple[int, int]] = []
    for alert_id, due_at, policy, acknowledged_at, resolved_at in alerts:
        for index, step in enumerate(policy):
            if step.get("stop_on") == "acknowledge":
                stops = [t for t in (acknowledged_at, resolved_at) if t is not None]
            else:
                stops = [resolved_at] if resolved_at is not None else []
            stop = min(stops) if stops else None
            first_due = due_at + timedelta(seconds=int(step.get("after_seconds") or 0))
            times = fired.get((alert_id, index), [])
            if not times and (stop is None or stop > first_due + STEP_TOLERANCE):
                missing.append((alert_id, index))
            if stop is not None and any(t > stop + FIRED_TOLERANCE for t in times):
                late.append((alert_id, index))
    return missing, late


if __name__ == "__main__":
    sys.exit(main())
