#!/usr/bin/env python3
"""Generates the functions differential corpus: template snippets rendered by Helm's own engine.

Each case is one template rendered on its own (so one error hides nothing), with the shared
values in `VALUES`. Helm's output or error text (template name replaced by `@TEMPLATE@`) is
stored in `cases.json`, one case per line. Run with the helm-python-sdk virtualenv:
    /work/main/.venv/bin/python helm/tests/data/functions-differential/gen.py
"""
import itertools, json, os, tempfile, time

import helm_python
from helm_python import Chart

HERE = os.path.dirname(os.path.abspath(__file__))
CHART = "diff"
TNAME = CHART + "/templates/c.txt"

VALUES = {
    "f": 1.5, "n": 10, "neg": -3, "zero": 0, "one": 1, "big": 1e21, "small": 1e-7, "huge": 12345678901234567890,
    "half": 2.5, "nhalf": -2.5, "s": "hello", "S": "Hello World", "num": "42", "fnum": "3.14", "empty": "",
    "t": True, "fl": False, "nil": None, "sp": "  pad  ", "uni": "héllo 日本",
    "list": [1, "two", 3.0, None, True, {"a": 1}], "slist": ["b", "a", "c", "a"], "nlist": [3, 1, 2, 1],
    "elist": [], "nested": [[1, 2], [3, [4, 5]], []],
    "dict": {"b": 2, "a": 1, "c": {"d": [1, 2], "e": None}}, "edict": {},
    "deep": {"a": {"b": {"c": "x", "l": [1, {"m": "n"}]}}},
    "odd": {"": "emptykey", "1": "one", "k y": "space", "yes": "no", "x:y": "colon", "nul": None},
    "yaml": "a: 1\nb:\n  - x\n  - 2\nc: yes\n", "yamlarr": "- 1\n- a\n- {b: c}\n", "json": '{"a":1,"b":[1,2.5,"x"],"c":null}',
    "jsonarr": '[1,"a",{"b":null}]', "bad": "{a: [", "ver": "1.2.3-beta.1+build.5", "date": "2024-02-29T13:45:07Z",
    "multi": "line1\nline2\n\nline4", "tabs": "a\tb", "quote": 'say "hi" \\ \'x\'',
}

NUMS = ["0", "1", "-3", "7", "2.5", "-2.5", "1e3", '"3"', '"4.5"', '"abc"', '""', "nil", "true", ".Values.f",
        ".Values.n", ".Values.neg", "(int64 5)", "(float64 2)", ".Values.big", ".Values.huge", ".Values.nil", ".Values.list",
        "0x10", "'a'"]
SMALLNUMS = ["0", "3", "-2", "2.5", '"4"', '"x"', "nil", ".Values.f", ".Values.n", "(int64 -7)", "true", ".Values.list"]
ANY = ["0", "1", "-1", "1.5", "1e21", '""', '"s"', '"0"', "true", "false", "nil", ".Values.nil", ".Values.missing",
       ".Values.zero", ".Values.f", ".Values.elist", ".Values.list", ".Values.edict", ".Values.dict", "(int64 0)",
       "(list)", "(dict)", "(list 0)", ".Values.empty", ".Values.s"]


def cases():
    out = []

    def add(area, tpl):
        out.append((area, tpl))

    # printf: verbs x flags x argument kinds
    verbs = ["%v", "%+v", "%#v", "%T", "%d", "%5d", "%-5d|", "%05d", "%+d", "% d", "%x", "%X", "%#x", "%o", "%O", "%#o",
             "%b", "%c", "%q", "%#q", "%U", "%#U", "%e", "%E", "%.3e", "%f", "%.2f", "%8.3f", "%-8.3f|", "%+.1f", "%g",
             "%G", "%.3g", "%#g", "%s", "%10s", "%-10s|", "%.2s", "%t", "%5t", "%x", "% x", "%08.3f", "%+q", "%6.2v",
             "%.0f", "%.10g", "%#v", "%010s", "%-05d|", "%v%%", "%z", "%!", "%", "%d %d", "%[2]v %[1]v", "%[3]v", "%*d",
             "%.*f", "%[1]*d", "%-+8.2e|", "%#X", "% X", "%08b", "%.3x"]
    pargs = ["0", "-7", "42", "3.5", "-0.25", "1e21", "1e-7", '"str"', '"日本"', '""', "true", "nil", "(list 1 \"a\")",
             "(dict \"k\" 1)", ".Values.f", ".Values.n", ".Values.huge", "(int64 -9)", ".Values.list", ".Values.dict",
             ".Values.nil", "'x'", ".Values.uni", "(uint64 \"7\" | default 7)"]
    for v in verbs:
        for a in pargs:
            add("printf", '{{ printf "%s" %s }}' % (v, a))
    for v in ["%d %s", "%v %v %v", "%s", "%5.1f|%-4d|%q", "%[2]d %[1]q %d"]:
        for a, b in itertools.combinations(["1", '"a"', "2.5", "nil", ".Values.n", "(list)"], 2):
            add("printf", '{{ printf "%s" %s %s }}' % (v, a, b))
    for fn in ["print", "println"]:
        for args in ["", "1", "1 2", '"a" "b"', '1 "a" 2', '"a" 1 "b"', "nil", "nil nil", "1 nil", ".Values.list",
                     ".Values.dict", ".Values.f .Values.n", "true false", '"" ""', "1.5 2", "(list 1 2) 3",
                     ".Values.nil", ".Values.huge .Values.big .Values.small", "(int64 3) 4", ".Values.edict .Values.elist"]:
            add("print", "{{ %s %s }}" % (fn, args))
    for f in ["toString", "quote", "squote", "len", "kindOf", "typeOf", "html", "js", "urlquery", "toJson", "toYaml", "cat"]:
        for a in pargs:
            add("conv", "{{ %s %s }}" % (f, a))

    # arithmetic
    for f in ["add", "sub", "mul", "div", "mod", "max", "min", "addf", "subf", "mulf", "divf", "maxf", "minf"]:
        for a in SMALLNUMS:
            for b in SMALLNUMS:
                add("math", "{{ %s %s %s }}" % (f, a, b))
    for f in ["add", "mul", "max", "min", "addf", "mulf", "maxf", "minf"]:
        for args in ["", "1", "1 2 3", "1 2.5 \"3\"", ".Values.f .Values.n 1", "(int64 2) 3 4", "nil 1"]:
            add("math", "{{ %s %s }}" % (f, args))
    for f in ["add1", "add1f", "floor", "ceil", "round", "atoi", "int", "int64", "float64", "toString", "toDecimal",
              "toOctal"[:0] or "abs"[:0] or "biggest"[:0] or "int", "len"]:
        for a in NUMS:
            add("math", "{{ %s %s }}" % (f, a))
    for a in NUMS:
        for p in ["0", "1", "2", '"1"']:
            add("math", "{{ round %s %s }}" % (a, p))
        add("math", "{{ round %s 1 0.4 }}" % a)
        add("math", "{{ %s | int | kindOf }}" % a)
        add("math", "{{ %s | float64 | printf \"%%v %%T\" }}" % a)
        add("math", "{{ %s | int64 | printf \"%%v %%T\" }}" % a)
    for a in ['"42"', '"-7"', '" 3"', '"3.9"', '"0x1F"', '"1e3"', '"0b101"', '"077"', '"1_000"', '"+5"', '"9223372036854775808"',
              '"abc"', '""', "3.9", "-3.9", ".Values.huge", "true", "nil"]:
        for f in ["atoi", "int", "int64", "float64", "toDecimal"]:
            add("math", "{{ %s %s }}" % (f, a))
    for a, b in [("0", "0"), ("1", "0"), ("-7", "2"), ("7", "-2"), ("1.5", "0"), (".Values.n", "3"), ("(int64 7)", "2")]:
        add("math", "{{ div %s %s }}" % (a, b))
        add("math", "{{ mod %s %s }}" % (a, b))
        add("math", "{{ divf %s %s }}" % (a, b))

    # comparisons
    cvals = ["1", "1.0", '"1"', "(int64 1)", ".Values.one", "nil", "true", ".Values.list", ".Values.dict", "2", '"a"',
             ".Values.nil", ".Values.missing", "(uint64 1)" if False else "0", ".Values.f", ".Values.s"]
    for f in ["eq", "ne", "lt", "le", "gt", "ge"]:
        for a in cvals:
            for b in cvals:
                add("compare", "{{ %s %s %s }}" % (f, a, b))
    for args in ["1 2 1", "1 2 3", '"a" "b" "a"', "1 1.0 1", ".Values.one 1 2", "nil nil", "1", ""]:
        add("compare", "{{ eq %s }}" % args)
    for f in ["and", "or", "not"]:
        for args in ["", "1", "0 1", "1 0", "nil 1", '"" "x"', ".Values.list .Values.elist", "true false true",
                     ".Values.missing.x 1", "(fail \"boom\")", "1 (fail \"boom\")", "0 (fail \"boom\")"]:
            add("compare", "{{ %s %s }}" % (f, args))

    # dicts
    dicts = [".Values.dict", ".Values.edict", ".Values.odd", ".Values.deep", "(dict)", '(dict "a" 1 "b" (dict "c" 2))', ".Values.nil",
             ".Values.list", '"str"']
    for d in dicts:
        for expr in ['keys %s | sortAlpha', 'values %s', 'toJson (deepCopy %s)', 'hasKey %s "a"', 'pick %s "a" "c"',
                     'omit %s "a"', 'get %s "a"', 'dig "a" "b" "def" %s', 'dig "c" "d" 0 %s', 'toJson (merge (dict "a" 9 "z" 1) %s)',
                     'toJson (mergeOverwrite (dict "a" 9 "z" 1) %s)', 'toJson (merge %s (dict "a" 9 "c" (dict "x" 1)))',
                     'toJson (mergeOverwrite %s (dict "a" 9 "c" (dict "x" 1)))', 'toJson (set %s "new" 1)',
                     'toJson (unset %s "a")', 'pluck "a" %s (dict "a" 5)', 'len %s', 'empty %s', 'toYaml %s',
                     'toJson %s', 'toPrettyJson %s', 'toRawJson %s', 'toToml %s', 'kindOf %s', 'typeOf %s', 'toString %s',
                     'range $k, $v := %s }}{{ $k }}={{ $v }};{{ end', 'with %s }}W{{ . }}{{ else }}E{{ end',
                     'keys %s', 'mustMerge (dict) %s | toJson', 'deepCopy %s | toString', 'list %s | toJson',
                     'index %s "a"', 'index %s "c" "d" 1', 'printf "%%v|%%+v|%%#v" %s']:
            add("dict", "{{ %s }}" % (expr % d))
    for expr in ['dict "a"', 'dict 1 2', 'dict "a" 1 "a" 2 | toJson', 'dict nil 1 | toJson', 'dict 1.5 "x" | toJson',
                 '$d := dict "a" 1 }}{{ $_ := set $d "b" 2 }}{{ toJson $d', '$d := .Values.dict }}{{ $_ := set $d "z" 1 }}{{ toJson .Values.dict',
                 '$a := dict "x" (dict "y" 1) }}{{ $b := deepCopy $a }}{{ $_ := set $b.x "y" 2 }}{{ toJson $a }}{{ toJson $b',
                 '$a := dict "x" (list 1) }}{{ $_ := merge $a (dict "x" (list 2 3) "y" nil) }}{{ toJson $a',
                 'merge (dict "a" nil) (dict "a" 1) | toJson', 'mergeOverwrite (dict "a" 1) (dict "a" nil) | toJson',
                 'mergeOverwrite (dict "a" 1) (dict "a" "") | toJson', 'mergeOverwrite (dict "a" 1) (dict "a" 0) | toJson',
                 'mergeOverwrite (dict "a" (list 1 2)) (dict "a" (list)) | toJson', 'mergeOverwrite (dict "a" (dict "b" 1)) (dict "a" "s") | toJson',
                 'merge (dict "a" (dict "b" 1)) (dict "a" "s") | toJson', 'merge (dict "a" false) (dict "a" true) | toJson',
                 'merge (dict) (dict "a" 1) (dict "a" 2 "b" 3) | toJson', 'pluck "a" (dict "a" 1) (dict "b" 2) (dict "a" nil) | toJson',
                 'dig "a" (dict "a" 1)', 'dig (dict "a" 1)', 'dig "a" "b" "d" (dict "a" (dict "b" nil))', 'dig "a" "b" "d" (dict "a" "str")',
                 'hasKey (dict "a" nil) "a"', 'get (dict) "x" | kindOf', 'unset (dict) "x" | toJson', 'keys (dict "b" 1) (dict "a" 2) | toJson',
                 'values (dict "b" 1 "a" 2) | len', 'pick (dict "a" 1) | toJson', 'omit (dict "a" 1) | toJson', 'set nil "a" 1',
                 'deepCopy nil | toJson', 'deepCopy 5', 'mustDeepCopy nil', 'dict "a" 1 | keys | first', 'list (dict) | toYaml']:
        add("dict", "{{ %s }}" % expr)

    # lists
    lists = [".Values.list", ".Values.slist", ".Values.nlist", ".Values.elist", ".Values.nested", "(list)", "(list nil nil 1)",
             '(list "a" "" 0 nil false (list) (dict))', ".Values.nil", '"abc"', ".Values.dict", "5"]
    for l in lists:
        for expr in ["first %s", "rest %s | toJson", "last %s", "initial %s | toJson", "append %s 9 | toJson", "prepend %s 9 | toJson",
                     "concat %s (list 8 9) | toJson", "concat (list 0) %s | toJson", "reverse %s | toJson", "uniq %s | toJson",
                     "without %s 1 \"a\" | toJson", "has 1 %s", "has \"a\" %s", "has nil %s", "compact %s | toJson", "slice %s 1 | toJson",
                     "slice %s 1 2 | toJson", "slice %s | toJson", "slice %s 3 1", "chunk 2 %s | toJson", "sortAlpha %s | toJson",
                     "len %s", "toYaml %s", "toJson %s", "toString %s", "join \",\" %s", "range $i, $e := %s }}{{ $i }}:{{ $e }};{{ else }}none{{ end",
                     "index %s 0", "index %s 10", "mustFirst %s", "mustLast %s | toJson", "mustRest %s | toJson", "mustInitial %s | toJson", "mustUniq %s | toJson",
                     "mustReverse %s | toJson", "mustCompact %s | toJson", "mustAppend %s 1 | toJson", "mustPrepend %s 1 | toJson", "mustHas 1 %s",
                     "mustWithout %s 1 | toJson", "mustSlice %s 1 | toJson", "mustChunk 2 %s | toJson", "empty %s", "default \"d\" %s", "sortAlpha %s"]:
            add("list", "{{ %s }}" % (expr % l))
    for expr in ["until 5 | toJson", "until 0 | toJson", "until -3 | toJson", 'until "3" | toJson', "untilStep 0 10 3 | toJson",
                 "untilStep 10 0 -3 | toJson", "untilStep 0 10 0 | toJson", "untilStep 0 10 -1 | toJson", "untilStep 1.5 5 1 | toJson",
                 "seq 5", "seq 0", "seq -2", "seq 2 5", "seq 5 2", "seq 1 2 9", "seq 9 -3 1", "seq 1 0 5", "seq 1 2 3 4", "seq",
                 "seq \"3\"", "seq 1.5", "chunk 0 (list 1 2)", "chunk -1 (list 1 2)", "chunk 3 (list 1 2 3 4 5 6 7) | toJson",
                 "slice (list 1 2 3) -1", "slice (list 1 2 3) 1 5", "slice \"abcdef\" 1 3", "slice \"abcdef\" 2", "slice (list 1 2 3) 2 1",
                 "slice (list 1 2 3) 0 1 2", "list 1 2 | append 3 | toJson", "list 1 (list 2 3) | toJson", "tuple 1 2 | toJson",
                 "sortAlpha (list 3 1 \"b\" \"a\" 2.5 nil) | toJson", "sortAlpha (list \"B\" \"a\" \"C\" \"é\" \"\") | toJson",
                 "uniq (list 1 1.0 \"1\" (list 1) (list 1) (dict) (dict)) | toJson", "without (list (list 1) 1) (list 1) | toJson",
                 "has (list 1) (list (list 1) 2)", "has 1.0 (list 1)", "has .Values.one (list 1)", "has 1 .Values.nlist",
                 "list .Values.one 1 | uniq | toJson", "concat (list 1) nil (list 2) | toJson", "concat 1 (list 2)", "first nil",
                 "join \",\" (list 1 nil \"a\" 2.5 true)", "join 1 (list 1 2)", "join \",\" \"abc\"", "join \",\" nil", "splitList \",\" \"a,,b\" | toJson",
                 "split \",\" \"a,b\" | toJson", "splitn \",\" 2 \"a,b,c\" | toJson", "list 1 2 | last | add 1", "reverse nil | toJson"]:
        add("list", "{{ %s }}" % expr)

    # codecs
    docs = [".Values.dict", ".Values.deep", ".Values.odd", ".Values.list", ".Values.nested", ".Values.elist", ".Values.edict",
            ".Values.nil", ".Values.f", ".Values.n", ".Values.huge", ".Values.big", ".Values.small", ".Values.s", ".Values.multi",
            ".Values.uni", ".Values.quote", ".Values.tabs", "1", "1.0", "-0.0", "(int64 5)", "true", '"yes"', '"1e3"', '""', "nil",
            '(dict "a" (list (dict "b" (list 1 (list 2)))))', '(dict "k" (list))', '(list (list) (dict) nil "")',
            '(dict "z" 1 "a" (dict) "m" (list nil))', '(dict "s" "a\\nb\\n" "t" "  x" "u" "x  " "v" "a: b" "w" "#c" "x" "- y")']
    for d in docs:
        for f in ["toYaml", "toJson", "toPrettyJson", "toRawJson", "toToml", "mustToYaml", "mustToJson", "toYamlPretty"]:
            add("codec", "{{ %s %s }}" % (f, d))
    for d in [".Values.yaml", ".Values.yamlarr", ".Values.json", ".Values.jsonarr", ".Values.bad", ".Values.s", ".Values.empty",
              '"a: 1\\na: 2"', '"- a\\n- b"', '"a: [1, 2"', '"x: 1.0\\ny: 1e3\\nz: 0x1F\\nw: 012\\nv: ~\\nu: 2024-01-01"',
              '"a: &x 1\\nb: *x\\nc: {<<: {d: 1}}"', '"{\\"a\\": 1, \\"a\\": 2}"', '"[1, 2, 3]"', '"null"', '"3"', '"\\"s\\""',
              '"{\\"big\\": 12345678901234567890, \\"f\\": 1.0, \\"e\\": 1e400}"', '"key: value # comment"', '"? complex\\n: x"',
              '"a:\\n  b:\\n    c: [1, {d: e}]"', '"---\\na: 1\\n---\\nb: 2"', '"!!binary aGk="', '"a: !!str 1"', '"[a, b"']:
        for f in ["fromYaml", "fromYamlArray", "fromJson", "fromJsonArray", "fromToml"]:
            add("codec", "{{ %s %s | toJson }}" % (f, d))
            add("codec", "{{ %s %s | toYaml }}" % (f, d))
    for expr in ['toYaml .Values | fromYaml | toJson', 'fromYaml (toYaml .Values.deep) | toToml', 'toJson .Values | fromJson | toYaml',
                 'toToml .Values.dict | fromToml | toJson', 'toToml (dict "a" (list 1 "x"))', 'toToml (dict "a" (list (dict "b" 1)) "c" 2)',
                 'toToml (dict "a b" 1 "c.d" 2 "" 3)', 'toToml (list 1 2)', 'toToml "s"', 'toToml (dict "n" nil "t" true "f" 1.5)',
                 'toToml (dict "d" (dict "e" (dict "f" 1)) "g" 2)', 'fromYaml "a: b" | toToml', 'toYaml (list "a" (list "b" (list "c")))',
                 'toYaml (dict "a" "x\\ny") ', 'toYaml (dict "a" "trailing \\n") | quote', 'toJson (dict "<" ">" "&" "\\u2028")',
                 'toRawJson (dict "<" ">" "&" "\\u2028")', 'toPrettyJson (list)', 'toPrettyJson (dict)', 'toYaml (list)', 'toYaml (dict)',
                 'toJson (list 1.0 2.5 1e21 1e-7 100000000000000000000.0)', 'toYaml (list 1.0 2.5 1e21 1e-7 123456789.0)',
                 'toYaml (dict "a" 1e6 "b" 1e20 "c" 1e21 "d" 0.000001 "e" 0.0000001)']:
        add("codec", "{{ %s }}" % expr)

    # defaults and emptiness
    for a in ANY:
        add("default", "{{ default \"D\" %s }}" % a)
        add("default", "{{ empty %s }}" % a)
        add("default", "{{ coalesce %s \"C\" }}" % a)
        add("default", "{{ coalesce %s }}" % a)
        add("default", "{{ ternary \"Y\" \"N\" %s }}" % a)
        add("default", "{{ if %s }}T{{ else }}F{{ end }}" % a)
        add("default", "{{ with %s }}W{{ . }}{{ else with 1 }}E{{ . }}{{ end }}" % a)
        add("default", "{{ required \"need it\" %s }}" % a)
        add("default", "{{ all %s 1 }} {{ any %s 0 }}" % (a, a))
        add("default", "{{ %s | toString | quote }}" % a)
        add("default", "{{ not %s }}" % a)
        add("default", "{{ fail %s }}" % a if a not in ("nil", ".Values.nil", ".Values.missing") else "{{ fail \"x\" }}")
    for expr in ["default", "default 1", "coalesce", "ternary 1 2", 'ternary 1 2 "true"', "ternary 1 2 nil", 'required "m"',
                 'required 1 nil', 'required "m" ""', "empty", "empty 1 2", "all", "any", 'fail', 'fail 1 2',
                 '.Values.missing.deeper', '.Values.nil.x', '.Values.s.x', '.Values.list.x', '.Values.dict.c.e.x', 'index .Values.nil 0',
                 '.Values.dict.a.b']:
        add("default", "{{ %s }}" % expr)

    # strings
    sargs = [".Values.s", ".Values.S", ".Values.sp", ".Values.uni", ".Values.multi", ".Values.empty", ".Values.quote", "5", "1.5",
             "nil", ".Values.list", "true", ".Values.tabs"]
    for s in sargs:
        for expr in ["trim %s", "trimAll \"ho\" %s", "trimPrefix \"he\" %s", "trimSuffix \"lo\" %s", "indent 2 %s", "nindent 3 %s",
                     "quote %s", "squote %s", "b64enc %s", "b64dec (b64enc %s)", "sha256sum %s", "sha1sum %s", "adler32sum %s",
                     "upper %s", "lower %s", "title %s", "untitle %s", "camelcase %s", "snakecase %s", "kebabcase %s", "swapcase %s",
                     "wrap 5 %s", "wrapWith 5 \"|\" %s", "abbrev 5 %s", "abbrevboth 5 10 %s", "trunc 3 %s", "trunc -3 %s",
                     "substr 1 3 %s", "repeat 2 %s", "replace \"l\" \"L\" %s", "plural \"one\" \"many\" %s", "contains \"l\" %s",
                     "hasPrefix \"h\" %s", "hasSuffix \"o\" %s", "initials %s", "nospace %s", "cat %s 1 nil", "b32enc %s",
                     "shuffle %s | len", "regexMatch \"^h\" %s", "regexFind \"l+\" %s", "regexFindAll \"l\" %s -1 | toJson",
                     "regexReplaceAll \"(l+)\" %s \"<$1>\"", "regexReplaceAllLiteral \"l\" %s \"$1\"", "regexSplit \"l\" %s -1 | toJson",
                     "splitList \" \" %s | toJson", "len %s", "toStrings (list %s) | toJson", "printf \"%%q\" %s", "html %s",
                     "js %s", "urlquery %s", "toJson %s", "%s | indent 2 | trim", "%s | quote | len", "sha512sum %s"[:0] or "trim %s"]:
            add("string", "{{ %s }}" % (expr % s))
    for expr in ['regexMatch "[" "x"', 'mustRegexMatch "[" "x"', 'regexFindAll "a" "banana" 2 | toJson', 'regexFindAll "a" "banana" 0 | toJson',
                 'regexFind "(?i)B" "abc"', 'regexReplaceAll "a(x*)b" "-ab-axxb-" "${1}W"', 'regexReplaceAll "a(x*)b" "-ab-axxb-" "$1W"',
                 'regexReplaceAll "(?P<n>x+)" "axxb" "[$n]"', 'regexSplit "a" "banana" 2 | toJson', 'regexSplit "" "abc" -1 | toJson',
                 'regexSplit "x*" "axbxxc" -1 | toJson', 'regexQuoteMeta "a.b*c"', 'regexFind "\\\\d+" "ab123cd45"', 'regexMatch "^\\\\w+$" "héllo"',
                 'regexFindAll "." "日本" -1 | toJson', 'regexReplaceAll "(?m)^" "a\\nb" "> "', 'regexReplaceAll "" "abc" "-"',
                 'regexSplit "," "a,b,c" 0 | toJson', 'regexSplit "," "a,b,c" 1 | toJson', 'regexReplaceAll "\\\\b" "ab cd" "|"',
                 'indent 2 "a\\n\\nb\\n"', 'nindent 0 "a"', 'indent -1 "a"', 'indent 2 ""', 'trimAll "" "  x  "', 'trim "\\t\\n x \\r"',
                 'quote "a" 1 nil "b"', 'squote "a" nil', 'quote nil', 'quote', 'b64dec "!!!"', 'b64dec "aGk"', 'b64dec "aGk="', 'b32dec "NBUQ===="',
                 'b32dec "x"', 'wrap 3 "abc defgh ij"', 'wrapWith 3 "\\n" "a b c d"', 'abbrev 3 "abcdef"', 'abbrev 4 "abcdef"', 'abbrevboth 0 4 "abcdef"',
                 'substr -1 3 "abcdef"', 'substr 3 1 "abcdef"', 'substr 2 -1 "abcdef"', 'substr 0 100 "abc"', 'trunc 0 "abc"', 'trunc 100 "abc"',
                 'repeat -1 "a"', 'repeat 0 "a"', 'title "hello wORLD-foo_bar bAz"', 'camelcase "foo_bar-baz qux"', 'snakecase "FooBarBAZQux9x"',
                 'kebabcase "FooBarBAZ qux"', 'swapcase "Hello Wörld"', 'initials "hello world  foo"', 'untitle "ABC Def"', 'plural "a" "b" 0',
                 'plural "a" "b" 1', 'plural "a" "b" -1', 'plural "a" "b" "1"', 'hasPrefix "" "x"', 'toString (list "a" 1)',
                 'cat "a" "" "b" nil (list 1)', 'nospace " a\\tb\\nc "', 'print "a" | indent 2 | nindent 2', 'sha256sum ""', 'htmlDate "2024-02-29"',
                 'replace "" "-" "abc"', 'contains "" ""', 'printf "%s" (b64dec "/w==")' if False else 'upper "ß"', 'lower "İ"', 'title "ǆx"',
                 'trimPrefix "" "a"', 'trimSuffix "a" "aa"', 'len "日本"', 'substr 0 1 "日本"', 'trunc 1 "日本"', 'abbrev 4 "日本語です"',
                 'index "abc" 1', 'index "abc" 5', 'slice "日本語" 1', 'printf "%c|%U" 26085 26085']:
        add("string", "{{ %s }}" % expr)

    # semver
    vers = ['"1.2.3"', '"v1.2.3"', '"1.2"', '"1"', '"1.2.3-alpha.1"', '"1.2.3+b1"', '"01.2.3"', '"x"', '""', '"1.2.3.4"', ".Values.ver", '"v1.20.0-gke.100"']
    cons = ['">=1.2.0"', '"~1.2"', '"^1.0"', '"1.2.x"', '"*"', '">1.0 <2.0"', '">=1.0, <1.3 || >=2"', '"!=1.2.3"', '"=1.2.3"',
            '">=1.2.3-0"', '"<1.2.3"', '"~>1.2"', '"bad constraint"', '""', '">= 1.20.0-0"', '"^0.2.3"', '"~1"', '"1.2 - 1.4"']
    for v in vers:
        for expr in ["semver %s | toJson", "(semver %s).Major", "(semver %s).Prerelease", "(semver %s).Original", "(semver %s).String"]:
            add("semver", "{{ %s }}" % (expr % v))
        for c in cons:
            add("semver", "{{ semverCompare %s %s }}" % (c, v))
    for a, b in itertools.product(['"1.2.3"', '"1.2.4"', '"1.2.3-a"', '"v1.2.3"', '"x"'], repeat=2):
        add("semver", "{{ (semver %s).Compare (semver %s) }}" % (a, b))
        add("semver", "{{ (semver %s).LessThan (semver %s) }}" % (a, b))

    # dates with fixed inputs
    for t in ['"2024-02-29"', '"2024-02-29T13:45:07Z"', '"bad"', '"2024-13-01"', '"2024-02-29 13:45:07"', '"2024-02-29T13:45:07+02:00"']:
        for lay in ['"2006-01-02"', '"2006-01-02T15:04:05Z07:00"', '"02 Jan 06 15:04 MST"']:
            add("date", "{{ toDate %s %s }}" % (lay, t))
            add("date", "{{ toDate %s %s | date \"Mon Jan 2 15:04:05 2006 .000 PM -0700\" }}" % (lay, t))
            add("date", "{{ toDate %s %s | unixEpoch }}" % (lay, t))
    for d in ["0", "86400", "1709214307", "(int64 1709214307)", "1.5", '"1709214307"', "-1"]:
        for lay in ['"2006-01-02 15:04:05"', '"Jan _2 3:4:5 pm Z0700 MST"', '"Monday 2 January 2006"', '"06/1/2 .999999999"', '"__2 002"']:
            add("date", "{{ date %s %s }}" % (lay, d))
        add("date", "{{ dateInZone \"2006-01-02 15:04 MST\" %s \"UTC\" }}" % d)
        add("date", "{{ htmlDate %s }}" % d)
        add("date", "{{ dateModify \"1h30m\" (toDate \"2006-01-02\" \"2024-02-29\") | date \"2006-01-02 15:04\" }}")
    for m in ['"1h"', '"-25h"', '"1.5h"', '"bad"', '"90s"', '"1h2m3s4ms"']:
        add("date", "{{ dateModify %s (toDate \"2006-01-02\" \"2024-02-29\") | date \"2006-01-02 15:04:05.000\" }}" % m)
        add("date", "{{ duration 3725 }} {{ durationRound %s }}" % m)
    for d in ["0", "59", "3600", "90061", '"100"', "-5", "1.9", '"x"']:
        add("date", "{{ duration %s }}" % d)

    # template language: control flow, scoping, tpl, include
    for r in [".Values.list", ".Values.dict", ".Values.odd", "5", "0", "-2", '"abc"', ".Values.nil", ".Values.elist", ".Values.edict",
              "nil", ".Values.f", "(int64 3)", ".Values.n", "true", "(dict 3 1 1 2)" if False else '(dict "b" 1 "a" 2)']:
        add("flow", "{{ range %s }}[{{ . }}]{{ else }}empty{{ end }}" % r)
        add("flow", "{{ range $i, $v := %s }}{{ $i }}={{ $v }},{{ end }}" % r)
        add("flow", "{{ range $v := %s }}{{ if eq (toString $v) \"two\" }}{{ break }}{{ end }}{{ $v }};{{ end }}" % r)
        add("flow", "{{ range $i, $v := %s }}{{ if eq (toString $i) \"1\" }}{{ continue }}{{ end }}{{ $v }};{{ end }}" % r)
    for expr in ["{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", "{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ end }}{{ $x }}",
                 "{{ $x := 1 }}{{ range list 1 2 }}{{ $x = . }}{{ end }}{{ $x }}", "{{ range $x := list 1 2 }}{{ end }}{{ $x }}",
                 "{{ with $x := 5 }}{{ $x }}{{ . }}{{ end }}", "{{ with 0 }}a{{ else with \"\" }}b{{ else with 3 }}c{{ . }}{{ end }}",
                 "{{ with 0 }}a{{ else if 1 }}b{{ . }}{{ end }}", "{{ if 0 }}a{{ else if 0 }}b{{ else }}c{{ end }}",
                 "a  {{- 1 -}}  b", "a {{- /* c */ -}} b", "{{- \"x\" }}\n  {{- \"y\" -}}\n  z", "{{ \"a\" }}\n{{- \"b\" }}",
                 "{{ break }}", "{{ continue }}", "{{ range 3 }}{{ break 1 }}{{ end }}", "{{ $ }}", "{{ $.Values.s }}", "{{ $undefined }}",
                 "{{ range .Values.list }}{{ $.Values.s }}{{ end }}", "{{ with .Values.dict }}{{ .a }}{{ $.Values.n }}{{ end }}",
                 "{{ .Values.dict.a | printf \"%v-%v\" 1 }}", "{{ (1) }}", "{{ (.Values.dict).b }}", "{{ .Values.dict.c.d }}",
                 "{{ 1 | print 2 3 }}", "{{ \"x\" | printf }}", "{{ print | len }}", "{{ len }}", "{{ index }}", "{{ index .Values.list 1 }}",
                 "{{ index .Values.list -1 }}", "{{ index .Values.list 1.5 }}", "{{ index .Values.list \"1\" }}", "{{ index .Values.nested 1 1 0 }}",
                 "{{ index .Values.dict 1 }}", "{{ slice .Values.list 1 2 | len }}", "{{ call }}", "{{ call 1 }}", "{{ html \"<a&b>\" \"'\" }}",
                 "{{ js \"<a>'\\\"\\\\\" }}", "{{ urlquery \"a b&c\" }}", "{{ printf \"%v\" .Values.dict.c }}", "{{ .Values.dict.c }}",
                 "{{ .Values.list }}", "{{ .Values.nested }}", "{{ .Values.odd }}", "{{ .Values }}" if False else "{{ .Values.deep }}",
                 "{{ .Values.huge }} {{ .Values.big }} {{ .Values.small }} {{ .Values.f }} {{ .Values.n }} {{ .Values.neg }}",
                 "{{ 1e21 }} {{ 1e-7 }} {{ 1.0 }} {{ 0x1F }} {{ 0o17 }} {{ 0b11 }} {{ 1_000 }} {{ 'a' }} {{ -0 }} {{ +1 }}",
                 "{{ 1.5e300 }} {{ 100000000000000000000 }}", "{{ 9223372036854775807 }}", "{{ -9223372036854775808 }}", "{{ 0x8000000000000000 }}",
                 "{{ \"\\u00e9\\x41\\101\\n\" }}", "{{ `raw\\n` }}", "{{ nil }}", "{{ .Values.nil }}", "{{ .Values.missing }}",
                 "{{ .Values.missing | toString }}", "{{ .Release.Name }}/{{ .Release.Namespace }}/{{ .Chart.Name }}/{{ .Template.Name }}/{{ .Template.BasePath }}",
                 "{{ .Release.Revision | printf \"%T\" }} {{ .Release.IsInstall }}", "{{ .Capabilities.KubeVersion.Major }}",
                 "{{ tpl \"{{ .Values.s }}\" . }}", "{{ tpl \"{{ .x }}\" (dict \"x\" 1) }}", "{{ tpl \"{{ .Template.Name }}\" . }}",
                 "{{ tpl \"{{ fail \\\"inner\\\" }}\" . }}", "{{ tpl \"{{ \" . }}", "{{ tpl 1 . }}", "{{ tpl \"{{ include \\\"p\\\" . }}\" . }}",
                 "{{ define \"p\" }}P{{ .Values.n }}{{ end }}{{ include \"p\" . }}", "{{ define \"p\" }}[{{ . }}]{{ end }}{{ include \"p\" 5 | upper }}",
                 "{{ include \"nope\" . }}", "{{ template \"nope\" }}", "{{ define \"p\" }}{{ fail \"inner\" }}{{ end }}{{ include \"p\" . }}",
                 "{{ define \"p\" }}{{ .x.y }}{{ end }}{{ include \"p\" (dict \"x\" 1) }}", "{{ block \"b\" . }}B{{ .Values.n }}{{ end }}",
                 "{{ define \"p\" }}  x  {{ end }}[{{ include \"p\" . | trim }}]", "{{ required \"need\" .Values.missing }}",
                 "{{ define \"p\" }}{{ required \"inner req\" .nope }}{{ end }}{{ include \"p\" . }}", "{{ fail \"x\" }}",
                 "{{ toYaml .Values.dict | indent 2 }}", "x:\n{{ toYaml .Values.deep | nindent 2 }}", "{{ .Values.s | upper | repeat 2 | quote }}",
                 "{{ list 1 2 3 | len | add 1 }}", "{{ $d := dict }}{{ range $i := until 3 }}{{ $_ := set $d (toString $i) $i }}{{ end }}{{ toJson $d }}",
                 "{{ $l := list }}{{ range until 3 }}{{ $l = append $l . }}{{ end }}{{ toJson $l }}", "{{ printf \"%v\" (list) }}{{ printf \"%v\" (dict) }}",
                 "{{ lookup \"v1\" \"Pod\" \"ns\" \"x\" | toJson }}", "{{ .Values.s.missing }}", "{{ .Values.dict.missing.x }}",
                 "{{ .Files.Get \"nope\" | quote }}", "{{ typeOf .Values.n }} {{ typeOf 1 }} {{ typeOf (int64 1) }} {{ typeOf .Values.nil }} {{ typeOf .Values.list }}",
                 "{{ kindOf .Values.dict }} {{ kindOf (list) }} {{ kindOf nil }}", "{{ kindIs \"map\" .Values.dict }} {{ kindIs \"slice\" .Values.s }}",
                 "{{ typeIs \"float64\" .Values.n }} {{ typeIsLike \"float64\" .Values.n }}", "{{ deepEqual (list 1) (list 1) }} {{ deepEqual 1 1.0 }}",
                 "{{ fromYaml \"a: 1\" | typeOf }}", "{{ (fromYaml \"a: 1\").a | typeOf }}", "{{ (fromJson \"{\\\"a\\\": 1}\").a | typeOf }}",
                 "{{ (fromYaml \"a: 1\").Error }}", "{{ (fromYaml \"a: [\").Error }}", "{{ (fromJson \"{\").Error }}", "{{ fromYamlArray \"a: 1\" | toJson }}",
                 "{{ range $k, $v := .Values.odd }}{{ $k | quote }}={{ $v }} {{ end }}", "{{ len .Values.odd }}",
                 "{{ if and .Values.t (not .Values.fl) }}yes{{ end }}", "{{ if or .Values.missing.x .Values.t }}y{{ end }}",
                 "{{ eq .Values.n 10 }} {{ eq .Values.n 10.0 }} {{ lt .Values.f 2 }} {{ eq .Values.s \"hello\" }} {{ eq .Values.nil nil }}",
                 "{{ $x := .Values.list }}{{ $x = append $x 9 }}{{ len $x }} {{ len .Values.list }}"]:
        add("flow", expr)

    # misc functions
    for expr in ['sha256sum "abc"', 'sha1sum "abc"', 'adler32sum "abc"', 'b64enc "日本"', 'urlParse "https://u:p@h:8/p?q=1#f" | toJson',
                 'urlJoin (dict "scheme" "https" "host" "h" "path" "/p" "query" "a=1")', 'uuidv4 | len', 'osBase "/a/b.txt"', 'osDir "/a/b.txt"',
                 'osExt "/a/b.txt"', 'osClean "/a/../b//c/"', 'osIsAbs "a"', 'base "a/b/"', 'dir "a/b/"', 'ext "x.tar.gz"', 'clean ""', 'isAbs "/x"',
                 'toStrings (list 1 nil "a" 2.5 (list 1)) | toJson', 'list 1 2 | toStrings | join "-"', 'semver "1.2.3" | typeOf',
                 'getHostByName "localhost"', 'typeOf (toDecimal "3")', 'int "3.9"', 'int64 "0x10"', 'float64 "1e400"', 'atoi "1e3"',
                 'splitn "," 0 "a,b" | toJson', 'splitn "," -1 "a,b" | toJson', 'split "" "abc" | toJson', 'splitList "" "abc" | toJson',
                 'randAlphaNum 5 | len', 'encryptAES "k" "" | len | lt 0', 'derivePassword 1 "long" "password" "user" "example.com"',
                 'sortAlpha (keys (dict "b" 1 "B" 2 "a" 3 "_" 4 "1" 5))', 'toJson (dict "a" (list 1 (dict "b" (list))))',
                 'fromJson "{\\"a\\": 1e2}" | toYaml', 'fromJson "[1, 2.50, -0]" | toYaml' if False else 'fromJsonArray "[1, 2.50, -0]" | toYaml',
                 'fromJson "{\\"a\\": 123456789012}" | toYaml', 'fromYaml "a: 123456789012" | toYaml', 'fromYaml "a: 1.0" | toJson',
                 'fromYaml "a: 0.1" | toYaml', 'fromYaml "a: 1e+3" | toJson', 'fromYaml "a: .inf" | toJson', 'fromYaml "a: .nan" | toYaml',
                 'fromYaml "a: 2024-01-01" | toJson', 'fromYaml "a: 0o17" | toJson', 'fromYaml "a: 0017" | toJson', 'fromYaml "a: +1" | toJson',
                 'fromYaml "a: 1_000" | toJson', 'fromYaml "a: 0b101" | toJson', 'fromYaml "a: Yes" | toJson', 'fromYaml "a: n" | toJson',
                 'fromYaml "a: 12345678901234567890" | toJson', 'fromYaml "1: a" | toJson', 'fromYaml "1.5: a\\ntrue: b\\n~: c" | toJson',
                 'fromYaml "a: [1, 2]\\nb: {c: d}" | toYaml', 'fromYaml "" | toJson', 'fromYaml "# only" | toJson', 'fromYaml "- 1" | toJson',
                 'fromYamlArray "" | toJson', 'fromYamlArray "a" | toJson', 'fromJsonArray "{}" | toJson', 'fromJson "[]" | toJson', 'fromJson "" | toJson',
                 'fromJson "1" | toJson', 'fromToml "a = 1\\n[b]\\nc = \\"x\\"" | toJson', 'fromToml "a = " | toJson', 'fromToml "a = 1979-05-27T07:32:00Z" | toJson',
                 'fromToml "a = 1.0\\nb = [1, 2]\\n[[c]]\\nd = 1" | toYaml']:
        add("misc", "{{ %s }}" % expr)
    # argument conversion: every parameter of typed functions given every kind of value
    sigs = [("upper", ['"ab"']), ("repeat", ["2", '"ab"']), ("indent", ["2", '"a\\nb"']), ("nindent", ["2", '"a"']),
            ("trunc", ["2", '"abc"']), ("substr", ["0", "2", '"abc"']), ("splitList", ['","', '"a,b"']), ("join", ['","', "(list 1 2)"]),
            ("contains", ['"a"', '"abc"']), ("hasPrefix", ['"a"', '"abc"']), ("replace", ['"a"', '"b"', '"aa"']), ("b64enc", ['"x"']),
            ("sha256sum", ['"x"']), ("until", ["3"]), ("untilStep", ["0", "6", "2"]), ("add1", ["1"]), ("ternary", ['"a"', '"b"', "true"]),
            ("has", ["1", "(list 1)"]), ("first", ["(list 1 2)"]), ("keys", ['(dict "a" 1)']), ("pick", ['(dict "a" 1)', '"a"']),
            ("semverCompare", ['">1.0"', '"1.2.3"']), ("regexMatch", ['"a"', '"abc"']), ("base", ['"a/b"']), ("abbrev", ["5", '"abcdefgh"']),
            ("wrap", ["3", '"ab cd"']), ("plural", ['"a"', '"b"', "2"]), ("min", ["1", "2"]), ("trimAll", ['"a"', '"aba"']), ("title", ['"ab"']),
            ("printf", ['"%v"', "1"]), ("index", ["(list 1 2)", "1"]), ("slice", ["(list 1 2 3)", "1"]), ("len", ['"abc"']),
            ("eq", ["1", "1"]), ("lt", ["1", "2"]), ("html", ['"<"']), ("urlquery", ['"a b"']), ("toDate", ['"2006-01-02"', '"2024-01-02"']),
            ("date", ['"2006"', "0"]), ("split", ['"-"', '"a-b"']), ("cat", ['"a"', "1"]), ("initials", ['"ab cd"']), ("randAlpha", ["0"]),
            ("sortAlpha", ["(list 2 1)"]), ("uniq", ["(list 1 1)"]), ("append", ["(list 1)", "2"]), ("get", ['(dict "a" 1)', '"a"']),
            ("set", ['(dict)', '"a"', "1"]), ("hasKey", ['(dict "a" 1)', '"a"']), ("toYaml", ["1"]), ("fromYaml", ['"a: 1"']),
            ("tpl", ['"x"', "."]), ("include", ['"nope"', "."]), ("required", ['"m"', "1"]), ("b64dec", ['"eA=="']), ("int", ['"3"']),
            ("float64", ['"3"']), ("round", ["1.25", "1"]), ("floor", ["1.5"]), ("mulf", ["1.5", "2"]), ("divf", ["3", "2"]), ("quote", ['"a"']),
            ("seq", ["3"]), ("chunk", ["2", "(list 1 2 3)"]), ("regexReplaceAll", ['"a"', '"aba"', '"x"']), ("genPrivateKey", ['"bad"'])]
    odd = ["1.5", "-1", '"3"', "nil", "true", "(list 1)", "(dict)", ".Values.f", ".Values.n", ".Values.nil", "(int64 2)", '""',
           ".Values.missing", "0", "'a'"]
    for f, args in sigs:
        for k in range(len(args)):
            for o in odd:
                a = list(args)
                a[k] = o
                add("args", "{{ %s %s }}" % (f, " ".join(a)))

    # toYaml/toJson/quote of awkward scalars inside structures
    scal = ['"0755"', '"1_000"', '"+1"', '".5"', '"1e3"', '"null"', '"~"', '"True"', '"NO"', '"y"', '"n"', '"<<"', '"="', '"2001-12-14t21:59:43.10-05:00"',
            '"12:30:45"', '"0x1F"', '"0o17"', '"-.inf"', '".NaN"', '"a: b"', '"- a"', '"#x"', '"x #y"', '"@x"', '"`x"', '"%x"', '"!x"', '"&x"', '"*x"',
            '"|"', '">"', '"\\"', '"\t"', '" "', '"é"', '"\u2028"', '"a\nb"', '"a\n"', '"\n"', '"a  \n b"', '"x\r\ny"', '"{a}"', '"[a]"',
            '"a,b"', '"?"', '"? x"', '"-"', '"--- x"', '"..."', '"1.0"', '"0"', '"-0"', '"00"', '"1e+3"', '"0b101"', '"9223372036854775808"',
            '"Yes"', '"off"', '"ON"', '"1:2"', '"1:2:3"', '"2024-01-01"', '"2024-01-01 10:00:00"']
    for x in scal:
        add("yaml", "{{ toYaml (dict \"k\" %s) }}" % x)
        add("yaml", "{{ toYaml (list %s) }}" % x)
        add("yaml", "{{ toYamlPretty (dict \"k\" %s) }}" % x)
        add("yaml", "{{ toJson %s }}|{{ quote %s }}|{{ squote %s }}|{{ toToml (dict \"k\" %s) }}" % (x, x, x, x))
        add("yaml", "{{ fromYaml (printf \"k: %%s\" %s) | toJson }}" % x)
        add("yaml", "{{ (fromYaml (printf \"k: %%s\" %s)).k | kindOf }}" % x)
    long = '"' + " ".join(["word%d" % i for i in range(30)]) + '"'
    for x in [long, '"' + "x" * 100 + '"', '"' + "a " * 50 + '"', '"' + ("line " * 20 + "\\n") * 3 + '"', '"   lead ' + "y " * 45 + '"',
              '"' + "z" * 79 + ' q"', '"' + "ab " * 26 + ' c"']:
        for f in ["toYaml", "toYamlPretty"]:
            add("yaml", "{{ %s (dict \"key\" %s \"n\" (dict \"deeper\" %s)) }}" % (f, x, x))
            add("yaml", "{{ %s (list %s) }}" % (f, x))
    # templates: define/include/tpl/template scoping, whitespace, errors with positions
    for expr in [
        '{{ define "a" }}A{{ .x }}{{ end }}{{ template "a" (dict "x" 1) }}', '{{ define "a" }}{{ $ }}{{ end }}{{ template "a" 5 }}',
        '{{ define "a" }}{{ $.Values }}{{ end }}{{ include "a" . | len }}', '{{ define "a" }}{{ . }}{{ end }}{{ template "a" }}',
        '{{ define "a" }}{{ include "b" . }}{{ end }}{{ define "b" }}B{{ end }}{{ include "a" . }}',
        '{{ define "a" }}x{{ end }}{{ define "a" }}y{{ end }}{{ include "a" . }}', '{{ include "a" }}', '{{ include }}', '{{ include 1 . }}',
        '{{ template "a" . }}{{ define "a" }}{{ .Release.Name }}{{ end }}', '{{ define "a" }}\n  line\n{{ end }}[{{ include "a" . }}]',
        '{{ define "a" -}}\n  line\n{{- end }}[{{ include "a" . }}]', '{{ define "a" }}{{ .Values.missing.x }}{{ end }}{{ include "a" . }}',
        '{{ define "a" }}{{ index . 5 }}{{ end }}{{ include "a" (list 1) }}', '{{ define "a" }}{{ fail "in a" }}{{ end }}{{ template "a" }}',
        '{{ tpl "{{ .Values.n | add 1 }}" . }}', '{{ tpl "{{ $x := 1 }}{{ $x }}" . }}', '{{ tpl "{{ define \\"t\\" }}T{{ end }}{{ include \\"t\\" . }}" . }}',
        '{{ tpl "{{ .Values.missing.x }}" . }}', '{{ tpl "{{ nope }}" . }}', '{{ tpl "{{ 1 }" . }}', '{{ tpl "a\\n{{ fail \\"x\\" }}" . }}',
        '{{ tpl "{{ tpl \\"{{ 2 }}\\" . }}" . }}', '{{ tpl "" . }}', '{{ tpl "{{ . }}" nil }}', '{{ tpl "{{ .Values }}" (dict) }}',
        '{{ tpl (toYaml .Values.dict) . }}', '{{ tpl "{{ $.Release.Name }}" (dict "Release" (dict "Name" "x")) }}',
        '{{ tpl "{{ .Template.BasePath }}" . }}', '{{ include "x" . }}{{ define "x" }}{{ .Template.Name }}{{ end }}',
        '{{ range $i, $v := list 1 2 }}{{ $i }}{{ $v }}{{ end }}{{ $i }}', '{{ $x := 1 }}{{ $x := 2 }}{{ $x }}', '{{ $x = 1 }}',
        '{{ with $v := .Values.s }}{{ $v }}{{ end }}{{ $v }}', '{{ if $x := 1 }}{{ $x }}{{ end }}', '{{ range $k, $v, $z := .Values.dict }}{{ end }}',
        '{{ range .Values.dict }}{{ . }}{{ break }}{{ end }}', '{{ range $i := 5 }}{{ if eq $i 2 }}{{ continue }}{{ end }}{{ $i }}{{ end }}',
        '{{ range $i, $c := "héllo" }}{{ $i }}{{ $c }} {{ end }}', '{{ range 2.5 }}{{ . }}{{ end }}', '{{ range (int64 3) }}{{ . }}{{ end }}',
        '{{ range -1 }}x{{ else }}none{{ end }}', '{{ range $i, $e := until 3 }}{{ $i }}{{ end }}', '{{ range $e := .Values.edict }}{{ else }}E{{ end }}',
        '{{- range .Values.slist }}\n- {{ . }}\n{{- end }}', '{{ range .Values.slist -}}\n  {{ . }}\n{{ end -}}', '  {{- "x" -}}  \n  y',
        '{{ "a" }} {{- /* comment */}} b', '{{/* c */}}', '{{- /* c */ -}}', '{{ /* bad */ }}', '{{/* unclosed', '{{ "unclosed', '{{ end }}',
        '{{ if }}{{ end }}', '{{ else }}', '{{ range }}{{ end }}', '{{ with }}{{ end }}', '{{ define "x" }}', '{{ define 1 }}{{ end }}',
        '{{ .Values.s | }}', '{{ | upper }}', '{{ "a" | 1 }}', '{{ $ | len }}', '{{ .Values.s.upper }}', '{{ .Values.dict.a.b.c }}',
        '{{ .Values.list.0 }}', '{{ .Values..s }}', '{{ .Values.s. }}', '{{ 1.Values }}', '{{ "x".y }}', '{{ (dict "a" 1).a }}',
        '{{ (list 1 2).len }}', '{{ .Release.Name.x }}', '{{ .Chart.Missing }}', '{{ .Capabilities.KubeVersion.Version }} {{ .Capabilities.KubeVersion.Minor }}',
        '{{ .Capabilities.APIVersions.Has "apps/v1" }} {{ .Capabilities.APIVersions.Has "nope/v1" }}', 
        '{{ .Chart.IsRoot }} {{ .Chart.APIVersion }} {{ .Chart.Version }}', '{{ .Release.Service }} {{ .Release.IsUpgrade }}',
        '{{ .Files.Glob "*.nope" | len }}', '{{ .Files.Lines "nope" | len }}', '{{ .Files.AsConfig }}', '{{ .Subcharts | len }}',
        '{{ template "diff/templates/c.txt" }}', '{{ .Template }}', '{{ $.Template.Name | base }}',
        '{{ printf "%s" .Release }}', '{{ toYaml .Release }}', '{{ toJson .Chart | len | lt 10 }}', '{{ .Values | keys | sortAlpha | join "," }}',
    ]:
        add("tmpl", expr)
    # numbers printed by every path
    nums = ["0", "1", "-1", "1.0", "0.1", "1e6", "1e20", "1e21", "123456789.0", "1234567.5", "0.000001", "0.0000001", "-0.0", "3.0e-5",
            "9007199254740993", "(int64 -9223372036854775807)", "(float64 1e15)", "(float64 123456789012)", ".Values.huge", ".Values.big",
            ".Values.small", "(div 7 2)", "(divf 7 2)", "(mulf 0.1 3)", "(addf 0.1 0.2)", "(float64 \"1e-5\")", "(int 1e15)", "(int 1e19)"]
    for x in nums:
        add("num", "{{ %s }}|{{ toString %s }}|{{ quote %s }}|{{ toJson %s }}|{{ toYaml %s }}|{{ print %s }}|{{ list %s }}|{{ dict \"k\" %s }}"
            % ((x,) * 8))
        add("num", "{{ toToml (dict \"k\" %s) }}|{{ int %s }}|{{ int64 %s }}|{{ float64 %s }}|{{ %s | toDecimal }}" % ((x,) * 5))
        add("num", "{{ printf \"%%v %%d %%s %%f %%g %%e %%.3v %%5.1f %%x\" %s %s %s %s %s %s %s %s %s }}" % ((x,) * 9))
    # error positions in multi-line templates, nested blocks, errors inside include/tpl/range
    bodies = ['{{ index .Values.list 10 }}', '{{ .Values.missing.x.y }}', '{{ fail "boom" }}', '{{ required "req" .Values.nope }}',
              '{{ add "x" 1 }}', '{{ nope }}', '{{ 1 | 2 }}', '{{ template "nope" }}', '{{ include "nope" . }}', '{{ toYaml }}',
              '{{ .Values.s.x }}', '{{ len 3 }}', '{{ tpl "{{ fail \\"t\\" }}" . }}', '{{ tpl "\\n\\n  {{ .x.y.z }}" (dict) }}',
              '{{ printf "%d" }}', '{{ eq .Values.list 1 }}', '{{ lt 1 "a" }}', '{{ $u.x }}', '{{ mustFirst (list) }}', '{{ fromYaml }}']
    wraps = ['{}', 'line1\nline2\n  {}', '{{{{ if true }}}}\n  {{{{ range .Values.nlist }}}}\n    {}\n  {{{{ end }}}}\n{{{{ end }}}}',
             '{{{{ define "w" }}}}\nx\n{}\n{{{{ end }}}}\na\n{{{{ include "w" . }}}}', '{{{{ with .Values.dict }}}}\n\n{}{{{{ end }}}}',
             '{{{{- /* c\nc */ -}}}}\n\t{}', 'é日本 {}']
    for b in bodies:
        for w in wraps:
            add("lines", w.format(b))
    # chart-style idioms: range variables, nested access, indentation helpers
    for expr in [
        '{{ range $v := .Values.nlist }}{{ $v.x }}{{ end }}', '{{ range $k, $v := .Values.dict }}{{ $v.d }}{{ end }}',
        '{{ range $k, $v := .Values.dict }}{{ $k }}: {{ $v | toJson }}\n{{ end }}', '{{ range .Values.list }}{{ .a }}{{ end }}',
        '{{ range $i, $v := .Values.nested }}{{ $i }}={{ len $v }};{{ end }}', '{{ range .Values.slist }}{{ .x }}{{ end }}',
        '{{ range $v := splitList "," "a,b" }}{{ $v.x }}{{ end }}', '{{ with .Values.list }}{{ .x }}{{ end }}',
        '{{ range $k, $v := .Values.deep }}{{ $v.b.c }}{{ $v.b.l }}{{ end }}', '{{ range .Values.nested }}{{ range . }}[{{ . }}]{{ end }}{{ end }}',
        '{{- range $name, $conf := .Values.deep }}\n{{ $name }}:\n{{- toYaml $conf | nindent 2 }}\n{{- end }}',
        'spec:\n  {{- with .Values.dict }}\n  values:\n    {{- toYaml . | nindent 4 }}\n  {{- end }}',
        '{{ include "x" .Values.dict }}{{ define "x" }}{{ range $k, $v := . }}{{ $k }}{{ end }}{{ end }}',
        '{{ $root := . }}{{ range .Values.slist }}{{ $root.Values.s }}-{{ . }} {{ end }}', '{{ range .Values.slist }}{{ $.Release.Name }}{{ end }}',
        '{{ $m := dict }}{{ range .Values.nlist }}{{ $_ := set $m (toString .) . }}{{ end }}{{ toJson $m }}',
        '{{ $l := list }}{{ range $k, $v := .Values.dict }}{{ $l = append $l $k }}{{ end }}{{ join "," $l }}',
        '{{ range $i, $e := .Values.slist }}{{ if $i }},{{ end }}{{ $e }}{{ end }}', '{{ range .Values.nlist }}{{ if gt . 1.0 }}{{ . }}{{ end }}{{ end }}',
        '{{ range .Values.nlist }}{{ if gt . 1 }}{{ . }}{{ end }}{{ end }}', '{{ range until 3 }}{{ if gt . 1.5 }}{{ . }}{{ end }}{{ end }}',
        '{{ range .Values.nlist }}{{ add . 1 }}{{ end }}', '{{ range .Values.nlist }}{{ printf "%d" . }}{{ end }}', '{{ range .Values.nlist }}{{ int . }}{{ end }}',
        '{{ .Values.dict | toYaml | indent 4 }}', '{{ toYaml .Values.list | nindent 2 | trim }}', '{{ .Values.multi | indent 2 }}',
        '{{ .Values.multi | nindent 2 | quote }}', '{{ tpl (.Values.yaml) . | fromYaml | toJson }}', '{{ default (dict) .Values.missing | toJson }}',
        '{{ (default (dict) .Values.missing).x | default "d" }}', '{{ .Values.missing | default list | len }}', '{{ hasKey .Values "dict" }}',
        '{{ if hasKey .Values.dict "c" }}{{ .Values.dict.c.d | first }}{{ end }}', '{{ (index .Values.dict "c").d }}', '{{ index .Values "dict" "c" "d" 0 }}',
        '{{ get .Values.dict "b" | add 1 }}', '{{ .Values.dict.b | int | add 1 }}', '{{ mul .Values.dict.b 2 }}', '{{ .Values.dict.b | toString | repeat 2 }}',
        '{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}', '{{ .Release.Name | upper | quote }}',
        '{{ $n := .Values.n | int }}{{ range until $n }}{{ . }}{{ end }}', '{{ range $i := until (.Values.n | int) }}{{ $i }}{{ end }}',
        '{{ semverCompare ">=1.20-0" .Capabilities.KubeVersion.GitVersion }}', '{{ .Capabilities.KubeVersion.GitVersion }}',
        '{{ if .Capabilities.APIVersions.Has "networking.k8s.io/v1/Ingress" }}y{{ else }}n{{ end }}',
        '{{ toYaml (dict "resources" (dict "limits" (dict "cpu" "100m" "memory" 128))) }}', '{{ toYaml (list (dict "name" "a" "value" 1.5)) | nindent 6 }}',
        '{{ b64enc (toJson .Values.dict) }}', '{{ sha256sum (toYaml .Values.deep) | trunc 10 }}', '{{ .Values.s | b64enc | b64dec }}',
    ]:
        add("idiom", expr)
    # assorted corners
    for expr in [
        'printf "%5v|%-6v|%06v" .Values.dict .Values.list .Values.nested', 'printf "%v" (dict "a" nil "b" (list nil))', 'printf "%+v %#v" (list 1 "a" nil) (list 1 "a" nil)',
        'printf "%#v" .Values.dict', 'printf "%#v" (dict "x" (list 1.5 "s" true))', 'printf "%T %T %T" .Values.dict .Values.list (list)', 'printf "%s" (list "a" 1)',
        'printf "%q" (list "a" "b")', 'printf "%x" (list "ab" 10)', 'printf "%10.3s|" "abcdef"', 'printf "%-10q|" "a"', 'printf "%c%c" 72 105',
        'toString (dict "a" (list 1 nil))', 'quote (list 1 2)', 'cat (list 1 2) "x"', 'join "," (list (list 1) (dict "a" 1))', 'sortAlpha (list 10 9 100)',
        'uniq (list (dict "a" 1) (dict "a" 1)) | len', 'has (dict "a" 1) (list (dict "a" 1))', '(semver "1.2.3-rc.1+meta").Minor', '(semver "1.2.3-rc.1+meta").Patch',
        '(semver "1.2.3-rc.1+meta").Metadata', '(semver "v1.2").String', '(semver "1.2.3").IncMinor', 'toDate "2006-01-02T15:04:05.000Z" "2024-02-29T13:45:07.123Z"',
        'toDate "2006-01-02T15:04:05.000Z" "2024-02-29T13:45:07.123Z" | date "15:04:05.000000 .999 ,000"', 'toDate "2006-01-02 15:04:05.999999999" "2024-02-29 13:45:07.5" | date "05.000"',
        'duration "3725" ', 'duration 86400000', 'durationRound "49h"', 'durationRound "2160h"', 'durationRound "9000h"', 'durationRound "59s"', 'durationRound "61m"',
        'toJson (toDate "2006-01-02" "2024-02-29")', 'toYaml (dict "t" (toDate "2006-01-02" "2024-02-29"))', 'dateModify "-48h" (toDate "2006-01-02" "2024-03-01") | date "2006-01-02"',
        'toDate "2006-01-02" "2024-02-29" | unixEpoch', 'dateInZone "2006-01-02 15:04 MST -0700" (toDate "2006-01-02" "2024-07-01") "America/New_York"',
        'dateInZone "2006-01-02 15:04 MST" (toDate "2006-01-02" "2024-01-01") "Europe/Berlin"', 'dateInZone "2006-01-02 15:04 MST" (toDate "2006-01-02" "2024-01-01") "Asia/Kolkata"',
        'regexReplaceAll "a(b)" "abab" "$0|$1|${1}x|$2|$$"', 'regexReplaceAll "(?P<first>a)" "ab" "${first}${first}"', 'replace "a" "b" "aaa"',
        'splitn "," 3 "a,b,c,d" | toJson', 'substr -2 -1 "abc"', 'nospace "a b\u00a0c"', 'initials "élan vital"', 'title "don\'t stop o\'neil"', 'title "hello_world-x.y"',
        'camelcase "hello-world_foo bar"', 'snakecase "HTTPServer"', 'kebabcase "HTTPServerID"', 'swapcase "aBc ǅ"', 'upper "ǆ ß ﬁ"', 'lower "ΑΣ ǅ"',
        'trunc 3 "日本語です"', 'abbrev 5 "日本語ですよ"', 'wrap 4 "日本 語です よね"', 'indent 2 "a\\r\\nb"', 'squote "it\'s"', 'quote "a\\"b\\\\c"',
        'b64enc "\\u00ff"', 'urlquery "a/b?c=d&e"', 'html "<script>\'&\\"</script>"', 'js "</script>\\u2028"', 'shuffle "a" | len', 'repeat 3 "日"',
        'sha1sum "日本"', 'adler32sum ""', 'toString 1e100', 'toString 123456789012345678', 'toString (int64 -1)', 'toString (float64 "0.1")',
        'add 1.5 "2.5"', 'add "1e2" 1', 'mul "x" 2', 'div 7 "2"', 'mod -7 3', 'max "10" 9', 'min 1.9 2', 'maxf "1.5" 2', 'minf nil 1', 'floor "2.7"', 'ceil -0.5',
        'round 2.5 0', 'round -2.5 0', 'round 1.005 2', 'round 1e20 2', 'int64 9.99e18', 'int 1e19', 'int -1e19', 'float64 (int64 9007199254740993)',
    ]:
        add("corner", "{{ %s }}" % expr)
    # block scalars and nesting through toYaml/toYamlPretty/toJson
    strs = ['"a\\nb"', '"a\\nb\\n"', '"a\\nb\\n\\n"', '"  lead\\nx"', '"x\\n  indented\\n"', '"\\nfirst empty"', '"tab\\tin\\nline"', '"trail \\nx"',
            '"# not comment\\n"', '"- not list\\n"', '"日本\\n語"', '"a\\r\\nb"', '"key: v\\n"', '"long ' + 'w ' * 50 + '\\nnext"', '"\\n"', '"x\\n\\n\\ny"']
    for x in strs:
        for f in ["toYaml", "toYamlPretty"]:
            add("block", "{{ %s (dict \"a\" (list %s (dict \"b\" %s)) \"c\" %s) }}" % (f, x, x, x))
            add("block", "x:\n  {{- %s (list (list %s)) | nindent 2 }}" % (f, x))
    for d in ['(list (list (list 1)))', '(list (dict) (list) "" nil)', '(dict "a" (list (list) (dict "b" (list))))', '(dict "" (dict "" ""))',
              '(list (dict "a" 1 "b" (dict "c" (list 1 (dict "d" 2)))))', '(dict "z" 1 "A" 2 "_" 3 "1" 4 "a b" 5)', '(list 1.5 -0.0 1e21 100 "100")']:
        for f in ["toYaml", "toYamlPretty", "toJson", "toPrettyJson", "toToml"]:
            add("block", "{{ %s %s }}" % (f, d))
    # nested error formatting: include/tpl/template chains ending in each kind of failure
    ends = ['{{ fail "F" }}', '{{ required "R" .nope }}', '{{ .a.b.c }}', '{{ index (list) 3 }}', '{{ nope . }}' if False else '{{ len 1 }}',
            '{{ template "undefined" }}', '{{ include "undefined" . }}', '{{ tpl "{{ fail \\"T\\" }}" . }}', '{{ tpl "{{ .a.b.c }}" . }}',
            '{{ toYaml (dict "a" (list)) | fromYaml | toJson }}', '{{ printf "%d" "s" }}', '{{ 1 }}']
    for e in ends:
        add("nest", '{{ define "in" }}\n%s{{ end }}{{ define "mid" }}x {{ include "in" . }}{{ end }}{{ include "mid" (dict "a" 1) }}' % e)
        add("nest", '{{ define "in" }}%s{{ end }}{{ tpl "{{ include \\"in\\" . }}" (dict "a" (dict)) }}' % e)
        add("nest", '{{ define "in" }}%s{{ end }}{{ template "in" (dict "a" 1) }}' % e)
        add("nest", '{{ define "in" }}%s{{ end }}{{ range list 1 }}\n{{ include "in" $ | indent 2 }}{{ end }}' % e)
    # mergo: every pair of value kinds at the same key, both directions, deep
    kinds = ['nil', '""', '"s"', '0', '1', 'false', 'true', '(list)', '(list 1)', '(dict)', '(dict "x" 1)', '(dict "x" nil)', '1.5', '(dict "x" (dict "y" 2))']
    for a in kinds:
        for b in kinds:
            add("merge", '{{ merge (dict "k" %s "o" 1) (dict "k" %s "p" 2) | toJson }}|{{ mergeOverwrite (dict "k" %s "o" 1) (dict "k" %s "p" 2) | toJson }}' % (a, b, a, b))
    for expr in ['$d := dict "a" (dict "b" 1) }}{{ $s := dict "a" (dict "c" 2) }}{{ $_ := merge $d $s }}{{ $_ := set $s.a "c" 3 }}{{ toJson $d',
                 '$d := dict }}{{ $s := dict "a" (list 1) }}{{ $_ := merge $d $s }}{{ $_ := set $s "a" 5 }}{{ toJson $d',
                 'merge (dict "a" (dict "b" (dict "c" 1))) (dict "a" (dict "b" (dict "d" 2))) (dict "a" (dict "b" (dict "c" 3 "e" nil))) | toJson',
                 'mergeOverwrite (dict "a" (dict "b" (dict "c" 1))) (dict "a" (dict "b" (dict "d" 2))) (dict "a" (dict "b" (dict "c" 3 "e" nil))) | toJson',
                 'mustMergeOverwrite (dict) (dict "a" 1) | toJson', 'merge .Values.dict (dict "c" (dict "d" (list 9) "f" 1)) | toJson',
                 'mergeOverwrite .Values.dict (dict "c" (dict "d" (list 9) "f" 1)) | toJson', 'merge (dict) .Values.deep .Values.dict | toJson',
                 'deepCopy .Values.deep | toJson', '$c := deepCopy .Values.deep }}{{ $_ := set $c "a" 1 }}{{ toJson .Values.deep',
                 'merge (dict "a" 1) "x"', 'merge "x" (dict)', 'mergeOverwrite (dict) nil | toJson', 'merge (dict) (list) | toJson']:
        add("merge", "{{ %s }}" % expr)
    # semver constraints: every operator with 1, 2 and 3 parts, wildcards, prereleases, ranges
    ops = ["", "=", "!=", ">", "<", ">=", "<=", "~", "~>", "^", "=>", "=<"]
    cvers = ["1", "1.2", "1.2.3", "1.x", "1.2.x", "0", "0.2", "0.0.3", "1.2.3-beta", "v1.2"]
    tvers = ["1.2.3", "1.2.0", "1.3.0", "2.0.0", "1.0.0", "0.2.5", "0.0.3", "1.2.3-beta", "1.2.4-alpha", "v1.20.0-gke.1"]
    for op in ops:
        for c in cvers:
            add("semver2", "{{ range list %s }}{{ semverCompare \"%s%s\" . }} {{ end }}" % (" ".join('"%s"' % t for t in tvers), op, c))
    for c in [">= 1.2, < 2", ">=1.2 <2", "1.2 - 1.4", "1.2.3 - 2", "^1.2 || ~0.3", ">1 || <0.5", "*", "x", "1.*", ">=1.20.0-0", "<1.22.0-0",
              ">= 1.19.0-0 < 1.26.0-0", "!=1.2.x", ">1.2.x", "<=1.2.x", "~1.2.x", "^0.x", "", " ", "a", ">=1.2,<2", "1.2 || ", ">=v1.2"]:
        add("semver2", "{{ range list %s }}{{ semverCompare \"%s\" . }} {{ end }}" % (" ".join('"%s"' % t for t in tvers), c))
    # lexer and trimming corners
    for expr in ['{{-3}}', '{{- 3}}', '{{3 -}}', '{{3-}}', 'a\r\n{{- 1 -}}\r\nb', 'a \t\n {{- 1 }}', '{{ 1 -}} \t\r\n x', '{{- /* x */ -}}\n\ny',
                 '{{/* a */}}{{/* b */ -}}  c', '{{ /* x */ }}', '{{- /*x*/}}', '{{ `a\nb` }}', "{{ '\\n' }}", "{{ '\\'' }}", "{{ 'ab' }}", "{{ '' }}",
                 '{{ "\\q" }}', '{{ 0x1p-2 }}', '{{ 1e }}', '{{ 0x }}', '{{ 1_ }}', '{{ 08 }}', '{{ 0o8 }}', '{{ .1 }}', '{{ 1. }}', '{{ -.5 }}', '{{ +0x10 }}',
                 '{{ 1i }}', '{{ 1+2i }}', '{{ ((1)) }}', '{{ (print 1) | print 2 }}', '{{ print (1) (2) }}', '{{ print(1) }}', '{{ $x := (list 1 2) }}{{ (index $x 1) }}',
                 '{{ "a" | printf "%s-%s" "b" }}', '{{ .Values.s | printf "%s" | upper | len }}', '{{ true | not }}', '{{ nil | default 1 }}', '{{ and }}',
                 '{{ range $i, $x := list "a" }}{{ $i }}{{ end }}{{ range $x := list "a" }}{{ $x }}{{ end }}', '{{ $ := 1 }}', '{{ $x, $y := 1 }}',
                 '{{ range $x, $y := 5 }}{{ end }}', '{{ if 1 }}a{{ else if }}b{{ end }}', '{{ with 1 }}{{ else with }}{{ end }}', '{{ block "b" }}x{{ end }}',
                 '{{ define "a" }}{{ end }}{{ define "a" }}b{{ end }}{{ template "a" }}', '{{ template "a" 1 2 }}', '{{ template }}', '{{ break 1 }}',
                 '{{ range 1 }}{{ continue 1 }}{{ end }}', '{{ range 2 }}{{ . }}{{ break }}{{ . }}{{ end }}', '{{ if true }}{{ break }}{{ end }}',
                 '{{ .Values.dict.a -}}\n\n{{- .Values.dict.b }}', '{{ "x" }}{{/* c */}}{{ "y" }}', '{{ 1 }}}}', '{{{{ 1 }}', '{{ "}}" }}', '{{ `{{` }}',
                 '{{ .Values.s | (printf "%s") }}', '{{ printf "%s" .Values.s | (len) }}', '{{ (.Values.dict).c.d }}', '{{ ($.Values.dict).a }}', '{{ $.Values.dict.c.e.x }}']:
        add("lex", expr)
    # built-in objects through printing and conversion functions
    # (not .Capabilities or .Capabilities.HelmVersion: the SDK's build info is not the helm CLI's)
    objs = [".Capabilities.KubeVersion", ".Capabilities.APIVersions", ".Files", ".Release", ".Capabilities.KubeVersion.Major", ".Template"]
    for o in objs:
        for f in ["print %s", "toString %s", "typeOf %s", "kindOf %s", "toJson %s", "toYaml %s", "quote %s", "printf \"%%v|%%+v|%%T|%%s\" %s %s %s %s",
                  "empty %s", "len %s", "default \"d\" %s", "eq %s %s", "cat %s"]:
            add("obj", "{{ %s }}" % (f.replace("%s", o).replace("%%", "%")))
    # built-in objects nested in maps and lists, through every JSON/YAML encoder (struct field
    # order, indentation of nested objects)
    for enc in ["toJson", "toPrettyJson", "toRawJson", "toYaml", "mustToPrettyJson"]:
        for arg in ['(dict "k" .Capabilities.KubeVersion)', '(list .Capabilities.KubeVersion .Capabilities.APIVersions)',
                    '(dict "a" (dict "b" .Capabilities.KubeVersion))', '.Capabilities.KubeVersion', '(dict "r" .Release "t" .Template)']:
            add("obj", "{{ %s %s }}" % (enc, arg))
    # %T with a precision: Go's fmtS truncates the type name like a string
    for verb in ['%.3T', '%.0T', '%.T', '%5.2T', '%-6.1T', '%.10T', '%.*T', '%08.4T']:
        for arg in ['"s"', '1', '2.5', 'true', 'nil', '(list 1)', '(dict "a" 1)', '.Values', '.Release.Name', '(int64 3)']:
            extra = '2 ' if '*' in verb else ''
            add("printf", '{{ printf "%s|" %s%s }}' % (verb, extra, arg))
    # built-in objects through fmt with flags: structs field by field, slices element by element
    for o in [".Capabilities.KubeVersion", ".Capabilities.APIVersions", ".Files", ".Template", ".Release"]:
        for verb in ['%#v', '%+v', '%12v', '%.2s', '%x', '%q', '%-3.1v', '%d', '%t']:
            add("obj", '{{ printf "%s" %s | trunc 300 }}' % (verb, o))
    return out


RUNS = 2


def now_strings(tpl):
    """Renderings of the current date that an output depending on time.Now() would contain."""
    out = set()
    for t in (time.time(), time.time() - 86400):
        g = time.gmtime(t)
        out |= {time.strftime("%Y-%m-%d", g), time.strftime("%b ", g) + str(g.tm_mday), str(g.tm_mday) + time.strftime(" %B", g)}
        if "date" in tpl.lower():
            out.add(time.strftime("%j", g))
    return out


def render_all(cs):
    res, dropped = [], []
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "templates"))
        with open(os.path.join(d, "Chart.yaml"), "w") as f:
            f.write("apiVersion: v2\nname: %s\nversion: 0.1.0\n" % CHART)
        seen = set()
        for i, (area, tpl) in enumerate(cs):
            if tpl in seen:
                continue
            seen.add(tpl)
            with open(os.path.join(d, "templates", "c.txt"), "w", encoding="utf-8") as f:
                f.write(tpl)
            runs = set()
            # Sprig's `keys`/`values` follow Go's random map order: render those many times
            for _ in range(16 if "keys" in tpl or "values" in tpl else RUNS):
                try:
                    with Chart.load(d) as ch:
                        out = ch.render(values=VALUES, name="release-name", namespace="default")
                    runs.add(("output", out.get(TNAME)))
                except helm_python.HelmError as e:
                    runs.add(("error", str(e).replace(TNAME, "@TEMPLATE@")))
            if len(runs) != 1:  # depends on Go's random map order (e.g. `values`) or entropy
                dropped.append(tpl)
                continue
            kind, text = runs.pop()
            if kind == "output" and text and any(n in text for n in now_strings(tpl)):
                dropped.append(tpl)  # rendered `now` (Sprig's dates fall back to time.Now())
                continue
            res.append({"id": "%s-%04d" % (area, i), "template": tpl, kind: text})
    return res, dropped


if __name__ == "__main__":
    cs, dropped = render_all(cases())
    with open(os.path.join(HERE, "values.json"), "w") as f:
        json.dump(VALUES, f, indent=1, sort_keys=True)
    with open(os.path.join(HERE, "cases.json"), "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(json.dumps(c, ensure_ascii=False, sort_keys=True) for c in cs) + "\n]\n")
    print(len(cs), "cases,", sum("error" in c for c in cs), "errors,", len(dropped), "nondeterministic dropped")
