#!/usr/bin/env python3
"""Diff harmony template vs a real-charts golden: rcdiff.py CASE [PATH-substring]"""
import json, os, re, subprocess, sys, difflib
base = "/work/shared/conformance/real-charts"
case = [c for c in json.load(open(base + "/cases.json")) if c["name"] == sys.argv[1]][0]
args = ["/work/helm-wt/target/debug/harmony", "template", case["release_name"], case["chart"], "--namespace", case.get("namespace") or "default", "--kube-version", "v1.36.0"]
if case.get("values_file"): args += ["-f", case["values_file"]]
p = subprocess.run(args, cwd=base, capture_output=True, text=True)
print(p.stderr[-2000:])
golden = json.load(open(os.path.join(base, case["golden"])))
got = {}
for block in re.split(r"^---\n(?=# Source: )", p.stdout, flags=re.M):
    if not block.startswith("# Source: "): continue
    head, _, body = block.partition("\n")
    got.setdefault(head[len("# Source: "):].strip(), []).append(body.strip())
SEP = re.compile(r"(?:^|\s*\n)---\s*")
for path, text in golden.items():
    if len(sys.argv) > 2 and sys.argv[2] not in path: continue
    name = os.path.basename(path)
    if name.startswith("_") or name == "NOTES.txt": continue
    want = sorted(d.strip() for d in SEP.split(text) if d.strip())
    g = sorted(got.get(path, []))
    if want != g:
        print("==", path)
        for l in list(difflib.unified_diff("\n---\n".join(want).splitlines(), "\n---\n".join(g).splitlines(), lineterm="", n=1))[:60]: print(l)
