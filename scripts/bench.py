#!/usr/bin/env python3
"""Render time per real chart: `harmony template` (release binary, whole process) vs Helm's
engine through helm-python-sdk (`Chart.load(dir).render(values)`), same charts, same run.
Usage: .venv/bin/python scripts/bench.py [RUNS]"""
import json, os, subprocess, sys, time, yaml
from helm_python import Chart

BASE = "/work/shared/conformance/real-charts"
HARMONY = os.path.abspath("target/release/harmony")
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
cases = json.load(open(os.path.join(BASE, "cases.json")))
seen = set()
rows = []
for c in cases:
    if c["chart"] in seen:
        continue
    seen.add(c["chart"])
    vals = {}
    if c.get("values_file"):
        vals = yaml.safe_load(open(os.path.join(BASE, c["values_file"]))) or {}
    args = [HARMONY, "template", c["release_name"], c["chart"], "--namespace", c.get("namespace") or "default", "--kube-version", "v1.36.0"]
    if c.get("values_file"):
        args += ["-f", c["values_file"]]
    h = []
    for _ in range(runs):
        t = time.perf_counter(); subprocess.run(args, cwd=BASE, capture_output=True); h.append(time.perf_counter() - t)
    g = []
    for _ in range(runs):
        t = time.perf_counter()
        ch = Chart.load(os.path.join(BASE, c["chart"]))
        ch.render(vals, name=c["release_name"], namespace=c.get("namespace") or "default")
        g.append(time.perf_counter() - t)
    hm, gm = sorted(h)[len(h)//2], sorted(g)[len(g)//2]
    rows.append((c["chart"].split("/")[-1], hm * 1000, gm * 1000))
    print(f"{rows[-1][0]:28} harmony {hm*1000:8.1f} ms   helm {gm*1000:8.1f} ms   ratio {hm/gm:5.2f}", flush=True)
th = sum(r[1] for r in rows); tg = sum(r[2] for r in rows)
print(f"{'total':28} harmony {th:8.1f} ms   helm {tg:8.1f} ms   ratio {th/tg:5.2f}")
