"""Runs localstripe for Ferrocart's local cloud and tests, patched so that the async-stripe client
(1.0.0-rc.x) and our payment adapter see what Stripe's test mode would answer.

Usage: python stripe_server.py HOST PORT

Prints READY once it accepts requests, then serves until its standard input closes. The parent (the
local cloud or a test binary) holds the other end of that pipe, so when the parent exits for any
reason the emulator exits too. State is in memory only; `DELETE /_config/data` clears it, saved
idempotency keys included. Needs `localstripe==1.15.10` (pinned in infra/requirements-emulators.txt):
the patches below reach into its internals, so check them again before moving the pin.

localstripe gaps this works around (everything is a patch of its classes or an aiohttp middleware):

  * Persistence: localstripe pickles its store to /tmp/localstripe.pickle after every write and
    loads it at start. Both are disabled, so parallel test runs never share or leak state.
  * Test payment methods: localstripe knows only pm_card_visa, pm_card_visa_chargeDeclined and
    pm_card_chargeCustomerFail; pm_card_chargeDeclined and pm_card_authenticationRequired answer 404.
    TEST_PAYMENT_METHODS maps Stripe's documented ids to their test cards, and a PaymentIntent stores
    the real pm_ object the test id resolves to, as Stripe does.
  * Declines: localstripe declines only three card numbers (not 4000000000000002, which it declines
    on attach only), answers 402 with type invalid_request_error, no decline_code and no
    payment_intent, and its last_payment_error has no `type`. Here a decline is
    402 {"error": {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
    "charge", "payment_intent", "payment_method", ...}}, and last_payment_error carries the same.
  * Response shapes async-stripe cannot read: a PaymentIntent lacks amount_capturable,
    amount_received, confirmation_method and payment_method_types, and sends latest_charge as an
    object; a Charge lacks amount_captured, billing_details and disputed. Patched in the classes'
    _export, so responses, lists and objects inside error bodies all get them.
  * Parameters localstripe rejects: `allowed_payment_method_types` (the create parameter of the API
    version async-stripe 1.0 pins, 2026-09-30, where older versions had `payment_method_types`)
    and cancel's `cancellation_reason`.
  * Wrong-state confirm, capture and cancel answer 400 payment_intent_unexpected_state (localstripe:
    "Bad request", or an HTML 500 for a capture without a charge); unknown ids 404 resource_missing;
    unknown routes and any uncaught exception JSON errors instead of text/HTML, which async-stripe
    would report as a deserialization failure.
  * Capture: localstripe "releases" the uncaptured remainder of a partial capture by refunding it;
    here the charge records amount_captured, as Stripe does.
  * Idempotency-Key (localstripe ignores it): on a POST, the same key with the same parameters
    replays the saved response (header Idempotent-Replayed: true); the same key on another endpoint
    or with other parameters answers 400 idempotency_error; a key whose first request is still
    running answers 409 idempotency_key_in_use. Keys are scoped per secret key and kept until the
    emulator stops (Stripe: 24 h). Responses are saved for 2xx, 402 and 5xx answers; other 4xx are
    not (Stripe saves nothing when a request fails validation before the endpoint runs).

Test control (not in Stripe, which has no way to age an authorization on demand):

  * POST /_test/payment_intents/{id}/expire_authorization (with the secret key, like the API): the
    authorization of a requires_capture PaymentIntent lapses, as a card authorization does after
    about 7 days. Its next capture answers 400 invalid_request_error charge_expired_for_capture,
    and the PaymentIntent is then canceled (cancellation_reason automatic), as Stripe cancels a
    PaymentIntent whose authorization expired. Answers the PaymentIntent; 404 for an unknown id,
    400 payment_intent_unexpected_state for one that is not requires_capture. DELETE /_config/data
    forgets it.
  * POST /_test/payment_intents/{id}/fail_next_capture (with the secret key): the next capture of
    that PaymentIntent answers 500 api_error and captures nothing, as a Stripe outage would. Like
    any 5xx, the answer is saved under the request's Idempotency-Key, so a retry with the same key
    gets the 500 again (Stripe does the same for 24 h).

3-D Secure and webhooks (what Ferrocart's webhook endpoint needs):

  * Card 4000002760003184 (pm_card_authenticationRequired) answers `requires_action` with its
    client_secret. POST /v1/payment_intents/{id}/_authenticate with `client_secret` and
    `success=true|false` (localstripe's own stand-in for the customer's bank challenge; the secret
    key or the publishable key) completes it: true → requires_capture (manual capture), false →
    requires_payment_method with last_payment_error.code payment_intent_authentication_failure.
    A PaymentIntent not in requires_action answers 400 payment_intent_unexpected_state.
  * Webhooks: register an endpoint with POST /_config/webhooks/{id} (form fields `url`, `secret`,
    optional `events`); the local cloud registers its POST /webhooks/stripe at startup with the
    template's StripeWebhookSecret. Events are signed as Stripe signs them and sent once, ~1 s after
    they happen, without retries. Besides localstripe's own (payment_intent.succeeded on capture,
    payment_intent.payment_failed on a decline), this sends what Stripe sends and localstripe does
    not: payment_intent.amount_capturable_updated when a manual-capture PaymentIntent is held (on
    confirm or after a passed challenge), payment_intent.payment_failed after a failed challenge,
    and payment_intent.canceled on cancel.

Refunds and disputes (what Ferrocart's refunds and its charge.* webhooks need):

  * POST /v1/refunds takes `reason` (duplicate, fraudulent, requested_by_customer; localstripe
    answered 400 "Unexpected reason") and refuses more than the charge's captured amount minus its
    refunds with 400 invalid_request_error `charge_already_refunded` (nothing left) or
    `amount_too_large`, as Stripe does (localstripe refunded any amount). A refund names its
    payment_intent even when made by charge. Every refund, ours or one made directly at the
    emulator (the stand-in for the Dashboard), sends `charge.refunded` with the charge, as Stripe
    does. GET /v1/refunds?payment_intent= lists them (localstripe's own).
  * Refunds that do not end at once (localstripe makes every refund `succeeded`): a refund of a
    charge paid with pm_card_pendingRefund (4000000000007726) starts `pending`, as in Stripe's
    test mode. POST /_test/refunds/{id}/end (with the secret key; `status` succeeded, failed or
    canceled, and for a failure `failure_reason`, default `declined`) ends a pending one, as the
    customer's bank does at Stripe some time later, and sends `charge.refund.updated` with the
    refund (Stripe also sends `refund.updated` / `refund.failed` to endpoints that ask for them;
    this sends the one). A failed or canceled refund reads `failure_reason` and no longer counts in
    the charge's `amount_refunded` (localstripe counted every refund), so its amount can be
    refunded again. A `succeeded` refund may end `failed` too, as Stripe's pm_card_refundFail
    does (a refund that succeeds, then fails: the card's account closed). Answers the refund; 400
    for one already failed or canceled, a succeeded one ending other than failed, or an unknown
    status.
  * POST /_test/payment_intents/{id}/fail_next_refund (with the secret key): the next refund of
    that PaymentIntent answers 500 api_error and refunds nothing, as a Stripe outage would. The
    answer is saved under the request's Idempotency-Key, so a retry under the same key gets the
    500 again with `Idempotent-Replayed: true` (Stripe does the same for 24 h); a retry under
    another key is refunded.
  * POST /_test/payment_intents/{id}/dispute (with the secret key; optional `reason`, default
    `fraudulent`): the customer's bank disputes the PaymentIntent's charge for its whole amount.
    The charge reads `disputed: true` and `charge.dispute.created` is sent with the dispute
    (`dp_…`, charge, payment_intent, amount, currency, reason, status `needs_response`). Answers the
    dispute; 404 for an unknown PaymentIntent, 400 payment_intent_unexpected_state for one with no
    successful charge. Stripe has no such call (test cards dispute on their own).
  * POST /_test/disputes/{id}/close (with the secret key; `status` won, lost, warning_closed or
    prevented, default won): the bank decides. The dispute takes that status and
    `charge.dispute.closed` is sent with it, as Stripe does when a dispute closes. The charge is
    left as it is (Stripe debits a dispute's funds apart from refunds; funds_withdrawn and
    funds_reinstated are not sent). Answers the dispute; 404 for an unknown id, 400 for another
    status or a dispute already closed. Stripe has no such call (in test mode, evidence
    `winning_evidence` or `losing_evidence` closes a test dispute on its own).
  * GET /v1/disputes/{id} (Stripe's): the dispute as it is now. localstripe has no disputes.

Not emulated: confirming with a new payment_method, webhooks' Event shape (`pending_webhooks`),
off_session / error_on_requires_action / automatic_payment_methods (400 "Unexpected ...").
"""

import asyncio
import json
import sys
import threading
import time
from urllib.parse import parse_qsl

from aiohttp import web

from localstripe import resources as R
from localstripe.errors import UserError
from localstripe.webhooks import schedule_webhook

# --- no persistence: before the server module is imported and anything is stored -----------------
R.Store.dump_to_disk = lambda self: None
R.Store.try_load_from_disk = lambda self: None

from localstripe import server as S  # noqa: E402  (importing it builds the aiohttp app)

# --- Stripe's test-mode tables (https://docs.stripe.com/testing) ---------------------------------
# PaymentMethod id -> (card number, brand, funding)
TEST_PAYMENT_METHODS = {
    'pm_card_visa': ('4242424242424242', 'visa', 'credit'),
    'pm_card_visa_debit': ('4000056655665556', 'visa', 'debit'),
    'pm_card_mastercard': ('5555555555554444', 'mastercard', 'credit'),
    # The charge is declined.
    'pm_card_chargeDeclined': ('4000000000000002', 'visa', 'credit'),
    'pm_card_visa_chargeDeclined': ('4000000000000002', 'visa', 'credit'),
    'pm_card_chargeDeclinedInsufficientFunds': ('4000000000009995', 'visa', 'credit'),
    'pm_card_chargeDeclinedLostCard': ('4000000000009987', 'visa', 'credit'),
    'pm_card_chargeDeclinedStolenCard': ('4000000000009979', 'visa', 'credit'),
    'pm_card_chargeDeclinedExpiredCard': ('4000000000000069', 'visa', 'credit'),
    'pm_card_chargeDeclinedIncorrectCvc': ('4000000000000127', 'visa', 'credit'),
    'pm_card_chargeDeclinedProcessingError': ('4000000000000119', 'visa', 'credit'),
    'pm_card_chargeCustomerFail': ('4000000000000341', 'visa', 'credit'),
    # 3-D Secure: confirming leaves the PaymentIntent in requires_action.
    'pm_card_authenticationRequired': ('4000002760003184', 'visa', 'credit'),
    'pm_card_threeDSecure2Required': ('4000000000003220', 'visa', 'credit'),
    # Refunds of the charge start `pending` (Stripe ends them later; here POST /_test/refunds/{id}/end).
    'pm_card_pendingRefund': ('4000000000007726', 'visa', 'credit'),
}
PENDING_REFUND_CARDS = ('4000000000007726',)
REFUND_ENDINGS = ('succeeded', 'failed', 'canceled')

# card number -> (code, decline_code, message) of the failed charge
GENERIC_DECLINE = ('card_declined', 'generic_decline', 'Your card was declined.')
DECLINES = {
    '4000000000000002': GENERIC_DECLINE,
    '4000000000000341': GENERIC_DECLINE,
    '4000000000009995': ('card_declined', 'insufficient_funds', 'Your card has insufficient funds.'),
    '4000000000009987': ('card_declined', 'lost_card', 'Your card was declined.'),
    '4000000000009979': ('card_declined', 'stolen_card', 'Your card was declined.'),
    '4000000000000069': ('expired_card', 'expired_card', 'Your card has expired.'),
    '4000000000000127': ('incorrect_cvc', 'incorrect_cvc', "Your card's security code is incorrect."),
    '4000000000000119': ('processing_error', 'processing_error',
                         'An error occurred while processing your card. Try again in a little bit.'),
    # localstripe's own declining numbers keep declining.
    '4000008260003178': GENERIC_DECLINE,
    '4000008400001629': GENERIC_DECLINE,
}

CANCELABLE = ('requires_payment_method', 'requires_capture', 'requires_confirmation', 'requires_action',
              'processing')
CANCELLATION_REASONS = ('abandoned', 'duplicate', 'fraudulent', 'requested_by_customer')


def stripe_error(status, message, type_='invalid_request_error', **fields):
    """A UserError (which localstripe's error middleware renders) with Stripe's error fields."""
    error = UserError(status, message, {k: v for k, v in fields.items() if v is not None})
    error.body['error']['type'] = type_
    return error


def unexpected_state(pi, action, done, allowed):
    return stripe_error(400, 'You cannot %s this PaymentIntent because it has a status of %s. Only a '
                        'PaymentIntent with one of the following statuses may be %s: %s.'
                        % (action, pi.status, done, ', '.join(allowed)),
                        code='payment_intent_unexpected_state', payment_intent=pi._export())


# --- payment methods -----------------------------------------------------------------------------
def _test_payment_method(cls, id):
    spec = TEST_PAYMENT_METHODS.get(id)
    if spec is None:
        return None
    number, brand, funding = spec
    # Each retrieval makes a new stored pm_ object, as localstripe (and Stripe) do for test ids.
    pm = R.PaymentMethod(type='card', card=dict(number=number, exp_month='12',
                                                exp_year=str(time.gmtime().tm_year + 5), cvc='123'))
    pm.card.update(brand=brand, funding=funding, country='US')
    return pm


def _charging_is_declined(self):  # also called unbound with Card (legacy source) objects
    if getattr(self, 'type', None) == 'card':
        return getattr(self, '_card_number', None) in DECLINES
    if getattr(self, 'type', None) == 'sepa_debit':  # localstripe's failing test IBAN
        return self._sepa_debit_iban == 'DE62370400440532013001'
    return False


R.PaymentMethod._try_get_canonical_test_article = classmethod(_test_payment_method)
R.PaymentMethod._charging_is_declined = _charging_is_declined


def resolve_payment_method(id):
    """The stored pm_ id a test id stands for; 404 resource_missing naming the parameter if unknown."""
    if not isinstance(id, str):
        return id
    try:
        pm = R.PaymentMethod._api_retrieve(id)
    except UserError:
        raise stripe_error(404, "No such PaymentMethod: '%s'" % id, code='resource_missing',
                           param='payment_method')
    return pm.id


# --- charges -------------------------------------------------------------------------------------
def _set_auth_failure(self):
    pm = R.PaymentMethod._api_retrieve(self.payment_method)
    code, decline_code, message = DECLINES.get(getattr(pm, '_card_number', None), GENERIC_DECLINE)
    self.status = 'failed'
    self.failure_code = code
    self.failure_message = message
    self._decline_code = decline_code


def _raise_failure(self):
    pi = R.PaymentIntent._api_retrieve(self.payment_intent)._export() if self.payment_intent else None
    raise stripe_error(402, self.failure_message, 'card_error', code=self.failure_code,
                       decline_code=self._decline_code, charge=self.id, payment_intent=pi,
                       payment_method=R.PaymentMethod._api_retrieve(self.payment_method)._export(),
                       doc_url='https://stripe.com/docs/error-codes/' + self.failure_code.replace('_', '-'))


def _charge_capture(self, amount, on_success=None):
    amount = self.amount if amount is None else R.try_convert_to_int(amount)
    if self.captured or self.status != 'succeeded':
        raise stripe_error(400, 'Charge %s has already been captured.' % self.id, code='charge_already_captured')
    if not (type(amount) is int and 0 < amount <= self.amount):
        raise stripe_error(400, 'The amount to capture must be a positive integer no greater than the '
                           'amount capturable (%d).' % self.amount, code='amount_too_large',
                           param='amount_to_capture')

    def captured():
        self.captured = True
        self._amount_captured = amount
        if on_success:
            on_success()

    self._trigger_payment(on_success=captured)


def amount_captured(charge):
    if not charge.captured or charge.status != 'succeeded':
        return 0
    return getattr(charge, '_amount_captured', charge.amount)  # automatic capture takes it all


_charge_export = R.Charge._export


def _charge_export_for_stripe(self, expand=None):
    obj = _charge_export(self, expand=expand)
    obj['amount_captured'] = amount_captured(self)
    obj['refunded'] = obj['amount_captured'] > 0 and obj['amount_refunded'] >= obj['amount_captured']
    obj.setdefault('billing_details', {'address': None, 'email': None, 'name': None, 'phone': None})
    obj.setdefault('disputed', False)
    return obj


R.Charge._set_auth_failure = _set_auth_failure
R.Charge._raise_failure = _raise_failure
R.Charge._capture = _charge_capture
R.Charge._export = _charge_export_for_stripe


# --- payment intents -----------------------------------------------------------------------------
_pi_init = R.PaymentIntent.__init__


def _pi_init_for_stripe(self, confirmation_method=None, payment_method_types=None,
                        allowed_payment_method_types=None, **data):
    # allowed_payment_method_types (the API version async-stripe 1.0 pins) or payment_method_types
    # (older versions): either restricts the PaymentIntent to those types.
    allowed = allowed_payment_method_types or payment_method_types
    _pi_init(self, **data)
    self.confirmation_method = confirmation_method or 'automatic'
    self.payment_method_types = allowed if isinstance(allowed, list) else ['card']
    self.canceled_at = None
    self.cancellation_reason = None


_pi_create = R.PaymentIntent._api_create.__func__
_pi_confirm = R.PaymentIntent._api_confirm.__func__
_pi_cancel = R.PaymentIntent._api_cancel.__func__
_pi_capture = R.PaymentIntent._api_capture.__func__
_pi_authenticate = R.PaymentIntent._api_authenticate.__func__


def _pi_create_for_stripe(cls, **data):
    if 'payment_method' in data:
        data['payment_method'] = resolve_payment_method(data['payment_method'])
    if isinstance(data.get('currency'), str):
        data['currency'] = data['currency'].lower()  # Stripe answers lower-case ISO codes
    return _pi_create(cls, **data)


def announce(event_type, pi):
    """Sends the webhook Stripe sends for `pi` to the registered endpoints (localstripe: ~1 s later)."""
    schedule_webhook(R.Event(event_type, pi))


def announce_outcome(pi):
    """What Stripe announces once a confirmation or a 3-D Secure challenge has settled: a manual
    capture's hold (localstripe announces nothing for it), or a failed authentication (localstripe
    is silent there too). A decline is announced by localstripe itself."""
    if pi.status == 'requires_capture':
        announce('payment_intent.amount_capturable_updated', pi)
    elif pi.status == 'requires_payment_method' and pi._authentication_failed:
        announce('payment_intent.payment_failed', pi)


def _pi_confirm_for_stripe(cls, id, **kwargs):
    pi = cls._api_retrieve(id)
    if pi.status != 'requires_confirmation':
        raise unexpected_state(pi, 'confirm', 'confirmed', ['requires_confirmation'])
    pi = _pi_confirm(cls, id, **kwargs)
    announce_outcome(pi)
    return pi


def _pi_authenticate_for_stripe(cls, id, **kwargs):
    pi = cls._api_retrieve(id)
    if pi.status != 'requires_action':
        raise unexpected_state(pi, 'authenticate', 'authenticated', ['requires_action'])
    pi = _pi_authenticate(cls, id, **kwargs)
    announce_outcome(pi)
    return pi


def _pi_cancel_for_stripe(cls, id, cancellation_reason=None, **kwargs):
    if cancellation_reason is not None and cancellation_reason not in CANCELLATION_REASONS:
        raise stripe_error(400, 'Invalid cancellation_reason: must be one of %s'
                           % ', '.join(CANCELLATION_REASONS), param='cancellation_reason')
    pi = cls._api_retrieve(id)
    if pi.status not in CANCELABLE:
        raise unexpected_state(pi, 'cancel', 'canceled', CANCELABLE)
    pi = _pi_cancel(cls, id, **kwargs)
    pi.canceled_at = int(time.time())
    pi.cancellation_reason = cancellation_reason
    announce('payment_intent.canceled', pi)
    return pi


expired_authorizations = set()  # PaymentIntent ids whose next capture is refused (test control)
failing_captures = set()  # PaymentIntent ids whose next capture answers 500 (test control)


def _pi_capture_for_stripe(cls, id, **kwargs):
    pi = cls._api_retrieve(id)
    if pi.status != 'requires_capture':
        raise unexpected_state(pi, 'capture', 'captured', ['requires_capture'])
    if id in failing_captures:
        failing_captures.discard(id)
        raise stripe_error(500, 'An error occurred with our connection to Stripe.', type_='api_error')
    if id in expired_authorizations:
        expired_authorizations.discard(id)
        pi = _pi_cancel(cls, id)
        pi.canceled_at = int(time.time())
        pi.cancellation_reason = 'automatic'
        raise stripe_error(400, 'The charge has expired and can no longer be captured.',
                           code='charge_expired_for_capture', payment_intent=pi._export())
    return _pi_capture(cls, id, **kwargs)


async def fail_next_capture(request):
    """POST /_test/payment_intents/{id}/fail_next_capture: see the module's test controls."""
    pi = R.PaymentIntent._api_retrieve(request.match_info['id'])
    failing_captures.add(pi.id)
    return S.json_response(pi._export())


async def expire_authorization(request):
    """POST /_test/payment_intents/{id}/expire_authorization: see the module's test controls."""
    pi = R.PaymentIntent._api_retrieve(request.match_info['id'])
    if pi.status != 'requires_capture':
        raise unexpected_state(pi, 'expire the authorization of', 'expired', ['requires_capture'])
    expired_authorizations.add(pi.id)
    return S.json_response(pi._export())


_pi_export = R.PaymentIntent._export


def _pi_export_for_stripe(self, expand=None):
    obj = _pi_export(self, expand=expand)
    charge = self.latest_charge
    obj.pop('charges', None)  # removed from the API in 2022-11-15
    if charge is not None and not any(path.split('.')[0] == 'latest_charge' for path in expand or []):
        obj['latest_charge'] = charge.id  # an id unless expanded, as Stripe sends it
    obj['amount_capturable'] = self.amount if obj['status'] == 'requires_capture' else 0
    obj['amount_received'] = amount_captured(charge) if charge is not None else 0
    obj.setdefault('confirmation_method', 'automatic')
    obj.setdefault('payment_method_types', ['card'])
    obj.setdefault('canceled_at', None)
    obj.setdefault('cancellation_reason', None)
    error = obj.get('last_payment_error')
    if error:
        error = dict(error)
        if charge is not None and charge.status == 'failed':
            error['type'] = 'card_error'
            error['decline_code'] = getattr(charge, '_decline_code', None)
            error['payment_method'] = R.PaymentMethod._api_retrieve(charge.payment_method)._export()
        else:
            error['type'] = 'invalid_request_error'
        obj['last_payment_error'] = error
    return obj


R.PaymentIntent.__init__ = _pi_init_for_stripe
R.PaymentIntent._api_create = classmethod(_pi_create_for_stripe)
R.PaymentIntent._api_confirm = classmethod(_pi_confirm_for_stripe)
R.PaymentIntent._api_cancel = classmethod(_pi_cancel_for_stripe)
R.PaymentIntent._api_capture = classmethod(_pi_capture_for_stripe)
R.PaymentIntent._api_authenticate = classmethod(_pi_authenticate_for_stripe)
R.PaymentIntent._export = _pi_export_for_stripe

# server.py bound the original classmethods into its routes when it was imported; these routes are
# answered by the patched ones instead (see route_overrides below).
ROUTE_OVERRIDES = {
    ('POST', url): S.api_extra(func, url)
    for url, func in (('/v1/payment_intents/{id}/confirm', R.PaymentIntent._api_confirm),
                      ('/v1/payment_intents/{id}/cancel', R.PaymentIntent._api_cancel),
                      ('/v1/payment_intents/{id}/capture', R.PaymentIntent._api_capture),
                      ('/v1/payment_intents/{id}/_authenticate', R.PaymentIntent._api_authenticate))
}


@web.middleware
async def route_overrides(request, handler):
    """Innermost middleware: after authentication, answers the overridden routes itself."""
    resource = request.match_info.route.resource
    override = ROUTE_OVERRIDES.get((request.method, resource.canonical if resource else None))
    return await (override or handler)(request)


# --- refunds and disputes ------------------------------------------------------------------------
REFUND_REASONS = ('duplicate', 'fraudulent', 'requested_by_customer')
_refund_init = R.Refund.__init__


failing_refunds = set()  # PaymentIntent ids whose next refund answers 500 (test control)


def _refund_init_for_stripe(self, charge=None, payment_intent=None, amount=None, metadata=None, reason=None,
                            **kwargs):
    if isinstance(payment_intent, str) and payment_intent in failing_refunds:
        failing_refunds.discard(payment_intent)
        raise stripe_error(500, 'An error occurred with our connection to Stripe.', type_='api_error')
    if reason is not None and reason not in REFUND_REASONS:
        raise stripe_error(400, 'Invalid reason: must be one of %s' % ', '.join(REFUND_REASONS), param='reason')
    if payment_intent is not None and isinstance(payment_intent, str):
        charge_obj = R.PaymentIntent._api_retrieve(payment_intent).latest_charge
    elif isinstance(charge, str):
        charge_obj = R.Charge._api_retrieve(charge)
    else:
        charge_obj = None
    if charge_obj is not None:
        left = amount_captured(charge_obj) - charge_obj.amount_refunded
        wanted = R.try_convert_to_int(amount) if amount is not None else left
        if left <= 0:
            raise stripe_error(400, 'Charge %s has already been refunded.' % charge_obj.id,
                               code='charge_already_refunded', param='amount')
        if type(wanted) is int and wanted > left:
            raise stripe_error(400, 'Refund amount (%d) is greater than unrefunded amount on charge (%d)'
                               % (wanted, left), code='amount_too_large', param='amount')
        if amount is None:
            amount = left
    _refund_init(self, charge=charge, payment_intent=payment_intent, amount=amount, metadata=metadata, **kwargs)
    self.reason = reason
    self.failure_reason = None
    paid_with = charge_obj.payment_method if charge_obj is not None else None
    if paid_with and getattr(R.PaymentMethod._api_retrieve(paid_with), '_card_number', None) in PENDING_REFUND_CARDS:
        self.status = 'pending'
    if self.payment_intent is None and charge_obj is not None:
        self.payment_intent = charge_obj.payment_intent
    if charge_obj is not None:
        schedule_webhook(R.Event('charge.refunded', charge_obj))


R.Refund.__init__ = _refund_init_for_stripe
# A failed or canceled refund gave its amount back to the charge.
R.Charge.amount_refunded = property(
    lambda self: sum(r.amount for r in self.refunds._list if r.status not in ('failed', 'canceled')))


async def end_refund(request):
    """POST /_test/refunds/{id}/end: see the module's refunds and disputes."""
    refund = R.Refund._api_retrieve(request.match_info['id'])
    form = dict(parse_qsl((await request.read()).decode('utf-8', 'replace')))
    status = form.get('status')
    late_failure = refund.status == 'succeeded' and status == 'failed'
    if not late_failure and (refund.status != 'pending' or status not in REFUND_ENDINGS):
        raise stripe_error(400, 'Refund %s is %s; it can end %s while pending, or failed once succeeded.'
                           % (refund.id, refund.status, '|'.join(REFUND_ENDINGS)), param='status')
    refund.status = status
    if status != 'succeeded':
        refund.failure_reason = form.get('failure_reason') or 'declined'
    schedule_webhook(R.Event('charge.refund.updated', refund))
    return S.json_response(refund._export())


async def fail_next_refund(request):
    """POST /_test/payment_intents/{id}/fail_next_refund: see the module's refunds and disputes."""
    pi = R.PaymentIntent._api_retrieve(request.match_info['id'])
    failing_refunds.add(pi.id)
    return S.json_response(pi._export())


class Dispute(R.StripeObject):
    object = 'dispute'
    _id_prefix = 'dp_'

    def __init__(self, charge, reason):
        super().__init__()
        self.charge = charge.id
        self.payment_intent = charge.payment_intent
        self.amount = amount_captured(charge) or charge.amount
        self.currency = charge.currency
        self.reason = reason
        self.status = 'needs_response'
        self.metadata = {}


CLOSED_DISPUTE = ('won', 'lost', 'warning_closed', 'prevented')


async def close_dispute(request):
    """POST /_test/disputes/{id}/close: see the module's refunds and disputes."""
    made = Dispute._api_retrieve(request.match_info['id'])
    form = dict(parse_qsl((await request.read()).decode('utf-8', 'replace')))
    status = form.get('status') or 'won'
    if status not in CLOSED_DISPUTE:
        raise stripe_error(400, 'Invalid status: must be one of %s' % ', '.join(CLOSED_DISPUTE), param='status')
    if made.status in CLOSED_DISPUTE:
        raise stripe_error(400, 'Dispute %s is already closed (%s).' % (made.id, made.status))
    made.status = status
    schedule_webhook(R.Event('charge.dispute.closed', made))
    return S.json_response(made._export())


async def dispute(request):
    """POST /_test/payment_intents/{id}/dispute: see the module's refunds and disputes."""
    pi = R.PaymentIntent._api_retrieve(request.match_info['id'])
    charge = pi.latest_charge
    if charge is None or charge.status != 'succeeded':
        raise unexpected_state(pi, 'dispute', 'disputed', ['succeeded', 'requires_capture'])
    form = dict(parse_qsl((await request.read()).decode('utf-8', 'replace')))
    made = Dispute(charge, form.get('reason') or 'fraudulent')
    charge.disputed = True
    schedule_webhook(R.Event('charge.dispute.created', made))
    return S.json_response(made._export())


# --- idempotency keys and error shapes -----------------------------------------------------------
saved = {}  # (Authorization header, key) -> (endpoint, fingerprint, status, body bytes)
in_flight = set()


def error_response(status, **error):
    return S.json_response({'error': error}, status=status)


async def fingerprint(request):
    raw = await request.read()  # aiohttp caches the body: localstripe reads the same bytes again
    if request.content_type == 'application/json':
        try:
            return json.dumps(json.loads(raw or b'null'), sort_keys=True)
        except ValueError:
            pass
    return repr(sorted(parse_qsl(raw.decode('utf-8', 'replace'), keep_blank_values=True)))


@web.middleware
async def stripe_compatibility(request, handler):
    """Outermost middleware: idempotency keys, and JSON errors whatever went wrong inside."""
    if request.method == 'DELETE' and request.path == '/_config/data':
        saved.clear()
        expired_authorizations.clear()
        failing_captures.clear()
        failing_refunds.clear()
    key = request.headers.get('Idempotency-Key')
    if request.method != 'POST' or not key or not request.path.startswith('/v1/'):
        return await answer(request, handler)

    scope = (request.headers.get('Authorization', ''), key)
    endpoint = request.method + ' ' + request.path
    params = await fingerprint(request)
    if scope in in_flight:
        return error_response(409, type='idempotency_error', code='idempotency_key_in_use',
                              message='There is currently another in-progress request using this '
                              'Idempotency-Key (%s). Please try again later.' % key)
    if scope in saved:
        saved_endpoint, saved_params, status, body = saved[scope]
        if saved_endpoint != endpoint:
            return error_response(400, type='idempotency_error', message='Keys for idempotent requests '
                                  'can only be used for the same endpoint they were first used for (%s). '
                                  'Try using a key other than `%s` if you meant to execute a different '
                                  'request.' % (saved_endpoint, key))
        if saved_params != params:
            return error_response(400, type='idempotency_error', message='Keys for idempotent requests '
                                  'can only be used with the same parameters they were first used with. '
                                  'Try using a key other than `%s` if you meant to execute a different '
                                  'request.' % key)
        return web.Response(body=body, status=status, content_type='application/json',
                            headers={'Idempotent-Replayed': 'true', 'Idempotency-Key': key})

    in_flight.add(scope)
    try:
        response = await answer(request, handler)
    finally:
        in_flight.discard(scope)
    if 200 <= response.status < 300 or response.status == 402 or response.status >= 500:
        saved[scope] = (endpoint, params, response.status, response.body)
    response.headers['Idempotency-Key'] = key
    return response


async def answer(request, handler):
    try:
        response = await handler(request)
    except web.HTTPException as e:  # no such route or method: aiohttp would answer text/plain
        return error_response(e.status, type='invalid_request_error',
                              message='Unrecognized request URL (%s: %s).' % (request.method, request.path))
    except Exception as e:  # a localstripe crash: answer as Stripe would, not with aiohttp's HTML page
        return error_response(500, type='api_error', message='localstripe: %s: %s' % (type(e).__name__, e))
    if response.status == 404 and response.content_type == 'application/json':
        try:
            error = json.loads(response.body)['error']
        except (ValueError, KeyError, TypeError):
            return response
        if error.get('message') == 'Not Found':  # localstripe's bare 404 for an unknown id
            parts = request.path.strip('/').split('/')  # v1/<objects>/<id>[/<action>]
            error['code'] = 'resource_missing'
            if len(parts) >= 3:
                error['message'] = "No such %s: '%s'" % (parts[1].rstrip('s'), parts[2])
                error['param'] = 'id'
            return error_response(404, **error)
    return response


S.app.middlewares.insert(0, stripe_compatibility)
S.app.middlewares.append(route_overrides)
S.app.router.add_post('/_test/payment_intents/{id}/expire_authorization', expire_authorization)
S.app.router.add_post('/_test/payment_intents/{id}/fail_next_capture', fail_next_capture)
S.app.router.add_post('/_test/payment_intents/{id}/dispute', dispute)
S.app.router.add_post('/_test/disputes/{id}/close', close_dispute)
S.app.router.add_get('/v1/disputes/{id}', S.api_retrieve(Dispute, '/v1/disputes/{id}'))
S.app.router.add_post('/_test/payment_intents/{id}/fail_next_refund', fail_next_refund)
S.app.router.add_post('/_test/refunds/{id}/end', end_refund)


# --- run -----------------------------------------------------------------------------------------
async def serve(host, port):
    runner = web.AppRunner(S.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()

    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(65536):
                pass
        finally:
            loop.call_soon_threadsafe(stdin_closed.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print('READY', flush=True)
    await stdin_closed.wait()
    await runner.cleanup()


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    asyncio.run(serve(host, port))


if __name__ == '__main__':
    main()
