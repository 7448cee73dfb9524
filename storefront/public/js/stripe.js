// Deployed card payments with Stripe.js (config.json payments.mode "stripe"), loaded only then.
//
// Stripe.js, from https://js.stripe.com/v3/, is the one script the storefront loads from
// another host (Stripe requires it be loaded from there; the Content-Security-Policy allows it
// and Stripe's card frames). The card number goes from Stripe's frame to Stripe; the shop's API
// only ever receives the PaymentMethod's `pm_…` id, as it does the test cards' ids locally.
//
// Untested here: the browser tests run without a network, so this path has never run against
// real Stripe in this repository. It is kept this small so that reading it is the check.

let loaded = null;

/** The Stripe object for `key`, loading Stripe.js once. */
function stripeFor(key) {
  loaded ??= new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = 'https://js.stripe.com/v3/';
    script.onload = () => resolve(globalThis.Stripe(key));
    script.onerror = () => { loaded = null; reject(new Error('Stripe.js could not be loaded: check your connection and try again.')); };
    document.head.append(script);
  });
  return loaded;
}

/**
 * Mounts Stripe's Card Element in `slot` (without its postcode: checkout asks for the address).
 * Resolves to `paymentMethod(billing)`, which creates the PaymentMethod (once per card entered)
 * and resolves to its id. `onChange(message)` hears the card's validation messages.
 */
export async function cardField(slot, key, onChange) {
  const stripe = await stripeFor(key);
  const card = stripe.elements().create('card', { hidePostalCode: true });
  let created = null;
  card.on('change', (event) => { created = null; onChange(event.error?.message ?? ''); });
  card.mount(slot);
  return async (billing) => {
    if (created) return created;
    const { paymentMethod, error } = await stripe.createPaymentMethod({ type: 'card', card, billing_details: billing });
    if (error) throw new Error(error.message);
    created = paymentMethod.id;
    return created;
  };
}

/**
 * 3-D Secure for an order left `requires_action`: Stripe.js shows the bank's page over the shop
 * and resolves when the shopper is done. The API hears the outcome from Stripe's webhook; the
 * order page's polling then shows it.
 */
export async function authenticate(key, clientSecret) {
  const stripe = await stripeFor(key);
  const { error } = await stripe.handleNextAction({ clientSecret });
  if (error) throw new Error(error.message);
}
