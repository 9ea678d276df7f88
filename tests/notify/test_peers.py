"""The local peers themselves: restarts on the same port, waiting, failures on demand."""

from __future__ import annotations

import json
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from oncall.notify.channels.base import DeliveryFailed
from oncall.notify.channels.webhook import WebhookChannel
from tests.notify.helpers import SECRET_KEY, outgoing
from tests.peers import HOST, SmtpPeer, WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]


def refuses(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_webhook_receiver_stops_and_starts_on_the_same_port() -> None:
    receiver = WebhookReceiver().start()
    port = receiver.port
    receiver.stop()
    assert refuses(port)
    receiver.start()
    try:
        assert receiver.port == port
        assert requests.post(receiver.url, json={"a": 1}, timeout=2).status_code == 200
    finally:
        receiver.stop()


def test_wait_for_gives_up_at_its_deadline_and_wakes_on_arrival() -> None:
    with WebhookReceiver() as receiver:
        started = time.monotonic()
        assert receiver.wait_for(1, timeout=0.2) is False
        assert 0.2 <= time.monotonic() - started < 1

        def post_later() -> None:
            time.sleep(0.05)
            requests.post(receiver.url, json={}, headers={"Idempotency-Key": "9"}, timeout=2)

        threading.Thread(target=post_later).start()
        assert receiver.wait_for(1, timeout=5)
        assert receiver.wait_for(lambda: receiver.deliveries[0].key == "9", timeout=1)


def test_duplicates_count_only_accepted_deliveries() -> None:
    channel = WebhookChannel(SECRET_KEY, timeout=2)
    with WebhookReceiver() as receiver:
        receiver.fail_next(1, 503)
        with pytest.raises(DeliveryFailed):
            channel.send(outgoing(receiver.url))
        channel.send(outgoing(receiver.url))
        channel.send(outgoing(receiver.url))
        assert [d.status for d in receiver.deliveries] == [503, 200, 200]
        assert receiver.unique_keys() == {"42"}
        assert receiver.duplicates() == {"42": 2}
    channel.close()


def test_smtp_peer_stops_and_starts_on_the_same_port() -> None:
    peer = SmtpPeer().start()
    port = peer.port
    peer.stop()
    assert refuses(port)
    peer.start()
    try:
        assert peer.port == port
        with smtplib.SMTP(HOST, port, timeout=2) as session:
            assert session.noop()[0] == 250
    finally:
        peer.stop()


def test_webhook_receiver_runs_as_a_process(tmp_path: Path) -> None:
    log = tmp_path / "deliveries.jsonl"
    command = [
        sys.executable, "-m", "tests.peers", "webhook", "--log", str(log),
        "--secret-key", SECRET_KEY, "--circle", "7",
    ]  # fmt: skip
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        _check_running_receiver(process, log)


def _check_running_receiver(process: subprocess.Popen[str], log: Path) -> None:
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["ready"] is True
        channel = WebhookChannel(SECRET_KEY, timeout=2)
        payload = {"alert": {"id": 5, "level": 2, "due_at": "2025-03-30T01:30:00+00:00"}}
        assert channel.send(outgoing(ready["url"], payload=payload)).startswith("HTTP 200")
        channel.close()

        deadline = time.monotonic() + 5
        while not (log.exists() and log.read_text().endswith("\n")):
            assert time.monotonic() < deadline, "no log line written"
            time.sleep(0.02)
        [line] = [json.loads(text) for text in log.read_text().splitlines()]
        assert line["key"] == "42"
        assert line["status"] == 200
        assert line["alert_id"] == 5
        assert line["due_at"] == "2025-03-30T01:30:00+00:00"
        assert abs(line["received_at"] - time.time()) < 10
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_process_receiver_can_answer_a_failure() -> None:
    command = [sys.executable, "-m", "tests.peers", "webhook", "--status", "503"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = json.loads(process.stdout.readline())["url"]
            assert requests.post(url, json={}, timeout=2).status_code == 503
        finally:
            process.terminate()
            assert process.wait(timeout=10) == 0
