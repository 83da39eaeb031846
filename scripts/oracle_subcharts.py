#!/usr/bin/env python3
"""Subchart scenarios (conditions, tags, globals, import-values, nulls, library deps) of the
helm-template test charts: `harmony template` vs Helm's engine. Usage: .venv/bin/python scripts/oracle_subcharts.py"""
import os, re, subprocess, tempfile, yaml, json
from helm_python import Chart
BASE = "/work/shared/conformance/helm-template"
H = "/work/helm-wt/target/release/harmony"
SEP = re.compile(r"(?:^|\s*\n)---\s*")
sets = [
  ("charts/subchart", {}),
  ("charts/subchart", {"subcharta": {"enabled": False}}),
  ("charts/subchart", {"tags": {"front-end": False}}),
  ("charts/subchart", {"tags": {"front-end": False, "subcharta": True}}),
  ("charts/subchart", {"configmap": {"enabled": True}, "subchartb": {"enabled": True}, "global": {"x": "y"}}),
  ("charts/subchart", {"subchartb": {"enabled": True, "SCBexported1": {"SCBexported1A": {"SCBexported1B": 99}}}, "configmap": {"enabled": True}}),
  ("charts/issue-9027", {"global": {"hash": {"key1": None}}}),
  ("charts/issue-9027", {"subchart": {"hash": {"key2": None, "key7": 7}}}),
  ("charts/chart-with-template-lib-dep", {}),
  ("charts/chart-with-template-lib-archive-dep", {"image": {"tag": "x"}}),
  ("charts/object-order", {}),
]
ok = 0
for chart, vals in sets:
    try:
        w = Chart.load(os.path.join(BASE, chart)).render(vals, name="rel", namespace="ns"); werr = None
    except Exception as e:
        w = None; werr = str(e)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(vals, f); vf = f.name
    p = subprocess.run([H, "template", "rel", chart, "-n", "ns", "-f", vf, "--kube-version", "v1.36.0"], cwd=BASE, capture_output=True, text=True)
    if w is None:
        print(chart, vals, "helm error:", werr[:150], "| harmony:", p.stderr[:150]); continue
    want = {}
    for path, text in w.items():
        b = os.path.basename(path)
        if b.startswith("_") or b == "NOTES.txt": continue
        docs = sorted(d.strip() for d in SEP.split(text) if d.strip())
        if docs: want[path] = docs
    got = {}
    for block in re.split(r"^---\n(?=# Source: )", p.stdout, flags=re.M):
        if not block.startswith("# Source: "): continue
        head, _, body = block.partition("\n")
        got.setdefault(head[len("# Source: "):].strip(), []).append(body.strip())
    got = {k: sorted(d for d in v if d) for k, v in got.items()}
    got = {k: v for k, v in got.items() if v and not k.endswith("crds/crdA.yaml")}
    if got == want and p.returncode == 0: ok += 1
    else:
        print(chart, vals, p.returncode, p.stderr[:200])
        for k in sorted(set(want) | set(got)):
            if want.get(k) != got.get(k): print("   ", k, "\n      want", str(want.get(k))[:300], "\n      got ", str(got.get(k))[:300])
print(ok, "/", len(sets))
