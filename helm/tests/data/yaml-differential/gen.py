import json, random
random.seed(7)
vals = {}
words = ["alpha", "beta", "gamma:", "delta #x", "eps", "zeta-", "é", "日本", "a: b", "- x", "tab\there", "'q'", '"dq"', "yes", "no", "on", "0x1F", "1e3", "null", "~", "12:30", "2024-01-01", "", " lead", "trail ", "x\ny", "x\n", "x\n\n", "\ny", "a  b", "!tag", "&anc", "*ref", "@at", "`bt`", "%p", "{b}", "[l]", "c,d", "?q", "|p", ">f"]
for i in range(120):
    n = random.randint(1, 25)
    s = " ".join(random.choice(words) for _ in range(n))
    vals[f"k{i:03d}"] = s
for i, w in enumerate(words):
    vals[f"w{i:03d}"] = w
vals["nums"] = [0, 1, -1, 1.5, 1e21, 1e-7, 123456789, 1234567.5, 12345678901234567890, 0.1, 100000000000]
vals["nested"] = {"list": [{"a": 1, "b": [1, 2, {"c": "x y"}]}, [], {}], "empty": {}, "emptyl": [], "nil": None, "t": True}
vals["Key With Space"] = 1; vals["10"] = "ten"; vals["9"] = "nine"; vals["_u"] = 1; vals["A"] = 2; vals["a1"] = 3; vals["a10"] = 4; vals["a2"] = 5
json.dump(vals, open("/tmp/ydiff/vals.json", "w"))
