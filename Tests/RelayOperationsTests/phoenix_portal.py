"""A minimal Phoenix-channel (v2 JSON) portal for the relay's portal tests. Loopback only.

Usage: phoenix_portal.py LOGFILE [--init-delay S] [--drop-after-heartbeats N] [--refuse] [--lifetime S]

Writes one JSON object per line to LOGFILE: {"kind": "listening", "port": P} first, then
"connect" (path, headers), "frame" (the decoded frame), "init-sent", "dropping" and "refused"
events. It answers joins with phx_reply ok, pushes "init" --init-delay seconds after each join,
answers heartbeats, and with --drop-after-heartbeats N aborts the first connection (TCP reset, no
closing handshake) at the N-th heartbeat after its init. --refuse answers every connect with 403.
It exits by itself after --lifetime seconds (default 60).
"""
import argparse
import asyncio
import http
import json

import websockets
from websockets.asyncio.server import serve


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--init-delay", type=float, default=0.0)
    parser.add_argument("--drop-after-heartbeats", type=int, default=0)
    parser.add_argument("--refuse", action="store_true")
    parser.add_argument("--lifetime", type=float, default=60.0)
    args = parser.parse_args()
    log = open(args.log, "a", buffering=1)
    connections = {"count": 0}

    def record(**event):
        log.write(json.dumps(event, sort_keys=True) + "\n")

    def process_request(connection, request):
        record(kind="connect", path=request.path,
               headers={k.lower(): v for k, v in request.headers.raw_items()})
        if args.refuse:
            record(kind="refused")
            return connection.respond(http.HTTPStatus.FORBIDDEN, "forbidden\n")
        return None

    async def handler(ws):
        connections["count"] += 1
        number = connections["count"]
        heartbeats_after_init = 0
        initialized = asyncio.Event()
        init_task = None
        try:
            async for text in ws:
                try:
                    frame = json.loads(text)
                except ValueError:
                    continue
                record(kind="frame", connection=number, frame=frame)
                if not isinstance(frame, list) or len(frame) != 5:
                    continue
                join_ref, ref, topic, event, _payload = frame
                if event == "phx_join" and topic == "relay":
                    await ws.send(json.dumps([join_ref, ref, topic, "phx_reply",
                                              {"status": "ok", "response": {}}]))

                    async def push_init():
                        await asyncio.sleep(args.init_delay)
                        # Logged before it is sent: a test that sees no "init-sent" knows the
                        # relay has not been initialised.
                        record(kind="init-sent", connection=number)
                        initialized.set()
                        await ws.send(json.dumps([join_ref, None, "relay", "init", {}]))

                    init_task = asyncio.ensure_future(push_init())
                elif event == "heartbeat" and topic == "phoenix":
                    await ws.send(json.dumps([None, ref, "phoenix", "phx_reply",
                                              {"status": "ok", "response": {}}]))
                    if initialized.is_set():
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
            if init_task is not None:
                init_task.cancel()

    async def run():
        async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
            port = server.sockets[0].getsockname()[1]
            record(kind="listening", port=port)
            await asyncio.sleep(args.lifetime)

    asyncio.run(run())


if __name__ == "__main__":
    main()
