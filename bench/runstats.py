#!/usr/bin/env python3
"""What a run of a command costs, for the benchmarks in bench/.

  runstats.py rss OUT -- CMD...           runs CMD (its stdout passes through), writes its peak
                                          resident memory in MiB to OUT, exits with its status
  runstats.py first-record SINK -- CMD... starts CMD, prints the milliseconds until SINK holds a
                                          complete line and the peak resident memory then (JSON),
                                          then stops CMD with SIGINT
"""
import json
import os
import signal
import subprocess
import sys
import time


def peak_mib(status_of_pid):
    with open(f"/proc/{status_of_pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def rss(out, cmd):
    child = subprocess.Popen(cmd)
    _, status, usage = os.wait4(child.pid, 0)
    with open(out, "w") as f:
        f.write(f"{usage.ru_maxrss / 1024:.1f}\n")  # ru_maxrss is in KiB on Linux
    return os.waitstatus_to_exitcode(status)


def first_record(sink, cmd):
    if os.path.exists(sink):
        os.remove(sink)
    started = time.monotonic()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if child.poll() is not None:
                sys.exit(f"runstats.py: the command exited ({child.returncode}) before a record")
            try:
                with open(sink, "rb") as f:
                    if b"\n" in f.read(1 << 20):
                        break
            except FileNotFoundError:
                pass
            if time.monotonic() - started > 60:
                sys.exit("runstats.py: no record within 60 s")
            time.sleep(0.001)
        ms = (time.monotonic() - started) * 1000
        print(json.dumps({"first_record_ms": round(ms, 1), "rss_mib": peak_mib(child.pid)}))
    finally:
        child.send_signal(signal.SIGINT)
        child.wait()
    return 0


def main():
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.exit(__doc__)
    mode, path, cmd = sys.argv[1], sys.argv[2], sys.argv[4:]
    if mode == "rss":
        return rss(path, cmd)
    if mode == "first-record":
        return first_record(path, cmd)
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
