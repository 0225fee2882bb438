#!/usr/bin/env python3
"""A Lethe connector in Python, written against the wire format alone.

It uses confluent-kafka (librdkafka) and nothing of Lethe's, and follows
docs/connectors.md ("The wire format (any language)" and "Signed
messages"): it reads its system's commands in its own consumer group,
checks their signatures, erases, confirms with acks=all, and commits a
command's offset only once its answer is acknowledged. It takes single and
batch commands.

The data it erases is a JSON file mapping an identifier value to how many
records the service holds under it, a stand-in for a real database:

    LETHE_SYSTEM=shop LETHE_KAFKA_BROKERS=127.0.0.1:9092 \\
    SHOP_DATA=/tmp/shop.json python3 examples/python-connector/connector.py

LETHE_CONNECTOR_KEY_ID and LETHE_CONNECTOR_SECRET (64 hex characters), when
set, make it verify commands and sign confirmations.

`connector.py seed` stores two records under $LETHE_SEED_VALUE, for
`lethe conformance --seed 'python3 connector.py seed'` (docs/connectors.md,
"Conformance").
"""

import datetime
import hashlib
import hmac
import json
import os
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer

SYSTEM = os.environ.get("LETHE_SYSTEM", "")
BROKERS = os.environ.get("LETHE_KAFKA_BROKERS", "127.0.0.1:9092")
TOPIC = os.environ.get("LETHE_TOPIC", "lethe.erasure." + SYSTEM)
DATA = os.environ["SHOP_DATA"]
KEY_ID = os.environ.get("LETHE_CONNECTOR_KEY_ID", "")
SECRET = bytes.fromhex(os.environ.get("LETHE_CONNECTOR_SECRET", ""))
CONFIRMATIONS = "lethe.erasure.confirmations"

running = True


def stop(*_):
    global running
    running = False


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def sign(value):
    return hmac.new(SECRET, value, hashlib.sha256).hexdigest()


def refusal(headers, value):
    """Why a command must not be handled (its signature), or None."""
    if not SECRET:
        return None
    key_id, sig = headers.get("lethe-key-id"), headers.get("lethe-signature")
    if key_id is None or sig is None:
        return "unsigned: the command carries no signature"
    if key_id != KEY_ID or not hmac.compare_digest(sig, sign(value)):
        return "bad_signature: the signature does not hold"
    return None


def load():
    with open(DATA) as f:
        return json.load(f)


def save(data):
    with open(DATA + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(DATA + ".tmp", DATA)


def erase(identifiers, dry_run):
    """Erases what the data file holds under the identifiers; returns the count."""
    data = load()
    records = sum(data.get(i["value"], 0) for i in identifiers)
    if not dry_run:
        for i in identifiers:
            data.pop(i["value"], None)
        save(data)
    return records


def seed(value):
    """Stores two records under value, as the service's users would."""
    data = load()
    data[value] = data.get(value, 0) + 2
    save(data)


def outcome(records):
    return "erased" if records > 0 else "not_found"


def answer(cmd):
    """The confirmation of a valid command, single or batch."""
    if cmd.get("schema") == "erasure.command.v1":
        records = erase(cmd["identifiers"], cmd["dry_run"])
        return "erasure.confirmation.v1", cmd["request_id"], {
            "schema": "erasure.confirmation.v1", "command_id": cmd["command_id"],
            "request_id": cmd["request_id"], "system": SYSTEM, "outcome": outcome(records),
            "records": records, "detail": "", "retryable": False, "confirmed_at": now()}
    items = []
    for item in cmd["items"]:
        records = erase(item["identifiers"], cmd["dry_run"])
        items.append({"item_id": item["item_id"], "outcome": outcome(records), "records": records,
                      "detail": "", "retryable": False})
    return "erasure.batch_confirmation.v1", cmd["batch_id"], {
        "schema": "erasure.batch_confirmation.v1", "command_id": cmd["command_id"],
        "batch_id": cmd["batch_id"], "system": SYSTEM, "items": items, "confirmed_at": now()}


def valid(cmd):
    if not isinstance(cmd, dict) or cmd.get("system") != SYSTEM:
        return False
    if cmd.get("schema") == "erasure.command.v1":
        return bool(cmd.get("command_id")) and bool(cmd.get("request_id")) and isinstance(cmd.get("identifiers"), list)
    if cmd.get("schema") == "erasure.batch_command.v1":
        return bool(cmd.get("command_id")) and bool(cmd.get("batch_id")) and isinstance(cmd.get("items"), list)
    return False


def send(producer, topic, key, value, headers):
    """Writes one message and waits until every in-sync replica has it."""
    errors = []
    producer.produce(topic, key=key, value=value, headers=headers,
                     on_delivery=lambda err, _msg: err and errors.append(err))
    producer.flush(30)
    if errors or len(producer) > 0:
        raise KafkaException(errors[0] if errors else "delivery timed out")


def main():
    if not SYSTEM:
        sys.exit("LETHE_SYSTEM is not set")
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer = Consumer({"bootstrap.servers": BROKERS, "group.id": "lethe-connector-" + SYSTEM,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    producer = Producer({"bootstrap.servers": BROKERS, "acks": "all"})
    consumer.subscribe([TOPIC])
    answered = {}  # command_id -> confirmation; use a durable store in production
    print("connector %s reading %s" % (SYSTEM, TOPIC), file=sys.stderr, flush=True)
    while running:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            print("poll: %s" % msg.error(), file=sys.stderr, flush=True)
            continue
        value = msg.value() or b""
        headers = {k: (v or b"").decode() for k, v in (msg.headers() or [])}
        while running:
            try:
                why = refusal(headers, value)
                cmd = None
                if why is None:
                    try:
                        cmd = json.loads(value)
                    except ValueError:
                        why = "malformed: not JSON"
                if why is None and not valid(cmd):
                    why = "malformed: not a command of the wire format for " + SYSTEM
                if why is not None:
                    # Park it with the reason, never its content, then commit.
                    send(producer, TOPIC + ".dlq", msg.key(), value,
                         (msg.headers() or []) + [("lethe-dlq-reason", why.encode())])
                else:
                    # A repeated command_id is the same command: the same answer,
                    # unless it failed (none does here).
                    schema, key, conf = answered.get(cmd["command_id"]) or answer(cmd)
                    answered[cmd["command_id"]] = (schema, key, conf)
                    body = json.dumps(conf).encode()
                    out = [("lethe-schema", schema.encode())]
                    if SECRET:
                        out += [("lethe-key-id", KEY_ID.encode()), ("lethe-signature", sign(body).encode())]
                    send(producer, CONFIRMATIONS, key.encode(), body, out)
                consumer.commit(message=msg, asynchronous=False)
                break
            except KafkaException as e:
                # Not committed: handled again, never skipped.
                print("offset %d not answered yet: %s" % (msg.offset(), e), file=sys.stderr, flush=True)
                time.sleep(1)
    consumer.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["seed"]:
        seed(os.environ["LETHE_SEED_VALUE"])
    else:
        main()
