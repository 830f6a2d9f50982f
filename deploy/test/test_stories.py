"""The compose story player (deploy/compose/stories/play.py): what it plans, and that it
really produces into Kafka (librdkafka's mock cluster on loopback stands in for a broker).

  python3 -m unittest deploy/test/test_stories.py   (needs confluent-kafka for the second)
"""

import importlib.util
import json
import pathlib
import subprocess
import sys
import time
import unittest
from datetime import datetime, timedelta, timezone

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAY = ROOT / "deploy" / "compose" / "stories" / "play.py"
SCENARIOS = ROOT / "tests" / "scenarios"
NOW = datetime(2027, 3, 17, 9, 30, tzinfo=timezone.utc)

spec = importlib.util.spec_from_file_location("play", PLAY)
play = importlib.util.module_from_spec(spec)
spec.loader.exec_module(play)


def story_lines():
    lines = {}
    for path in sorted(SCENARIOS.glob("*.jsonl")):
        lines[path.stem] = [l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
    return lines


class Plan(unittest.TestCase):
    def test_every_line_of_every_story_goes_out_in_time_order(self):
        planned = play.plan(SCENARIOS, NOW)
        self.assertEqual(len(planned), sum(len(v) for v in story_lines().values()))
        times = [at for at, _, _, _ in planned]
        self.assertEqual(times, sorted(times))
        self.assertLessEqual(max(times), NOW)
        self.assertGreater(max(times), NOW - timedelta(days=7))

    def test_topics_keys_and_ids_follow_the_demo(self):
        broken = 0
        for _, topic, key, payload in play.plan(SCENARIOS, NOW):
            self.assertIn(topic, {"orders", "warehouse", "carrier"})
            try:
                event = json.loads(payload)
            except ValueError:
                broken += 1
                continue
            if not isinstance(event, dict) or play.parse_time(event.get("time")) is None:
                broken += 1
                continue
            kind, data = event.get("type") or "", event.get("data") or {}
            data = {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
            if kind.startswith("order."):
                self.assertEqual((topic, key), ("orders", data.get("order_id", "")))
            elif kind == "warehouse.incident":
                self.assertEqual((topic, key), ("warehouse", data.get("warehouse", "")))
            elif kind.startswith("warehouse."):
                self.assertEqual((topic, key), ("warehouse", data.get("order_id", "")))
            elif kind == "carrier.incident":
                self.assertEqual((topic, key), ("carrier", data.get("carrier", "")))
            elif kind.startswith("carrier."):
                self.assertEqual((topic, key), ("carrier", data.get("tracking_number", "")))
            self.assertTrue(any(event["id"].startswith(f"{s}-") for s in story_lines()), event["id"])
        # The stories hold broken lines on purpose: they go out as they are.
        self.assertGreater(broken, 0)

    def test_each_story_moves_by_whole_weeks(self):
        planned = {json.loads(p)["id"]: json.loads(p) for _, _, _, p in play.plan(SCENARIOS, NOW) if p.startswith(b"{\"spec")}
        for story, lines in story_lines().items():
            for line in lines:
                try:
                    original = json.loads(line)
                except ValueError:
                    continue
                moved = planned.get(f"{story}-{original.get('id')}")
                if moved is None or play.parse_time(original.get("time")) is None:
                    continue
                shift = play.parse_time(moved["time"]) - play.parse_time(original["time"])
                self.assertEqual(shift % timedelta(weeks=1), timedelta(0), f"{story}: {shift}")
                self.assertEqual(moved["data"].keys(), original["data"].keys())


class IntoKafka(unittest.TestCase):
    def test_the_player_produces_every_event_with_its_key(self):
        try:
            from confluent_kafka import Consumer, Producer
        except ImportError:
            self.fail("confluent-kafka is needed (deploy/test/check.sh installs it)")
        # A producer with a mock cluster keeps the cluster alive; its broker listens on loopback.
        holder = Producer({"test.mock.num.brokers": 1, "bootstrap.servers": "mock:1", "log_level": 3})
        brokers = holder.list_topics(timeout=10).brokers.values()
        bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers)
        self.assertTrue(bootstrap.startswith("127.0.0.1:"), bootstrap)
        now = NOW.isoformat()
        run = subprocess.run(
            [sys.executable, str(PLAY), "--bootstrap", bootstrap, "--scenarios", str(SCENARIOS), "--now", now, "--timeout", "20"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("stories:", run.stdout)
        want = sorted((t, k, p) for _, t, k, p in play.plan(SCENARIOS, NOW))
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "stories-test",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "log_level": 3,
            }
        )
        consumer.subscribe(["orders", "warehouse", "carrier"])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < len(want) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got.append((msg.topic(), (msg.key() or b"").decode("utf-8"), msg.value()))
        consumer.close()
        self.assertEqual(sorted(got), want)


if __name__ == "__main__":
    unittest.main()
