"""Run a command and report what it cost, as one line of JSON on stdout.

usage: measure.py OUT.json CMD [ARGS...]

The command is killed after $MEASURE_TIMEOUT seconds (default 600) and then counts as failed.

wall seconds, user and system CPU seconds and "Maximum resident set size" (ru_maxrss from
wait4, the figure /usr/bin/time -v prints; it counts file pages a client maps, such as
libtorrent's mmap storage) for the command and its waited-for children, plus the peak of
RssAnon (anonymous memory only) sampled from /proc every 20 ms over the whole process tree.
"""
import json
import os
import subprocess
import sys
import time


def rss_anon_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def tree_anon(pid):
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss_anon_kib(p)
        todo.extend(children(p))
    return total


def main():
    out, cmd = sys.argv[1], sys.argv[2:]
    start = time.monotonic()
    deadline = start + float(os.environ.get("MEASURE_TIMEOUT", "600"))
    proc = subprocess.Popen(cmd)
    peak = 0
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            print(f"measure.py: killing {cmd[0]} after its timeout", file=sys.stderr)
            proc.kill()
        peak = max(peak, tree_anon(proc.pid))
        time.sleep(0.02)
    wall = time.monotonic() - start
    res = {"wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime, "maxrss_kib": ru.ru_maxrss,
           "peak_anon_kib": peak, "status": os.waitstatus_to_exitcode(status)}
    with open(out, "w") as f:
        json.dump(res, f)
    sys.exit(0 if res["status"] == 0 else 1)


main()
