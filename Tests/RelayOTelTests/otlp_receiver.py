"""A real OTLP/gRPC metrics receiver for the tests.

Serves opentelemetry.proto.collector.metrics.v1.MetricsService on 127.0.0.1 (port 0 = any free
port), prints "PORT <n>" once listening, and appends every ExportMetricsServiceRequest it receives
to the output file as one JSON line. Exits after --seconds (a bound, so a forgotten receiver ends).
"""
import argparse
import json
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc


class Receiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def Export(self, request, context):
        line = json.dumps(json_format.MessageToDict(request))
        with self.lock, open(self.path, "a") as out:
            out.write(line + "\n")
        return metrics_service_pb2.ExportMetricsServiceResponse()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", required=True)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Receiver(args.output), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    server.wait_for_termination(timeout=args.seconds)
    server.stop(0)


if __name__ == "__main__":
    sys.exit(main())
