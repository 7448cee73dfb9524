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

TransactWriteItems also checks every condition before it writes anything (`check_conditions_first`).
moto applies each action whose condition holds and only then rolls the table back when another
failed. The rollback swaps in the snapshot, but the stream records of the applied actions stay in
the shard the readers hold: a stream consumer sees changes that never happened (an OrderPlaced for
an order that was refused), and the next real record reuses a phantom's sequence number, so a
reader resuming after the phantom skips it. DynamoDB writes nothing for a cancelled transaction
and reports every failed condition; so does this patch. A transaction whose conditions all hold
then runs without moto's snapshot, whose deep copies made every transaction slower as its tables
grew (the end-to-end suite ran twice as long with them).

EventBridge → SQS also keeps each entry's `TraceHeader` as the message's `AWSTraceHeader`
(`put_events_with_trace_headers`), so the order's X-Ray trace header reaches consumers as in AWS.
"""

import copy
import sys
import threading

import moto.dynamodb.models as moto_models
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import ConditionalCheckFailed, TransactionCanceledException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.events.models import EventsBackend
from moto.sqs.models import SQSBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

DYNAMODB_LOCK = threading.Lock()


def key_of(table, op):
    """The primary key an action targets (a Put names it inside its item)."""
    if "Key" in op:
        return op["Key"]
    item = op["Item"]
    key = {table.hash_key_attr: item[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = item[table.range_key_attr]
    return key


def check_conditions_first(transact_write_items):
    def checked(self, transact_items):
        reasons = []
        for action in transact_items:
            kind, op = next(iter(action.items()))
            expression = op.get("ConditionExpression")
            if expression is None or kind not in {"ConditionCheck", "Put", "Delete", "Update"}:
                reasons.append((None, None, None))
                continue
            table = self.get_table(op["TableName"])
            current = self.get_item(op["TableName"], key_of(table, op))
            condition = get_filter_expression(
                expression, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            )
            if condition.expr(current):
                reasons.append((None, None, None))
                continue
            wants_item = op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current
            item = current.to_json()["Attributes"] if wants_item else None
            reasons.append(("ConditionalCheckFailed", str(ConditionalCheckFailed().message), item))
        if any(code is not None for code, _, _ in reasons):
            raise TransactionCanceledException(reasons)
        try:
            undo = Undo(self, transact_items)
        except Exception:
            # A request moto will refuse before writing (a missing key, an unknown table): let it.
            return transact_write_items(self, transact_items)
        # Every condition holds, so moto's rollback snapshot (a deep copy of each whole table,
        # slower as the table grows) is replaced by `undo`, which keeps just the touched items.
        moto_models.copy = KEEP_TABLES
        try:
            return transact_write_items(self, transact_items)
        except Exception:
            undo.apply()
            raise
        finally:
            moto_models.copy = copy

    return checked


class Undo:
    """What a transaction touches, to put back in place if moto fails it halfway (a duplicate key,
    an update that cannot apply): the touched items as they were, and each stream shard's length,
    so no record of a write that was undone stays readable."""

    def __init__(self, backend, transact_items):
        self.items = []
        self.shards = []
        for action in transact_items:
            _, op = next(iter(action.items()))
            table = backend.get_table(op["TableName"])
            hash_value, range_value = backend.get_keys_value(table, key_of(table, op))
            before = copy.deepcopy(table.get_item(hash_value, range_value))
            self.items.append((table, hash_value, range_value, before))
            shard = table.stream_shard
            if shard is not None and all(kept is not shard for kept, _ in self.shards):
                self.shards.append((shard, len(shard.items)))

    def apply(self):
        for table, hash_value, range_value, before in reversed(self.items):
            bucket, slot = (table.items[hash_value], range_value) if range_value is not None else (table.items, hash_value)
            if before is None:
                bucket.pop(slot, None)
            else:
                bucket[slot] = before
        for shard, length in self.shards:
            del shard.items[length:]


class KeepTables:
    """`copy` for moto's DynamoDB models module during a checked transaction: tables are not
    copied (`Undo` keeps what is needed); everything else is the `copy` module itself."""

    @staticmethod
    def deepcopy(value, memo=None):
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    def __getattr__(self, name):
        return getattr(copy, name)


KEEP_TABLES = KeepTables()


DynamoDBBackend.transact_write_items = check_conditions_first(DynamoDBBackend.transact_write_items)


# EventBridge carries a PutEvents entry's `TraceHeader` to the SQS messages its rules send, as
# their `AWSTraceHeader` system attribute; moto drops it. Each entry is put on its own, with its
# header in a thread-local that the SQS send reads (one request is one thread here).
TRACE = threading.local()


def put_events_with_trace_headers(put_events):
    def put(self, events):
        if len(events) > 10:
            return put_events(self, events)  # moto's own validation error
        entries = []
        for event in events:
            TRACE.header = event.get("TraceHeader")
            try:
                entries.extend(put_events(self, [event]))
            finally:
                TRACE.header = None
        return entries

    return put


def send_message_with_trace_header(send_message):
    def send(self, *args, **kwargs):
        header = getattr(TRACE, "header", None)
        if header and not kwargs.get("system_attributes"):
            kwargs["system_attributes"] = {"AWSTraceHeader": {"StringValue": header, "DataType": "String"}}
        return send_message(self, *args, **kwargs)

    return send


EventsBackend.put_events = put_events_with_trace_headers(EventsBackend.put_events)
SQSBackend.send_message = send_message_with_trace_header(SQSBackend.send_message)


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
