#!/usr/bin/env python3
"""The consumer a user would write instead of Sluice: confluent-kafka -> opensearch-py (or
elasticsearch-py) `helpers.bulk`, single process, as in the libraries' own examples.

No transform chain: each message is parsed with `json.loads`, the prune plugin's top-level deny
list is dropped and `@timestamp` is added from the tweet's time (a cheap stand-in for
[prune, enrich], so the comparison is not skewed by Python doing less work than a parse).
`_id` is the tweet id (`id_str`, else `data.id`), as in the Sluice sink. Offsets are committed
(asynchronously) after each bulk, so nothing is committed before it is indexed.

  python bench/es_consumer.py --bootstrap 127.0.0.1:9092 --topic T --group G --index I --count N

Exits once it has indexed --count documents (or after --idle seconds without a message).
"""

import argparse
import json
import sys
import time
from datetime import datetime, timezone

from confluent_kafka import Consumer, KafkaException

try:
    from opensearchpy import OpenSearch as Client
    from opensearchpy import helpers
except ImportError:  # elasticsearch<9 (7.x before 7.14 talks to OpenSearch)
    from elasticsearch import Elasticsearch as Client
    from elasticsearch import helpers

DENY = ("card", "translations")


def timestamp(d):
    v = d.get("created_at")
    if v is None and isinstance(d.get("data"), dict):
        v = d["data"].get("created_at")
    if isinstance(v, str):
        try:
            if v[:1].isdigit():  # v2: 2026-11-24T00:00:00.000Z
                return v
            return datetime.strptime(v, "%a %b %d %H:%M:%S %z %Y").strftime(
                "%Y-%m-%dT%H:%M:%S.000Z")
        except ValueError:
            pass
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def actions(msgs, index):
    for m in msgs:
        d = json.loads(m.value())
        for k in DENY:
            d.pop(k, None)
        if isinstance(d.get("data"), dict):
            for k in DENY:
                d["data"].pop(k, None)
        d["@timestamp"] = timestamp(d)
        a = {"_index": index, "_source": d}
        did = d.get("id_str")
        if did is None and isinstance(d.get("data"), dict):
            did = d["data"].get("id")
        if did is not None:
            a["_id"] = str(did)
        yield a


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--url", default="http://127.0.0.1:9200")
    ap.add_argument("--index", required=True)
    ap.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    ap.add_argument("--batch", type=int, default=1000, help="messages per consume()/bulk")
    ap.add_argument("--chunk", type=int, default=500, help="helpers.bulk chunk_size")
    ap.add_argument("--idle", type=float, default=30, help="give up after this many idle s")
    a = ap.parse_args()

    es = Client(a.url, timeout=60)
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([a.topic])
    done, idle_since = 0, time.monotonic()
    try:
        while not a.count or done < a.count:
            msgs = c.consume(num_messages=a.batch, timeout=0.5)
            msgs = [m for m in msgs if not m.error() or _raise(m)]
            if not msgs:
                if time.monotonic() - idle_since > a.idle:
                    sys.exit(f"es_consumer: no message for {a.idle}s after {done} documents")
                continue
            idle_since = time.monotonic()
            ok, errors = helpers.bulk(es, actions(msgs, a.index), chunk_size=a.chunk,
                                      raise_on_error=False)
            if errors:
                print(f"es_consumer: {len(errors)} failed, e.g. {errors[0]}", file=sys.stderr)
            done += len(msgs)
            c.commit(asynchronous=True)
    finally:
        c.close()
    print(json.dumps({"documents": done}))


def _raise(m):
    if m.error().code() == -191:  # _PARTITION_EOF
        return False
    raise KafkaException(m.error())


if __name__ == "__main__":
    main()
