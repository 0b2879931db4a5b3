"""Waits until a consumer group has committed `n` offsets in total on a topic; prints seconds.

usage: wait_committed.py BOOTSTRAP GROUP TOPIC N [TIMEOUT_S]
"""
import sys
import time

from confluent_kafka import Consumer, TopicPartition

bootstrap, group, topic, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 600
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
parts = [TopicPartition(topic, p) for p in c.list_topics(topic).topics[topic].partitions]
start = time.monotonic()
while True:
    done = sum(max(tp.offset, 0) for tp in c.committed(parts, timeout=10))
    if done >= n:
        break
    if time.monotonic() - start > timeout:
        sys.exit(f"wait_committed: {done} of {n} committed after {timeout}s")
    time.sleep(0.2)
print(f"{time.monotonic() - start:.3f}")
c.close()
