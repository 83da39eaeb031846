#!/usr/bin/env python3
"""Render time per real chart, Harmony vs Helm's engine, same charts, same run.

* harmony: `render_timing` (helm/examples/render_timing.rs): in-process `run_template`, chart
  loading and values included — the same scope as Helm's side;
* harmony CLI: the whole `target/release/harmony template` process (start-up included);
* helm: Helm v4's engine in-process through helm-python-sdk (`Chart.load(dir).render(values)`).

Build first: cargo build --release && cargo build --release --example render_timing -p harmony-helm
Usage: .venv/bin/python scripts/bench.py [RUNS]"""
import json, os, subprocess, sys, time, yaml
from helm_python import Chart

BASE = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../shared/conformance/real-charts"))
if not os.path.isdir(BASE):
    BASE = "/work/shared/conformance/real-charts"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARMONY = os.path.join(ROOT, "target/release/harmony")
TIMING = os.path.join(ROOT, "target/release/examples/render_timing")
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
cases = json.load(open(os.path.join(BASE, "cases.json")))

def median(xs):
    return sorted(xs)[len(xs) // 2]

inproc = {}
for line in subprocess.run([TIMING, BASE, str(runs)], capture_output=True, text=True, check=True).stdout.splitlines():
    name, ms = line.split()
    inproc[name] = float(ms)

seen, rows = set(), []
for c in cases:
    if c["chart"] in seen:
        continue
    seen.add(c["chart"])
    name = c["chart"].split("/")[-1]
    vals = yaml.safe_load(open(os.path.join(BASE, c["values_file"]))) or {} if c.get("values_file") else {}
    ns = c.get("namespace") or "default"
    args = [HARMONY, "template", c["release_name"], c["chart"], "--namespace", ns, "--kube-version", "v1.36.0"]
    if c.get("values_file"):
        args += ["-f", c["values_file"]]
    cli = []
    for _ in range(runs):
        t = time.perf_counter(); subprocess.run(args, cwd=BASE, capture_output=True); cli.append(time.perf_counter() - t)
    g = []
    for _ in range(runs):
        t = time.perf_counter()
        Chart.load(os.path.join(BASE, c["chart"])).render(vals, name=c["release_name"], namespace=ns)
        g.append(time.perf_counter() - t)
    h, cm, gm = inproc[name], median(cli) * 1000, median(g) * 1000
    rows.append((name, h, cm, gm))
    print(f"{name:26} harmony {h:7.1f} ms   harmony CLI {cm:7.1f} ms   helm {gm:7.1f} ms   ratio {h/gm:5.2f}", flush=True)
th, tc, tg = (sum(r[i] for r in rows) for i in (1, 2, 3))
print(f"{'total':26} harmony {th:7.1f} ms   harmony CLI {tc:7.1f} ms   helm {tg:7.1f} ms   ratio {th/tg:5.2f}")
