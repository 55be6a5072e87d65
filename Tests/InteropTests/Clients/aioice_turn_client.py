#!/usr/bin/env python3
"""A real third-party TURN client (aioice) against a TURN server on loopback.

Allocates a relayed address with TURN REST API credentials, sends payloads to a UDP
peer through the relay (aioice binds a channel on the first send to a peer, so every
payload travels as ChannelData), lets the peer echo each payload back through the relay,
and checks that:
  - the peer saw every payload arrive from the relayed address,
  - the client got every echo back, attributed to the peer's address,
  - the echoes came back as ChannelData, not as Data indications.
Prints one line per echoed payload ("echoed: <payload>") and a summary line.
Exits 0 only when all of that holds; 1 otherwise (2 for a usage error).
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import socket
import sys
import time

try:
    from aioice import turn
except ImportError:
    print("aioice is not installed: run `make test` (or .ci/run), which installs it", file=sys.stderr)
    sys.exit(1)


def rest_credentials(secret: str, ttl: int, user_id: str) -> tuple[str, str]:
    # TURN REST API: username "<unix-expiry>:<id>", password base64(HMAC-SHA1(secret, username)).
    username = f"{int(time.time()) + ttl}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


received_channel_data = 0
received_data_indications = 0
_original_datagram_received = turn.TurnClientUdpProtocol.datagram_received


def _counting_datagram_received(self, data, addr):
    # Counts what the relay delivers to the client, before aioice demultiplexes it.
    global received_channel_data, received_data_indications
    if len(data) >= 4 and turn.is_channel_data(data):
        received_channel_data += 1
    elif len(data) >= 2 and data[0:2] == b"\x00\x17":  # Data indication: method 0x007, class indication
        received_data_indications += 1
    return _original_datagram_received(self, data, addr)


turn.TurnClientUdpProtocol.datagram_received = _counting_datagram_received


class EchoPeer(asyncio.DatagramProtocol):
    """The UDP peer: records every datagram and sends it back, prefixed, to its source."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple]] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.received.append((data, addr))
        self.transport.sendto(b"echo:" + data, addr)


class ClientReceiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple]] = []
        self.errors: list[Exception] = []
        self.done = asyncio.Event()
        self.expected = 0

    def datagram_received(self, data: bytes, addr) -> None:
        self.received.append((data, addr))
        if len(self.received) >= self.expected:
            self.done.set()

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)
        self.done.set()


async def run(args) -> int:
    loop = asyncio.get_running_loop()
    username, password = rest_credentials(args.secret, args.ttl, "aioice")

    peer_transport, peer = await loop.create_datagram_endpoint(
        EchoPeer, local_addr=(args.peer_host, 0), family=socket.AF_INET
    )
    peer_addr = peer_transport.get_extra_info("sockname")[:2]

    relay, receiver = await turn.create_turn_endpoint(
        ClientReceiver,
        server_addr=(args.server_host, args.server_port),
        username=username,
        password=password,
    )
    relayed = relay.get_extra_info("sockname")
    mapped = relay.get_extra_info("related_address")
    print(f"allocated: relayed={relayed[0]}:{relayed[1]} mapped={mapped[0]}:{mapped[1]}")

    payloads = [f"payload-{i:03d}".encode() for i in range(args.messages)]
    receiver.expected = len(payloads)
    for payload in payloads:
        relay.sendto(payload, peer_addr)
        await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(receiver.done.wait(), timeout=args.timeout)
    except asyncio.TimeoutError:
        pass

    failures = []
    if receiver.errors:
        failures.append(f"send errors: {receiver.errors!r}")

    peer_payloads = [data for data, _ in peer.received]
    if peer_payloads != payloads:
        failures.append(f"peer received {len(peer_payloads)} of {len(payloads)} payloads (or out of order)")
    wrong_sources = [addr for _, addr in peer.received if tuple(addr[:2]) != tuple(relayed[:2])]
    if wrong_sources:
        failures.append(f"peer saw datagrams from {wrong_sources[:3]}, not from the relayed address {relayed}")

    echoes = [data for data, _ in receiver.received]
    for data in echoes:
        print(f"echoed: {data.decode(errors='replace')}")
    expected_echoes = [b"echo:" + p for p in payloads]
    if sorted(echoes) != sorted(expected_echoes):
        failures.append(f"client received {len(echoes)} echoes, expected {len(expected_echoes)}")
    wrong_peers = [addr for _, addr in receiver.received if tuple(addr[:2]) != tuple(peer_addr)]
    if wrong_peers:
        failures.append(f"echoes attributed to {wrong_peers[:3]}, not to the peer {peer_addr}")
    if received_channel_data < len(expected_echoes):
        failures.append(
            f"only {received_channel_data} ChannelData messages reached the client "
            f"({received_data_indications} Data indications)"
        )

    print(
        f"summary: sent={len(payloads)} peer_received={len(peer_payloads)} echoed={len(echoes)} "
        f"channel_data={received_channel_data} data_indications={received_data_indications}"
    )

    relay.close()
    peer_transport.close()
    await asyncio.sleep(0.2)  # lets aioice send its Refresh with LIFETIME 0

    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-host", default="127.0.0.1")
    parser.add_argument("--server-port", type=int, required=True)
    parser.add_argument("--secret", required=True, help="TURN REST API shared secret")
    parser.add_argument("--ttl", type=int, default=3600, help="credential lifetime in seconds")
    parser.add_argument("--peer-host", default="127.0.0.1")
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the echoes")
    args = parser.parse_args()
    try:
        return asyncio.run(asyncio.wait_for(run(args), timeout=args.timeout + 20))
    except Exception as exc:  # a failed allocation or channel bind, a timeout
        print(f"FAIL: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
