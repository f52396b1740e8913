"""Calls kircd's socket API from Python with grpcio, as the README shows.

Usage: status.py SOCKET PROTO_DIR OUT_DIR

Compiles kirc/v1/daemon.proto with grpcio-tools into OUT_DIR, then calls
GetStatus and reads the first event of Subscribe (the snapshot), and prints
one JSON object with what it got.
"""

import json
import sys

from grpc_tools import protoc


def main() -> int:
    socket, proto_dir, out_dir = sys.argv[1:4]
    code = protoc.main(
        [
            "protoc",
            f"-I{proto_dir}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            f"{proto_dir}/kirc/v1/daemon.proto",
        ]
    )
    if code != 0:
        print(f"protoc failed: {code}", file=sys.stderr)
        return 1
    sys.path.insert(0, out_dir)
    import grpc
    from kirc.v1 import daemon_pb2, daemon_pb2_grpc

    with grpc.insecure_channel(f"unix:{socket}") as channel:
        stub = daemon_pb2_grpc.DaemonStub(channel)
        status = stub.GetStatus(daemon_pb2.GetStatusRequest(), timeout=10)
        events = stub.Subscribe(daemon_pb2.SubscribeRequest(), timeout=10)
        first = next(events)
        events.cancel()
    print(
        json.dumps(
            {
                "api_version": status.api_version,
                "actor_id": status.actor_id,
                "ready": status.ready,
                "first_event": first.WhichOneof("kind"),
                "snapshot_actor_id": first.snapshot.status.actor_id,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
