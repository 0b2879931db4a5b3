#!/usr/bin/env python3
"""The Elasticsearch server's own ceiling: prebuilt `_bulk` NDJSON bodies POSTed as fast as
the server takes them, with N requests in flight. Only the standard library.

Documents come from --input (NDJSON, one document per line; `id_str` or `data.id` becomes the
`_id`, as in the sink) or are generated (tweet-like, ~1 KB). Every body is built before the
clock starts, so the number is what the server can index, not what a client can prepare.

  python3 bench/es_ceiling.py --docs 100000                       # generated tweets
  python3 bench/es_ceiling.py --input tweets.ndjson --bulk 500 --concurrency 2
  python3 bench/es_ceiling.py --docs 100000 --write-ndjson /tmp/docs.ndjson --no-run

Prints one JSON line: docs, seconds, docs_per_s, visible_docs_per_s (until `_refresh` and
`_count` return, as bench/es.sh times the other paths), MB_per_s, requests, errors.
"""

import argparse
import http.client
import json
import os
import queue
import threading
import time
import urllib.parse


def gen_docs(n):
    words = ("bts army jungkook jimin suga jin rm jhope v love music dance stage tour album "
             "seoul concert fans stream vote chart record new video today finally wow").split()
    for i in range(n):
        text = " ".join(words[(i * 7 + k * 3) % len(words)] for k in range(18))
        ts = 1795478400 + i  # 2026-11-24T00:00:00Z + i s
        yield {
            "created_at": time.strftime("%a %b %d %H:%M:%S +0000 %Y", time.gmtime(ts)),
            "id": 1_000_000_000_000_000_000 + i,
            "id_str": str(i),
            "text": f"{text} #BTS @BTS_twt",
            "lang": "en",
            "user": {"id_str": str(i % 977), "screen_name": f"army{i % 977}",
                     "followers_count": i % 5000, "verified": False},
            "entities": {"hashtags": [{"text": "BTS", "indices": [0, 4]}],
                         "user_mentions": [{"screen_name": "BTS_twt", "indices": [5, 13]}]},
            "retweet_count": i % 100, "favorite_count": i % 300,
            "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts)),
            "sluice": {"hashtags": ["bts"], "mentions": ["bts_twt"], "is_retweet": False,
                       "is_quote": False, "text_length": len(text) + 17, "shape": "v1.1"},
        }


def doc_id(line):
    d = json.loads(line)
    v = d.get("id_str")
    if v is None and isinstance(d.get("data"), dict):
        v = d["data"].get("id")
    return None if v is None else str(v)


def request(conn, method, path, body=None, ctype="application/json"):
    headers = {"Content-Type": ctype} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, data


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("ELASTICSEARCH_URL", "http://127.0.0.1:9200"))
    ap.add_argument("--input", help="NDJSON documents (default: generated tweets)")
    ap.add_argument("--docs", type=int, default=100_000, help="generated documents")
    ap.add_argument("--bulk", type=int, default=500, help="documents per _bulk request")
    ap.add_argument("--concurrency", type=int, default=2, help="requests in flight")
    ap.add_argument("--index", help="target index (default: a fresh es-ceiling-<time>)")
    ap.add_argument("--keep", action="store_true", help="keep the index afterwards")
    ap.add_argument("--write-ndjson", help="also write the documents to this file")
    ap.add_argument("--no-run", action="store_true", help="only write --write-ndjson")
    a = ap.parse_args()

    if a.input:
        with open(a.input, "rb") as f:
            lines = [l.rstrip(b"\r\n") for l in f if l.strip()]
    else:
        lines = [json.dumps(d, separators=(",", ":")).encode() for d in gen_docs(a.docs)]
    if a.write_ndjson:
        with open(a.write_ndjson, "wb") as f:
            f.write(b"\n".join(lines) + b"\n")
    if a.no_run:
        return

    u = urllib.parse.urlsplit(a.url)
    host, port = u.hostname, u.port or 9200
    index = a.index or f"es-ceiling-{int(time.time() * 1000)}"
    conn = http.client.HTTPConnection(host, port, timeout=300)
    status, data = request(conn, "PUT", f"/{index}", json.dumps({"settings": {
        "index": {"number_of_shards": 1, "number_of_replicas": 0,
                  "mapping": {"total_fields": {"limit": 2000}}}}}).encode())
    if status >= 300 and b"resource_already_exists" not in data:
        raise SystemExit(f"creating {index}: HTTP {status}: {data[:300]!r}")

    bodies = []
    for i in range(0, len(lines), a.bulk):
        parts = []
        for line in lines[i:i + a.bulk]:
            did = doc_id(line)
            action = {"index": {"_index": index}}
            if did is not None:
                action["index"]["_id"] = did
            parts.append(json.dumps(action, separators=(",", ":")).encode())
            parts.append(line)
        bodies.append(b"\n".join(parts) + b"\n")
    total_bytes = sum(len(b) for b in bodies)

    work = queue.Queue()
    for b in bodies:
        work.put(b)
    errors = [0]
    lock = threading.Lock()

    def worker():
        c = http.client.HTTPConnection(host, port, timeout=300)
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            while True:
                st, resp = request(c, "POST", "/_bulk?filter_path=errors,items.*.error",
                                   body, "application/x-ndjson")
                if st == 429 or st >= 500:
                    time.sleep(0.1)
                    continue
                if st >= 300:
                    raise SystemExit(f"_bulk: HTTP {st}: {resp[:300]!r}")
                r = json.loads(resp)
                if r.get("errors"):
                    with lock:
                        errors[0] += sum(1 for it in r.get("items", []) if it)
                break

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(max(1, a.concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0

    request(conn, "POST", f"/{index}/_refresh")
    _, data = request(conn, "GET", f"/{index}/_count")
    count = json.loads(data).get("count")
    visible_secs = time.perf_counter() - t0  # until every document is searchable
    if not a.keep and not a.index:
        request(conn, "DELETE", f"/{index}")
    print(json.dumps({
        "what": "direct _bulk from prebuilt NDJSON (server ceiling)",
        "url": a.url, "index": index, "docs": len(lines), "indexed": count,
        "bulk": a.bulk, "concurrency": a.concurrency, "requests": len(bodies),
        "seconds": round(secs, 3), "docs_per_s": round(len(lines) / secs),
        "visible_docs_per_s": round(len(lines) / visible_secs),
        "MB_per_s": round(total_bytes / secs / 1e6, 2), "errors": errors[0],
    }))


if __name__ == "__main__":
    main()
