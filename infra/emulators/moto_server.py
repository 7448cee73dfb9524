"""Runs moto's server for Ferrocart's local cloud and tests.

Usage: python moto_server.py HOST PORT

Prints READY once it accepts requests, then serves until its standard input closes. The parent
(the local cloud or a test binary) holds the other end of that pipe, so when the parent exits for
any reason - Ctrl-C, a panic, a killed test run - moto exits too and no emulator is left behind.

DynamoDB requests are serialized by one lock. moto is not safe for concurrent DynamoDB writes:
TransactWriteItems snapshots each table it touches (a deep copy) and, when the transaction is
cancelled, puts the snapshot back, silently undoing any write another thread made meanwhile.
DynamoDB itself has no such race, so we remove it here rather than write code around it. SQS and
EventBridge stay concurrent (SQS long polls must not hold the lock).
"""

import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

DYNAMODB_LOCK = threading.Lock()


def serialize_dynamodb(app):
    def wrapped(environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("DynamoDB"):  # DynamoDB_20120810.* and DynamoDBStreams_20120810.*
            return app(environ, start_response)
        with DYNAMODB_LOCK:
            # Run the whole request, body included, while holding the lock.
            return [b"".join(app(environ, start_response))]

    return wrapped


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    app = serialize_dynamodb(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("READY", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
