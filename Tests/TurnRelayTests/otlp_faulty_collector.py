"""OTLP/gRPC collectors that fail, for the relay's export fault tests. Loopback only.

Usage: otlp_faulty_collector.py MODE [--seconds S]

MODE:
  hang    a real gRPC server (grpcio) with the collector's MetricsService whose Export never
          answers: the HTTP/2 connection is up, every call waits until the client gives up.
  silent  a TCP listener that accepts connections and never reads or writes a byte: the HTTP/2
          connection preface never completes.

Prints "PORT <n>" once listening on 127.0.0.1 (port 0: any free port), then, on every change,
"CALLS <n>" (hang: Export calls begun) or "CONNECTIONS <n>" (silent: connections accepted), and
exits after --seconds (a bound, so a forgotten collector ends).
"""
import argparse
import socket
import sys
import threading
import time


def hang(seconds):
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc

    stop = threading.Event()
    calls = [0]
    lock = threading.Lock()

    class Collector(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, request, context):
            with lock:
                calls[0] += 1
                print(f"CALLS {calls[0]}", flush=True)
            # Never answers: waits until the client cancels the call, or the collector ends.
            while not stop.is_set() and context.is_active():
                stop.wait(0.05)
            return None

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    time.sleep(seconds)
    stop.set()
    server.stop(0)


def silent(seconds):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    held = []
    deadline = time.monotonic() + seconds
    listener.settimeout(0.1)
    while time.monotonic() < deadline:
        try:
            connection, _ = listener.accept()
        except socket.timeout:
            continue
        # Kept open and never read: whatever the client writes stays in the kernel's buffers.
        held.append(connection)
        print(f"CONNECTIONS {len(held)}", flush=True)
    for connection in held:
        connection.close()
    listener.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["hang", "silent"])
    parser.add_argument("--seconds", type=float, default=120)
    args = parser.parse_args()
    if args.mode == "hang":
        hang(args.seconds)
    else:
        silent(args.seconds)


if __name__ == "__main__":
    sys.exit(main())
