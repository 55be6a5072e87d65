"""A minimal Phoenix-channel (v2 JSON) portal for the relay's portal tests. Loopback only.

Usage: phoenix_portal.py LOGFILE [--init-delay S | --init-on-command] [--drop-after-heartbeats N]
                         [--refuse] [--token T] [--rate-limit N] [--retry-after S]
                         [--join-error REASON] [--idle-timeout S] [--lifetime S]

Writes one JSON object per line to LOGFILE (each with "t", a monotonic time in seconds):
{"kind": "listening", "port": P} first, then
"connect" (path, headers), "frame" (the decoded frame), "init-sent", "dropping", "refused",
"unauthorized", "rate-limited", "missing-ip", "join-error", "disconnect-sent", "idle-timeout",
"stalled", "stalled-closed", "garbage-sent" and "closed" (a connection's handler ended; "code": the
closing handshake's status code, null without one) events.

It behaves as Firezone's portal does for a relay (elixir/lib/portal_api: endpoint.ex,
sockets.ex, relay/socket.ex, relay/channel.ex):
- With --token, the connect request must carry `x-authorization: Bearer <token>` (or a `token`
  query parameter): otherwise 401 with RFC 9457 problem details, code `missing_token` or
  `invalid_token`.
- A connect without `ipv4` and `ipv6` is refused (`{:error, :missing_ip}`, which the portal's
  catch-all error handler turns into 500 `unhandled_connect_error`).
- --rate-limit N: the first N connects get 503 with `Retry-After: <--retry-after>` and code
  `rate_limit` (the portal's rate limit answer).
- Joins on topic `relay` with a `stamp_secret` get phx_reply ok; a join without one gets the
  error reply Phoenix sends when the channel's join clause does not match (`join crashed`);
  --join-error REASON answers every join with an error reply of that reason.
- `init` is pushed --init-delay seconds after each join, or with --init-on-command only when
  the test writes `init` on stdin.
- The socket is closed when nothing arrives from the relay for --idle-timeout seconds (the
  portal's relay socket `timeout`, 41 s).

Commands on stdin, one a line: `init` (push init on every open connection that has not had one,
once it has joined), `disconnect REASON` (push `disconnect` with that reason, then close, as the portal does
for `token_expired`), `drop` (abort every connection without a closing handshake), `stall` (every
open connection stays open but the portal stops reading it and sends nothing more on it: no heartbeat
replies, no pushes, no closing handshake; connections opened later are served as usual; once the relay
closes a stalled connection, which the portal sees as the socket's TCP state turning CLOSE_WAIT or
CLOSE, it logs "stalled-closed" and aborts it), `garbage KIND` (send on every open connection the
frames of KIND, then log "garbage-sent" with their count; see GARBAGE).

--drop-after-heartbeats N aborts the first connection (TCP reset, no closing handshake) at the
N-th heartbeat after its init. --refuse answers every connect with 403. It exits by itself
after --lifetime seconds (default 60).
"""
import argparse
import asyncio
import http
import json
import socket
import sys
import threading
import time
import urllib.parse

import websockets
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8


def problem(status, code, detail, extra_headers=()):
    """An RFC 9457 problem details response, as PortalAPI.ProblemDetails.send_with_code builds it."""
    body = json.dumps({"type": "about:blank", "title": http.HTTPStatus(status).phrase,
                       "status": status, "detail": detail, "code": code}).encode()
    headers = Headers([("Content-Type", "application/problem+json"),
                       ("Content-Length", str(len(body))), ("Connection", "close")])
    for name, value in extra_headers:
        headers[name] = value
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def garbage_frames(kind, join_ref):
    """What `garbage KIND` sends: text frames (str) and binary frames (bytes).

    malformed: not a Phoenix v2 frame (not JSON, JSON of the wrong shape, wrong element types);
    several of them would be an init or a disconnect if the relay read them loosely.
    ignored: well-formed v2 frames of unknown events and topics, a heartbeat reply to a ref never
    sent, a disconnect with another reason than token_expired, a join reply nobody asked for.
    binary: binary frames (the portal only ever sends text).
    oversize: one text frame of 70,000 bytes (beyond the relay's 64 KiB frame limit), itself a
    well-formed init.
    invalid-utf8: one text frame whose bytes are not UTF-8, otherwise a well-formed init.
    fragmented: a well-formed init sent as one text message in four frames (RFC 6455 §5.4).
    fragmented-oversize: a well-formed init of 1,200,000 bytes in 60,000-byte frames (each frame
    within the relay's frame limit, the message beyond its 1 MiB message limit).
    A message in fragments is a Fragments, a text frame of raw bytes a TextBytes.
    """
    if kind == "malformed":
        return [
            "hello, relay",
            "",
            "[",
            '{"topic": "relay", "event": "init", "payload": {}}',
            "[1, 2, 3, 4, 5]",
            '[null, null, "relay", "init"]',
            '[null, null, "relay", "init", [], 6]',
            f'["{join_ref}", null, "relay", "init", []]',
            f'["{join_ref}", null, "relay", "init", "payload"]',
            '[null, null, 7, "init", {}]',
            '[null, null, "relay", null, {}]',
            '[null, null, "relay", "disconnect", null]',
            '"init"',
            "null",
        ]
    if kind == "ignored":
        return [
            json.dumps([join_ref, None, "relay", "surprise", {"x": 1}]),
            json.dumps([None, None, "elsewhere", "init", {}]),
            json.dumps([None, None, "phoenix", "init", {}]),
            json.dumps([join_ref, None, "relay", "disconnect", {"reason": "maintenance"}]),
            json.dumps([join_ref, None, "relay", "disconnect", {"reason": 5}]),
            json.dumps([None, "999999", "phoenix", "phx_reply", {"status": "ok", "response": {}}]),
            json.dumps([join_ref, "999998", "relay", "phx_reply", {"status": "error", "response": {}}]),
        ]
    if kind == "binary":
        return [b"\x00\x01\x02", json.dumps([join_ref, None, "relay", "init", {}]).encode()]
    if kind == "oversize":
        return [json.dumps([join_ref, None, "relay", "init", {"pad": "x" * 70000}])]
    if kind == "invalid-utf8":
        return [TextBytes(json.dumps([join_ref, None, "relay", "init", {"pad": "@@"}]).encode()
                          .replace(b"@@", b"\xff\xfe"))]
    if kind == "fragmented":
        text = json.dumps([join_ref, None, "relay", "init", {}])
        step = max(1, len(text) // 4 + 1)
        return [Fragments([text[i:i + step] for i in range(0, len(text), step)])]
    if kind == "fragmented-oversize":
        text = json.dumps([join_ref, None, "relay", "init", {"pad": "x" * 1200000}])
        return [Fragments([text[i:i + 60000] for i in range(0, len(text), 60000)])]
    raise ValueError(kind)


class Fragments(list):
    """One text message sent as these fragments, each in its own frame."""


class TextBytes(bytes):
    """A text frame carrying exactly these bytes (not checked for UTF-8)."""


async def send_garbage(ws, frame):
    if isinstance(frame, Fragments):
        await ws.send(list(frame))
    elif isinstance(frame, TextBytes):
        await ws.send(bytes(frame), text=True)
    else:
        await ws.send(frame)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--init-delay", type=float, default=0.0)
    parser.add_argument("--init-on-command", action="store_true")
    parser.add_argument("--drop-after-heartbeats", type=int, default=0)
    parser.add_argument("--refuse", action="store_true")
    parser.add_argument("--token")
    parser.add_argument("--rate-limit", type=int, default=0)
    parser.add_argument("--retry-after", type=int, default=1)
    parser.add_argument("--join-error")
    parser.add_argument("--idle-timeout", type=float, default=41.0)
    parser.add_argument("--lifetime", type=float, default=60.0)
    args = parser.parse_args()
    log = open(args.log, "a", buffering=1)
    state = {"count": 0, "connects": 0}
    # Open connections: number -> {"ws": ..., "join_ref": ..., "initialized": bool}
    live = {}

    def record(**event):
        event["t"] = time.monotonic()
        log.write(json.dumps(event, sort_keys=True) + "\n")

    def process_request(connection, request):
        record(kind="connect", path=request.path,
               headers={k.lower(): v for k, v in request.headers.raw_items()})
        state["connects"] += 1
        if args.refuse:
            record(kind="refused")
            return connection.respond(http.HTTPStatus.FORBIDDEN, "forbidden\n")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        if args.token is not None:
            header = request.headers.get("x-authorization")
            if header is not None and header.startswith("Bearer "):
                token = header[len("Bearer "):]
            else:
                token = query.get("token", [None])[0]
            if token is None:
                record(kind="unauthorized", code="missing_token")
                return problem(401, "missing_token", "Missing token")
            if token != args.token:
                record(kind="unauthorized", code="invalid_token")
                return problem(401, "invalid_token", "Invalid token")
        if state["connects"] <= args.rate_limit:
            record(kind="rate-limited", retry_after=args.retry_after)
            return problem(503, "rate_limit", "Service Unavailable",
                           [("Retry-After", str(args.retry_after))])
        if "ipv4" not in query and "ipv6" not in query:
            record(kind="missing-ip")
            return problem(500, "unhandled_connect_error", "An unexpected error occurred.")
        return None

    async def push_init(number):
        entry = live.get(number)
        if entry is None or entry["join_ref"] is None or entry["initialized"] or entry["stalled"]:
            return
        entry["initialized"] = True
        # Logged before it is sent: a test that sees no "init-sent" knows the relay has not
        # been initialised.
        record(kind="init-sent", connection=number)
        await entry["ws"].send(json.dumps([entry["join_ref"], None, "relay", "init", {}]))

    async def command(line):
        words = line.split()
        if not words:
            return
        if words[0] == "init":
            for number, entry in list(live.items()):
                # A connection still joining gets it right after its join reply.
                entry["init_wanted"] = True
                await push_init(number)
        elif words[0] == "disconnect":
            reason = words[1] if len(words) > 1 else "token_expired"
            for number, entry in [(n, e) for n, e in live.items() if not e["stalled"]]:
                record(kind="disconnect-sent", connection=number, reason=reason)
                await entry["ws"].send(json.dumps([entry["join_ref"], None, "relay", "disconnect",
                                                   {"reason": reason}]))
                await entry["ws"].close()
        elif words[0] == "drop":
            for number, entry in list(live.items()):
                record(kind="dropping", connection=number)
                entry["ws"].transport.abort()
        elif words[0] == "stall":
            for number, entry in list(live.items()):
                if entry["stalled"]:
                    continue
                entry["stalled"] = True
                # Nothing is read any more: no heartbeat is seen or answered, no close frame either.
                entry["ws"].transport.pause_reading()
                record(kind="stalled", connection=number)
                asyncio.ensure_future(watch_stalled(number, entry))
        elif words[0] == "garbage":
            kind = words[1] if len(words) > 1 else "malformed"
            for number, entry in list(live.items()):
                if entry["stalled"]:
                    continue
                frames = garbage_frames(kind, entry["join_ref"])
                for frame in frames:
                    try:
                        await send_garbage(entry["ws"], frame)
                    except websockets.ConnectionClosed:
                        break
                record(kind="garbage-sent", connection=number, garbage=kind, count=len(frames))

    async def watch_stalled(number, entry):
        """Until the relay closes the stalled connection: its socket's TCP state (the first byte of
        TCP_INFO) turns CLOSE_WAIT (the relay's FIN arrived) or CLOSE (reset)."""
        sock = entry["ws"].transport.get_extra_info("socket")
        while True:
            try:
                state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
            except OSError:
                state = TCP_CLOSE
            if state in (TCP_CLOSE_WAIT, TCP_CLOSE):
                record(kind="stalled-closed", connection=number, tcp_state=state)
                entry["ws"].transport.abort()
                return
            await asyncio.sleep(0.05)

    async def handler(ws):
        state["count"] += 1
        number = state["count"]
        entry = {"ws": ws, "join_ref": None, "initialized": False, "init_wanted": False, "stalled": False}
        live[number] = entry
        heartbeats_after_init = 0
        init_task = None
        try:
            while True:
                try:
                    text = await asyncio.wait_for(ws.recv(), timeout=args.idle_timeout)
                except asyncio.TimeoutError:
                    if entry["stalled"]:
                        continue
                    record(kind="idle-timeout", connection=number)
                    await ws.close()
                    return
                if entry["stalled"]:
                    # Read before the stall (websockets had already buffered it): not answered.
                    continue
                try:
                    frame = json.loads(text)
                except ValueError:
                    continue
                record(kind="frame", connection=number, frame=frame)
                if not isinstance(frame, list) or len(frame) != 5:
                    continue
                join_ref, ref, topic, event, payload = frame
                if event == "phx_join" and topic == "relay":
                    reason = args.join_error
                    if reason is None and not (isinstance(payload, dict) and "stamp_secret" in payload):
                        reason = "join crashed"
                    if reason is not None:
                        record(kind="join-error", connection=number, reason=reason)
                        await ws.send(json.dumps([join_ref, ref, topic, "phx_reply",
                                                  {"status": "error", "response": {"reason": reason}}]))
                        continue
                    entry["join_ref"] = join_ref
                    await ws.send(json.dumps([join_ref, ref, topic, "phx_reply",
                                              {"status": "ok", "response": {}}]))
                    if entry["init_wanted"]:
                        await push_init(number)
                    elif not args.init_on_command:
                        async def delayed_init():
                            await asyncio.sleep(args.init_delay)
                            await push_init(number)

                        init_task = asyncio.ensure_future(delayed_init())
                elif event == "heartbeat" and topic == "phoenix":
                    await ws.send(json.dumps([None, ref, "phoenix", "phx_reply",
                                              {"status": "ok", "response": {}}]))
                    if entry["initialized"]:
                        heartbeats_after_init += 1
                    if (number == 1 and args.drop_after_heartbeats
                            and heartbeats_after_init >= args.drop_after_heartbeats):
                        record(kind="dropping", connection=number)
                        # Drop the TCP connection without a closing handshake.
                        ws.transport.abort()
                        return
        except websockets.ConnectionClosed:
            pass
        finally:
            record(kind="closed", connection=number, code=ws.close_code)
            live.pop(number, None)
            if init_task is not None:
                init_task.cancel()

    async def run():
        loop = asyncio.get_running_loop()

        def read_commands():
            for line in sys.stdin:
                asyncio.run_coroutine_threadsafe(command(line), loop)

        threading.Thread(target=read_commands, daemon=True).start()
        async with serve(handler, "127.0.0.1", 0, process_request=process_request,
                         # No keepalive pings of its own: a stalled connection must send nothing.
                         ping_interval=None) as server:
            port = server.sockets[0].getsockname()[1]
            record(kind="listening", port=port)
            await asyncio.sleep(args.lifetime)

    asyncio.run(run())


if __name__ == "__main__":
    main()
