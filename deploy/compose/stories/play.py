#!/usr/bin/env python3
"""Play the stories of tests/scenarios into Kafka, for the compose quick start.

Each story is moved by whole weeks so that its last event lies just before now: weekdays,
cut-offs and quiet hours stay true, and the dates in the messages are of this week. The
events go out in time order, to the topic and with the key belofte's demo uses:

  order.*      -> orders     key: data.order_id
  warehouse.*  -> warehouse  key: data.order_id (an incident: data.warehouse)
  carrier.*    -> carrier    key: data.tracking_number (an incident: data.carrier)

A line that is not a valid event goes out as it is (to warehouse): belofte dead-letters it.
Ids get the story's name in front, as in `belofte demo`, so stories cannot clash; playing
the stories again changes nothing (belofte drops the duplicates).

  play.py --bootstrap kafka:9092 [--scenarios DIR]
  play.py --dry-run            # print topic, key and event per line; needs no Kafka
"""

import argparse
import json
import pathlib
import sys
from datetime import datetime, timedelta, timezone

try:
    from zoneinfo import ZoneInfo

    AMSTERDAM = ZoneInfo("Europe/Amsterdam")
except Exception:  # no time zone data: keep each timestamp's own offset
    AMSTERDAM = None

WEEK = timedelta(weeks=1)


def parse_time(value):
    """An RFC 3339 time with an offset, or None."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def shift_times(value, shift):
    """Every RFC 3339 timestamp in a JSON value, moved by `shift`."""
    if isinstance(value, dict):
        return {k: shift_times(v, shift) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_times(v, shift) for v in value]
    t = parse_time(value)
    if t is None:
        return value
    moved = t + shift
    if AMSTERDAM is not None:
        moved = moved.astimezone(AMSTERDAM)
    return moved.isoformat()


def topic_and_key(event):
    kind = event.get("type") or ""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}

    def field(name):
        v = data.get(name)
        return v if isinstance(v, str) else ""

    if kind.startswith("order."):
        return "orders", field("order_id")
    if kind.startswith("warehouse."):
        return "warehouse", field("warehouse") if kind == "warehouse.incident" else field("order_id")
    return "carrier", field("carrier") if kind == "carrier.incident" else field("tracking_number")


def plan(scenarios, now):
    """(time, topic, key, payload bytes) for every line of every story, in time order."""
    planned = []
    files = sorted(pathlib.Path(scenarios).glob("*.jsonl"))
    for order, path in enumerate(files):
        story = path.stem
        lines = [l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            at = parse_time(event.get("time")) if isinstance(event, dict) else None
            events.append((line, event if at is not None else None, at))
        times = [at for _, _, at in events if at is not None]
        if not times:
            continue
        # Whole weeks, so that the story's last event lies in the week before now.
        weeks = (now - max(times)) // WEEK
        shift = WEEK * weeks
        last = min(times) + shift
        for seq, (line, event, at) in enumerate(events):
            if event is None:
                planned.append((last, order, seq, "warehouse", "", line.encode("utf-8")))
                continue
            event = shift_times(event, shift)
            if isinstance(event.get("id"), str):
                event["id"] = f"{story}-{event['id']}"
            last = at + shift
            topic, key = topic_and_key(event)
            payload = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            planned.append((last, order, seq, topic, key, payload))
    planned.sort(key=lambda p: (p[0], p[1], p[2]))
    return [(at, topic, key, payload) for at, _, _, topic, key, payload in planned]


def produce(planned, bootstrap, timeout):
    from confluent_kafka import Producer  # only here: --dry-run needs no Kafka client

    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": "belofte-stories",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            # One partitioner for every topic (here the Java client's, as a shop's Java
            # producers use): an order id lands on one partition number in orders and
            # warehouse, which is what ownership by partition needs.
            "partitioner": "murmur2_random",
        }
    )
    for _, topic, key, payload in planned:
        while True:
            try:
                producer.produce(topic, value=payload, key=key.encode("utf-8") if key else None, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(timeout)
    if left or failures:
        sys.exit(f"stories: {left} event(s) not delivered, {len(failures)} failed: {failures[:3]}")


def main(argv=None):
    # In the image the stories are in /stories; in the repository, in tests/scenarios.
    in_repo = pathlib.Path(__file__).resolve().parents[2].parent / "tests" / "scenarios"
    default_scenarios = pathlib.Path("/stories") if pathlib.Path("/stories").is_dir() else in_repo
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="kafka:9092")
    ap.add_argument("--scenarios", default=str(default_scenarios))
    ap.add_argument("--now", help="RFC 3339; default: the current time (tests)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the broker's acknowledgements")
    ap.add_argument("--dry-run", action="store_true", help="print topic, key and event; send nothing")
    args = ap.parse_args(argv)
    now = parse_time(args.now) if args.now else datetime.now(timezone.utc)
    if now is None:
        ap.error(f"--now {args.now!r} is not RFC 3339 with an offset")
    planned = plan(args.scenarios, now)
    if not planned:
        sys.exit(f"stories: no NAME.jsonl in {args.scenarios}")
    if args.dry_run:
        out = sys.stdout
        for _, topic, key, payload in planned:
            out.write(f"{topic}\t{key}\t{payload.decode('utf-8')}\n")
        return
    produce(planned, args.bootstrap, args.timeout)
    counts = {}
    for _, topic, _, _ in planned:
        counts[topic] = counts.get(topic, 0) + 1
    spread = ", ".join(f"{n} to {t}" for t, n in sorted(counts.items()))
    first, last = planned[0][0], planned[-1][0]
    print(f"stories: {len(planned)} events ({spread}), from {first:%a %d %b %H:%M} to {last:%a %d %b %H:%M}")
    print("stories: belofte catches up on them now; the mails arrive in Mailpit (http://localhost:8025)")


if __name__ == "__main__":
    main()
