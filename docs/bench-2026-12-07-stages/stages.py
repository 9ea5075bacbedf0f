#!/usr/bin/env python3
"""Joins the stamps that stage-stamps.patch makes recschedd (RQTS, SVTS lines in its log)
and recsched-overhead (CLTS lines on its stderr) print, request by request (both use
CLOCK_MONOTONIC), and prints where a query's time goes, p50 per stage (us), the queries
split by their service time (under or over 800 us: NCF's and RMC1's 164 items here).
Usage: stages.py DAEMON_LOG CLIENT_STDERR, e.g. stages.py <(zcat daemon-def.log.gz)
<(zcat client-def.log.gz)."""
import bisect
import sys


def stamps(lines, tag):
    return sorted(list(map(int, l.split()[1:])) for l in lines if l.startswith(tag))


STAGES = [
    ("client: write the request", lambda c, h, s: c[1] - c[0]),
    ("to the I/O thread's first read", lambda c, h, s: h[0] - c[1]),
    ("read the request", lambda c, h, s: h[1] - h[0]),
    ("HTTP layer to Service::infer", lambda c, h, s: s[0] - h[1]),
    ("decode and dispatch", lambda c, h, s: s[1] - s[0]),
    ("to the worker", lambda c, h, s: s[2] - s[1]),
    ("service (the runner)", lambda c, h, s: s[3] - s[2]),
    ("to finish()", lambda c, h, s: s[4] - s[3]),
    ("finish(): counts, placement log", lambda c, h, s: s[5] - s[4]),
    ("encode, to the session's write()", lambda c, h, s: h[2] - s[5]),
    ("serialize and sendmsg", lambda c, h, s: h[3] - h[2]),
    ("client: read the answer", lambda c, h, s: c[3] - c[2]),
    ("total (client)", lambda c, h, s: c[3] - c[0]),
]


def main():
    daemon_log = open(sys.argv[1]).readlines()
    client_log = open(sys.argv[2]).readlines()
    split_us = 800
    http = stamps(daemon_log, "RQTS")  # first byte, deliver, write(), after sendmsg
    svc = stamps(daemon_log, "SVTS")   # arrival, dispatched, started, done, finish, stamp
    client = stamps(client_log, "CLTS")  # before write, after write, readable, read done
    firsts, arrivals = [h[0] for h in http], [s[0] for s in svc]
    groups = {}
    for c in client:
        i = bisect.bisect_left(firsts, c[0])
        if i >= len(http) or http[i][0] > c[3]:
            continue
        h = http[i]
        j = bisect.bisect_left(arrivals, h[1])
        if j >= len(svc) or svc[j][0] > h[2]:
            continue  # not an inference request (the floor's GET, /v1/placements)
        s = svc[j]
        service_us = (s[3] - s[2]) / 1e3
        key = "service < %d us" % split_us if service_us < split_us else "service >= %d us" % split_us
        groups.setdefault(key, []).append([f(c, h, s) / 1e3 for _, f in STAGES])
    for key, rows in sorted(groups.items()):
        print(f"{key}: {len(rows)} queries, p50 per stage (us)")
        for k, (name, _) in enumerate(STAGES):
            v = sorted(r[k] for r in rows)
            print(f"  {name:34s} {v[len(v) // 2]:8.1f}")


if __name__ == "__main__":
    main()
