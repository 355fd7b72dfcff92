#!/usr/bin/env python3
"""Writes starting corpora for the fuzz targets from the project's own test data (patterns Java
checked, URL templates and CEQL clauses from the tests, the broken and example instance files).
Run from the repository root: python3 fuzz/seeds/make_seeds.py CORPUS_ROOT"""
import hashlib, pathlib, re, struct, sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus")


def put(target, data):
    d = root / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


ZONES = ["UTC", "GMT", "America/Denver", "Europe/London", "Asia/Kolkata"]
seen = set()
for line in pathlib.Path("tests/data/java-dates.tsv").read_text().splitlines()[1:]:
    pattern, zone, millis, formatted = line.split("\t")
    if (pattern, zone) in seen:
        continue
    seen.add((pattern, zone))
    choice = ZONES.index(zone) if zone in ZONES else 255
    body = f"{pattern}\0{formatted}\0{zone}".encode()
    put("dates", bytes([choice]) + struct.pack("<q", int(millis)) + body)

quoted = re.compile(r'"((?:[^"\\]|\\.)*)"')
for text in quoted.findall(pathlib.Path("tests/url_templates.rs").read_text()):
    if "${" in text or text.startswith("/"):
        put("url_template", struct.pack("<q", 1710064800000) + text.encode())
for text in quoted.findall(pathlib.Path("tests/ceql.rs").read_text()):
    if any(op in text for op in ("=", "<", ">", " like ", " in ", " is ")):
        put("ceql", text.replace('\\"', '"').encode())

files = list(pathlib.Path("tests/data/broken").iterdir()) + [
    pathlib.Path("tests/data/valid-base.json"),
    pathlib.Path("etc/instances.d/connectwise-contacts.json.example"),
    pathlib.Path("etc/instances.d/connectwise-contacts.toml.example"),
]
for f in files:
    if f.is_file():
        toml = f.name.endswith(".toml") or f.name.endswith(".toml.example")
        put("instance_file", (b"\x01" if toml else b"\x00") + f.read_bytes())

# Page bodies: small arrays with every kind of value, escape and number, and a ConnectWise-like
# contact page (compact and indented), so mutations start from the shapes providers send.
pages = [
    b"[]", b" [ ] ", b"[null,true,false]", b"[0,-0,1e5,1E+5,-1.5e-3,0.25,18446744073709551616]",
    b'["", "a\\"b\\\\c\\/d\\b\\f\\n\\r\\t", "\\u00e9\\ud83d\\ude00\\ud800"]',
    '["Zoë Ω 😀 \u007f"]'.encode(), b'[{"a":{"b":[1,{"c":[]}]}},[[[]]],{}]',
    b'[{"id":1,"id":2,"":null}]', b"[\n\t{\r\n\"k\" :\t1 } ,\n2\n]\n",
]
contact = {
    "id": 17, "firstName": "Zo\u00eb", "lastName": "O'Brien \"the 1st\"",
    "company": {"id": 19, "identifier": "Acme", "name": "Acme / \u682a\u5f0f\u4f1a\u793e",
                "_info": {"company_href": "https://example.invalid/apis/3.0/company/companies/19"}},
    "inactiveFlag": False, "balance": -12.5e-3, "children": [],
    "communicationItems": [{"id": 7, "type": {"id": 1, "name": "Email"},
                            "value": "zoe@example.invalid", "defaultFlag": True}],
    "_info": {"lastUpdated": "2024-01-02T03:04:05Z", "updatedBy": None},
}
import json
pages.append(json.dumps([contact, contact], separators=(",", ":"), ensure_ascii=False).encode())
pages.append(json.dumps([contact], indent=2).encode())
for page in pages:
    put("json_split", page)
