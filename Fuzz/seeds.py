#!/usr/bin/env python3
"""Writes the seed corpora Fuzz/corpus/<target>/ (committed; run again after changing a harness's
input format). Sources: the RFC 5769 and RFC 8489 test vectors (read from Tests/STUNTests), and
datagrams captured from real clients (Fuzz/captures: coturn's turnutils_uclient with channels and
with Send indications, aioice with a dual allocation; see Fuzz/capture.py). Each seed is written
in the input format of its target (see the comment at the top of each target)."""
import hashlib, os, re, struct

root = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(root)

def vectors(path):
    text = open(os.path.join(repo, path)).read()
    out = {}
    for name, body in re.findall(r'static let (\w+) = hex\("""(.*?)"""\)', text, re.S):
        out[name] = bytes.fromhex(re.sub(r"\s", "", body))
    return out

rfc5769 = vectors("Tests/STUNTests/RFC5769Tests.swift")
rfc8489 = vectors("Tests/STUNTests/RFC8489Tests.swift")
captures = {}
for name in sorted(os.listdir(os.path.join(root, "captures"))):
    captures[name[:-4]] = open(os.path.join(root, "captures", name), "rb").read()

matrix = "\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9"
keys = {
    "sampleRequest": b"VOkJxbRl1RmTxUk/WvJxBt",
    "sampleIPv4Response": b"VOkJxbRl1RmTxUk/WvJxBt",
    "sampleIPv6Response": b"VOkJxbRl1RmTxUk/WvJxBt",
    "sampleLongTermRequest": hashlib.md5(f"{matrix}:example.org:TheMatrIX".encode()).digest(),
}
key8489 = hashlib.sha256(f"{matrix}:example.org:TheMatrIX".encode()).digest()
alice = hashlib.md5(b"alice:turn-relay:alice-password").digest()

def write(target, name, data):
    d = os.path.join(root, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

stun = {**{f"rfc5769-{k}": v for k, v in rfc5769.items()}, **{f"rfc8489-{k}": v for k, v in rfc8489.items()},
        **{k: v for k, v in captures.items() if v[0] < 4}}
frames = {k: v for k, v in captures.items() if 0x40 <= v[0] <= 0x7F}

# stun-parse-roundtrip: the bytes themselves.
for k, v in {**stun, **frames}.items():
    write("stun-parse-roundtrip", k, v)

# stun-integrity: even mode byte, key chunk, message; and odd mode (build, sign, mutate).
for k, v in stun.items():
    key = keys.get(k.split("-", 1)[1], key8489 if k.startswith("rfc8489") else alice)
    write("stun-integrity", k, bytes([0, len(key)]) + key + v)
write("stun-integrity", "signed-all", bytes([1, 5]) + b"alice" + b"\x00\x03" + bytes(range(12)) + b"\x07"
      + b"\x02" + b"\x00\x19\x04\x11\x00\x00\x00" + b"\x00\x0d\x04\x00\x00\x02\x58" + b"\x02" + b"\x00\x00\x10\x07\x01")
write("stun-integrity", "signed-sha256-truncated", bytes([1, 3]) + b"key" + b"\x00\x01" + bytes(12) + b"\x06\x00\x01")

# channeldata-framing: parser mode (0x00) with real frames; server mode (0x80) op lists.
for k, v in frames.items():
    write("channeldata-framing", k, b"\x00" + v)
write("channeldata-framing", "rfc5766-parser", b"\x01\x7f\xff\x00\x02ab")
write("channeldata-framing", "server-both-ways", b"\x80" + b"\x00\x00\x05hello\x00" + b"\x01\x00\x05world" + b"\x01\x01\x03v6!")
write("channeldata-framing", "server-bad-length", b"\x80" + b"\x08\x00\x03abc\x09\x01" + b"\x04\x41\x23\x02hi")

# peer-policy: canonicalization forms, lists, text.
write("peer-policy", "embedded-forms", bytes([0x15]) + b"\x08\x02\x7f\x00\x00\x01" + b"\x18\x00\x0a\x00\x00\x00"
      + b"\x02\x7f\x00\x00\x01" + b"\x03\xa9\xfe\xa9\xfe" + b"\x05\x7f\x00\x00\x01" + b"\x06\x7f\x00\x00\x01\x00\x00" + b"\x04\x00\x00\x00\x01")
write("peer-policy", "v6-prefix", bytes([0x05]) + b"\x21\x07\x20\x01\x0d\xb8\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      + b"\x07\x20\x01\x0d\xb8\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01")
for i, text in enumerate(["::ffff:127.0.0.1", "2002:7f00:1::", "64:ff9b::7f00:1", "10.0.0.0/8", "2001:db8:8000::/33",
                          "[2001:db8::1]:3478", "fe80::1", "::ffff:0:a00:1", "1.2.3.4:5", "::"]):
    write("peer-policy", f"text-{i}", b"\xff" + text.encode())

# server-batches: op 0 (raw datagram from the first source on its listener) per capture, and each
# client's captures as one sequence of batches.
for k, v in {**stun, **frames}.items():
    if len(v) <= 255:
        write("server-batches", k, b"\x00\x00\x00" + bytes([len(v)]) + v + b"\x04")
for prefix in ["uclient-send", "uclient", "aioice"]:
    seq = b""
    for k in sorted(c for c in captures if c.rsplit("-", 1)[0] == prefix):
        v = captures[k]
        if len(v) <= 255:
            seq += b"\x00\x00\x00" + bytes([len(v)]) + v
        seq += b"\x06\x00"  # answer socket opens
    write("server-batches", f"sequence-{prefix}", seq + b"\x05\x3c")
write("server-batches", "stun-ops", b"\x02\x00\x00\x00\x03\x07\x08\x00\x19\x00\x04\x11\x00\x00\x00" + b"\x0a\x01\x00\x00\x01\x01\x00" + b"\x04\x05\xff\x06\x01\x07\x0f")

# server-deep: one seed per operation kind, then a mixed one.
for op in range(16):
    write("server-deep", f"op-{op:02d}", bytes([op]) + bytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]))
write("server-deep", "mixed", bytes([0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0x06, 0x03, 0x40, 0x01, 0x05, 0x02, 0x08, 0x00, 0x03, 0x61,
                                     0x62, 0x63, 0x09, 0x00, 0x00, 0x02, 0x68, 0x69, 0x0a, 0x14, 0x0b, 0x00, 0x0e, 0x03, 0x00,
                                     0x01, 0x00, 0x00, 0x02, 0x00, 0x00, 0x0f]))
print("seeds written")
