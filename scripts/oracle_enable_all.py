#!/usr/bin/env python3
"""Turn every `enabled: false` in a chart's values.yaml on and compare `harmony template`
with Helm's engine (helm-python-sdk). Usage: .venv/bin/python scripts/oracle_enable_all.py"""
import copy, json, os, re, subprocess, tempfile, yaml
from helm_python import Chart
BASE = "/work/shared/conformance/real-charts"
H = os.path.abspath("target/release/harmony")
SEP = re.compile(r"(?:^|\s*\n)---\s*")
def enable(v):
    if isinstance(v, dict):
        return {k: (True if k == "enabled" and v[k] is False else enable(x)) for k, x in v.items()}
    if isinstance(v, list):
        return [enable(x) for x in v]
    return v
def merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
seen = set(); ok = total = 0
for c in json.load(open(os.path.join(BASE, "cases.json"))):
    if c["chart"] in seen: continue
    seen.add(c["chart"])
    base_vals = yaml.safe_load(open(os.path.join(BASE, c["chart"], "values.yaml"))) or {}
    case_vals = yaml.safe_load(open(os.path.join(BASE, c["values_file"]))) if c.get("values_file") else {}
    vals = merge(enable(base_vals), case_vals or {})
    total += 1
    try:
        want_raw = Chart.load(os.path.join(BASE, c["chart"])).render(vals, name="rel", namespace="default"); werr = None
    except Exception as e:
        want_raw = None; werr = str(e)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(vals, f); vf = f.name
    p = subprocess.run([H, "template", "rel", c["chart"], "--kube-version", "v1.36.0", "-f", vf], cwd=BASE, capture_output=True, text=True)
    if want_raw is None:
        good = p.returncode != 0
        print(f"  {c['chart']}: helm error: {werr[:160]!r}; harmony: {p.stderr.strip()[:160]!r}")
        ok += good; continue
    want = {}
    for path, text in want_raw.items():
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
    got = {k: v for k, v in got.items() if v}
    for path in c.get("nondeterministic", []):
        for d in (want, got):
            if path in d: d[path] = len(d[path])
    good = p.returncode == 0 and got == want
    ok += good
    if not good:
        diff = [k for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
        print(f"  {c['chart']}: differs {p.stderr.strip()[-200:]!r} {diff[:6]}")
print(f"{ok}/{total} identical")
