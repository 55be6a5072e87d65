#!/usr/bin/env python3
"""A real third-party TURN client (aioice) against a TURN server.

Allocates a relayed address with TURN REST API credentials, sends payloads to a UDP
peer through the relay (aioice binds a channel on the first send to a peer, so every
payload travels as ChannelData), lets the peer echo each payload back through the relay,
and checks that:
  - the peer saw every payload arrive from the relayed address,
  - the client got every echo back, attributed to the peer's address,
  - the echoes came back as ChannelData, not as Data indications.
--family asks for an IPv6 relayed address (REQUESTED-ADDRESS-FAMILY) or a dual allocation
(ADDITIONAL-ADDRESS-FAMILY IPv6, RFC 8656 §7.2), which aioice does not send by itself; the peer's
family follows --peer-host, and the relayed address of that family is the one the peer must see.
Prints one line per echoed payload ("echoed: <payload>") and a summary line.
Exits 0 only when all of that holds; 1 otherwise (2 for a usage error).
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import socket
import ssl
import struct
import sys
import time

try:
    from aioice import stun, turn
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
# TurnClientMixin.datagram_received is where both the UDP protocol and the TCP/TLS one
# (TurnClientTcpProtocol, after its stream framing) hand each message over.
_original_datagram_received = turn.TurnClientMixin.datagram_received


def _counting_datagram_received(self, data, addr):
    # Counts what the relay delivers to the client, before aioice demultiplexes it.
    global received_channel_data, received_data_indications
    if len(data) >= 4 and turn.is_channel_data(data):
        received_channel_data += 1
    elif len(data) >= 2 and data[0:2] == b"\x00\x17":  # Data indication: method 0x007, class indication
        received_data_indications += 1
    return _original_datagram_received(self, data, addr)


turn.TurnClientMixin.datagram_received = _counting_datagram_received

# RFC 8656 §18: REQUESTED-ADDRESS-FAMILY (0x0017) and ADDITIONAL-ADDRESS-FAMILY (0x8000), each
# "the family ... 0x01 IPv4, 0x02 IPv6" followed by 3 bytes RFFU (zero). aioice knows neither.
FAMILY_CODES = {"ipv4": 0x01, "ipv6": 0x02}


def _pack_family(value: int) -> bytes:
    return bytes([value, 0, 0, 0])


def _unpack_family(data: bytes) -> int:
    return data[0]


for _entry in [(0x0017, "REQUESTED-ADDRESS-FAMILY", _pack_family, _unpack_family),
               (0x8000, "ADDITIONAL-ADDRESS-FAMILY", _pack_family, _unpack_family)]:
    stun.ATTRIBUTES_BY_TYPE[_entry[0]] = _entry
    stun.ATTRIBUTES_BY_NAME[_entry[1]] = _entry

allocation_attributes: dict[str, int] = {}
relayed_addresses: list[tuple[str, int]] = []
_original_request_with_retry = turn.TurnClientMixin.request_with_retry
_original_parse_message = stun.parse_message


async def _request_with_family(self, request):
    if request.message_method == stun.Method.ALLOCATE:
        request.attributes.update(allocation_attributes)
    return await _original_request_with_retry(self, request)


def _parse_recording_relayed_addresses(data: bytes):
    # A dual allocation's success response carries two XOR-RELAYED-ADDRESS attributes (one per
    # family); aioice's parser keeps one, so every one of them is read here from the raw bytes.
    message = _original_parse_message(data)
    if message.message_method == stun.Method.ALLOCATE and message.message_class == stun.Class.RESPONSE:
        relayed_addresses.clear()
        offset = 20
        while offset + 4 <= len(data):
            attr_type, attr_length = struct.unpack("!HH", data[offset:offset + 4])
            value = data[offset + 4:offset + 4 + attr_length]
            if attr_type == 0x0016:
                relayed_addresses.append(stun.unpack_xor_address(value, message.transaction_id))
            offset += 4 + attr_length + (-attr_length % 4)
    return message


turn.TurnClientMixin.request_with_retry = _request_with_family
stun.parse_message = _parse_recording_relayed_addresses


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

    peer_family = socket.AF_INET6 if ":" in args.peer_host else socket.AF_INET
    peer_transport, peer = await loop.create_datagram_endpoint(
        EchoPeer, local_addr=(args.peer_host, 0), family=peer_family
    )
    peer_addr = peer_transport.get_extra_info("sockname")[:2]

    tls = None
    if args.transport == "tls":
        # The relay's certificate is the test's own, self-signed: not verified. ALPN "stun.turn"
        # (RFC 7443) offered, as a browser does for turns:.
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        tls.set_alpn_protocols(["stun.turn"])
    relay, receiver = await turn.create_turn_endpoint(
        ClientReceiver,
        server_addr=(args.server_host, args.server_port),
        username=username,
        password=password,
        transport="udp" if args.transport == "udp" else "tcp",
        ssl=tls,
    )
    if tls is not None:
        # TurnTransport keeps its TCP protocol in a name-mangled attribute.
        inner = getattr(relay, "_TurnTransport__inner_protocol")
        ssl_object = inner.transport.get_extra_info("ssl_object")
        print(f"tls: version={ssl_object.version()} alpn={ssl_object.selected_alpn_protocol()}")
    mapped = relay.get_extra_info("related_address")
    # The relayed address the peer sees: the one of the peer's family (a dual allocation has two).
    relayed = next((a for a in relayed_addresses if (":" in a[0]) == (peer_family == socket.AF_INET6)),
                   relay.get_extra_info("sockname"))
    print(f"allocated: relayed={relayed[0]}:{relayed[1]} mapped={mapped[0]}:{mapped[1]}")
    print("relayed addresses: " + " ".join(f"{a[0]}:{a[1]}" for a in relayed_addresses))

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
    wrong_peers = [addr for _, addr in receiver.received if tuple(addr[:2]) != tuple(peer_addr[:2])]
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
    parser.add_argument("--transport", choices=["udp", "tcp", "tls"], default="udp",
                        help="how the client reaches the relay: UDP, TCP or TLS over TCP (relaying is UDP)")
    parser.add_argument("--family", choices=["ipv4", "ipv6", "dual"], default="ipv4",
                        help="relayed address family: ipv4 (no attribute), ipv6, or dual (IPv4 and IPv6)")
    args = parser.parse_args()
    if args.family == "ipv6":
        allocation_attributes["REQUESTED-ADDRESS-FAMILY"] = FAMILY_CODES["ipv6"]
    elif args.family == "dual":
        allocation_attributes["ADDITIONAL-ADDRESS-FAMILY"] = FAMILY_CODES["ipv6"]
    try:
        return asyncio.run(asyncio.wait_for(run(args), timeout=args.timeout + 20))
    except Exception as exc:  # a failed allocation or channel bind, a timeout
        print(f"FAIL: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
