#!/usr/bin/env python3
"""Records real clients' datagrams for the seed corpora (Fuzz/captures/<name>-NNN.bin).

A UDP proxy: clients talk to --listen, the proxy forwards to the TURN server at --server and
relays the answers back; every datagram a client sends is written to --out as <prefix>-NNN.bin
(client -> server only: what the server parses). Runs until --seconds have passed.

    python3 Fuzz/capture.py --listen 3479 --server 3478 --out Fuzz/captures --prefix uclient --seconds 10
"""
import argparse, os, select, socket, time

p = argparse.ArgumentParser()
p.add_argument("--listen", type=int, required=True)
p.add_argument("--server", type=int, required=True)
p.add_argument("--out", required=True)
p.add_argument("--prefix", required=True)
p.add_argument("--seconds", type=float, default=10)
p.add_argument("--limit", type=int, default=40, help="datagrams to keep")
a = p.parse_args()
os.makedirs(a.out, exist_ok=True)
front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
front.bind(("127.0.0.1", a.listen))
backs = {}  # client address -> socket towards the server
n = 0
seen = set()
end = time.time() + a.seconds
while time.time() < end:
    r, _, _ = select.select([front] + list(backs.values()), [], [], 0.2)
    for s in r:
        if s is front:
            data, client = front.recvfrom(65535)
            if client not in backs:
                b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                b.bind(("127.0.0.1", 0))
                backs[client] = b
            backs[client].sendto(data, ("127.0.0.1", a.server))
            # Keep distinct shapes: the first few of each first-two-bytes kind.
            kind = data[:2]
            if n < a.limit and sum(1 for k in seen if k[0] == kind) < 6 and (kind, len(data)) not in seen:
                seen.add((kind, len(data)))
                with open(os.path.join(a.out, f"{a.prefix}-{n:03d}.bin"), "wb") as f:
                    f.write(data)
                n += 1
        else:
            client = next(c for c, b in backs.items() if b is s)
            data, _ = s.recvfrom(65535)
            front.sendto(data, client)
print(f"{a.prefix}: kept {n} datagrams")
