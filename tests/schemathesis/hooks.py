"""Schemathesis hooks for `make api-fuzz` (loaded by tests/schemathesis/run.py's config).

Stripe signs its webhooks, and payment checks the signature before it reads anything of the body,
so unsigned generated bodies would all stop at the 400. This signs most generated bodies of
`POST /webhooks/stripe` with the local cloud's endpoint secret (`whsec_local_ferrocart`, the one
`localcloud` stores for the Stripe emulator), as Stripe would, so the fuzzing reaches the event
parsing and handling behind it; the rest go unsigned and must be refused.
"""

import hashlib
import hmac
import json
import time

import schemathesis

WEBHOOK_SECRET = b"whsec_local_ferrocart"


@schemathesis.hook
def before_call(context, case, **kwargs):
    if case.operation.path != "/webhooks/stripe" or case.media_type not in (None, "application/json"):
        return
    if type(case.body).__name__ == "NotSet":
        return  # a case without a body: nothing to sign
    # Exactly the bytes that go out: a bytes body is sent as it is.
    raw = json.dumps(case.body).encode() if not isinstance(case.body, bytes) else case.body
    if hashlib.sha256(raw).digest()[0] % 5 == 0:
        return  # about one in five stays unsigned
    case.body = raw
    stamp = str(int(time.time()))
    signature = hmac.new(WEBHOOK_SECRET, f"{stamp}.".encode() + raw, hashlib.sha256).hexdigest()
    case.headers = {**(case.headers or {}), "Stripe-Signature": f"t={stamp},v1={signature}"}
