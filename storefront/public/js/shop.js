// The shopper's pages: home, category, search, product, cart, checkout, orders, sign-in.

import { ApiError, call, cart, cognito, devSignIn, forgetCart, get, query, session, setQuantity, settings } from './api.js';
import { announce, field, fields, fill, h, money, showProblem, when } from './dom.js';

const PAGE = 12;

const title = (slug) => slug.charAt(0).toUpperCase() + slug.slice(1).replace(/-/g, ' ');
const heading = (text, ...rest) => h('h1', { tabindex: '-1' }, text, ...rest);
const loading = (main, text) => fill(main, heading(text), h('p', { class: 'muted' }, 'Loading…'));

/** A product's picture: the first image where images are on, else a drawn tile. */
function picture(product) {
  if (settings().images && product.images?.[0]) {
    return h('img', { class: 'tile', src: product.images[0], alt: '', loading: 'lazy', width: 320, height: 240 });
  }
  return h('div', { class: `tile hue${product.id.charCodeAt(product.id.length - 1) % 6}`, 'aria-hidden': 'true' },
    product.title.split(/\s+/).slice(0, 2).map((w) => w[0]).join(''));
}

function priceRange(product) {
  const amounts = product.variants.map((v) => v.price.amount);
  const low = Math.min(...amounts);
  const from = Math.max(...amounts) > low ? 'from ' : '';
  return `${from}${money({ amount: low, currency: product.variants[0].price.currency })}`;
}

function grid(products) {
  return h('ul', { class: 'grid' }, products.map((p) =>
    h('li', { class: 'card' },
      picture(p),
      h('h2', {}, h('a', { href: `#/p/${p.id}` }, p.title)),
      h('p', { class: 'price' }, priceRange(p)))));
}

/** A page of GET /products, following empty search pages (docs: "keep following the cursor"). */
async function page(params) {
  let result = await get(`/products${query({ ...params, limit: PAGE })}`);
  for (let hops = 0; result.items.length === 0 && result.next_cursor && hops < 5; hops += 1) {
    result = await get(`/products${query({ ...params, limit: PAGE, cursor: result.next_cursor })}`);
  }
  return result;
}

function pager(base, params, result) {
  const links = [];
  if (params.get('cursor')) links.push(h('a', { href: base }, 'First page'));
  if (result.next_cursor) {
    const sep = base.includes('?') ? '&' : '?';
    links.push(h('a', { href: `${base}${sep}cursor=${encodeURIComponent(result.next_cursor)}`, rel: 'next' }, 'Next page'));
  }
  return links.length ? h('nav', { class: 'pager', 'aria-label': 'Pages' }, links) : null;
}

export async function home({ main }) {
  loading(main, 'Shop by category');
  const [categories, latest] = await Promise.all([get('/categories'), get(`/products${query({ limit: 8 })}`)]);
  fill(main,
    heading('Shop by category'),
    categories.items.length
      ? h('ul', { class: 'categories' }, categories.items.map((c) =>
        h('li', {}, h('a', { href: `#/c/${c.slug}` }, title(c.slug), h('span', { class: 'count' }, ` ${c.product_count} products`)))))
      : h('p', {}, 'Nothing is on sale yet. Run ', h('code', {}, 'make seed'), ' to load the demo catalog.'),
    latest.items.length ? [h('h2', {}, 'New in'), grid(latest.items)] : null);
}

export async function category({ main }, params, slug) {
  loading(main, title(slug));
  const result = await page({ category: slug, cursor: params.get('cursor') });
  fill(main,
    heading(title(slug)),
    result.items.length ? grid(result.items) : h('p', {}, 'No products in this category.'),
    pager(`#/c/${slug}`, params, result));
}

export async function search({ main }, params) {
  const q = params.get('q') ?? '';
  document.getElementById('q').value = q;
  loading(main, `Search: ${q}`);
  const result = await page({ q, cursor: params.get('cursor') });
  fill(main,
    heading(`Results for “${q}”`),
    result.items.length ? grid(result.items) : h('p', {}, `No products match “${q}”. Every word must match a title, category or option.`),
    pager(`#/search?q=${encodeURIComponent(q)}`, params, result));
  announce(`${result.items.length} products found`);
}

export async function product({ main }, _params, id) {
  loading(main, 'Product');
  let item;
  try { item = await get(`/products/${id}`); } catch (error) {
    if (error.status !== 404) throw error;
    fill(main, heading('Product not found'), h('p', {}, 'It may have been taken off sale. ', h('a', { href: '#/' }, 'Back to the shop')));
    return;
  }
  const stock = await get(`/availability?skus=${item.variants.map((v) => encodeURIComponent(v.sku)).join(',')}`);
  const available = new Map(stock.items.map((s) => [s.sku, s.available]));
  const chosen = { ...item.variants[0].options };
  const price = h('p', { class: 'price big' });
  const sku = h('p', { class: 'muted' });
  const availability = h('p', { class: 'stock', id: 'availability' });
  const quantity = h('input', { id: 'quantity', name: 'quantity', type: 'number', min: 1, max: 99, value: 1, inputmode: 'numeric' });
  const add = h('button', { type: 'submit', class: 'primary' }, 'Add to cart');
  const status = h('div', { role: 'status', class: 'status' });

  const variant = () => item.variants.find((v) => item.options.every((o) => v.options[o.name] === chosen[o.name]));
  const update = () => {
    const v = variant();
    if (!v) {
      fill(price, '—'); fill(sku, ''); fill(availability, 'This combination is not made.');
      add.disabled = true;
      return;
    }
    const units = available.get(v.sku) ?? 0;
    fill(price, money(v.price));
    fill(sku, `SKU ${v.sku}`);
    fill(availability, units > 0 ? `${units} in stock` : 'Sold out');
    availability.className = units > 0 ? 'stock in' : 'stock out';
    add.disabled = units === 0;
  };

  const pickers = item.options.map((option, index) => h('fieldset', { class: 'picker' },
    h('legend', {}, title(option.name)),
    option.values.map((value) => h('label', { class: 'choice' },
      h('input', {
        type: 'radio', name: `option-${index}`, value, checked: chosen[option.name] === value,
        onchange: () => { chosen[option.name] = value; update(); },
      }),
      h('span', {}, value)))));

  const form = h('form', { class: 'buy', novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    const v = variant();
    if (!v) return;
    if (!session()) { location.hash = `#/sign-in?next=${encodeURIComponent(location.hash)}`; return; }
    add.disabled = true;
    try {
      const mine = await cart();
      const had = mine.lines.find((l) => l.sku === v.sku)?.quantity ?? 0;
      const wanted = Math.min(99, had + Math.max(1, Number.parseInt(quantity.value, 10) || 1));
      const updated = await setQuantity(mine.id, v.sku, wanted);
      fill(status, h('p', { class: 'ok' }, `Added to your cart (${updated.item_count} items). `, h('a', { href: '#/cart' }, 'View cart')));
    } catch (error) {
      fill(status, h('p', { class: 'alert', role: 'alert' }, error.problem?.errors?.[0]?.detail ?? error.message));
    } finally { update(); }
  } },
  pickers,
  h('div', { class: 'field short' }, h('label', { for: 'quantity' }, 'Quantity'), quantity),
  add, status);

  fill(main, h('article', { class: 'product' },
    picture(item),
    h('div', {},
      h('p', { class: 'crumbs' }, h('a', { href: `#/c/${item.category}` }, title(item.category))),
      heading(item.title), price, availability, sku,
      item.description ? h('p', {}, item.description) : null,
      form)));
  update();
}

function needSession(main, what) {
  if (session()) return false;
  fill(main, heading(what), h('p', {}, h('a', { href: `#/sign-in?next=${encodeURIComponent(location.hash)}` }, 'Sign in'), ` to see your ${what.toLowerCase()}.`));
  return true;
}

export async function cartPage(view) {
  const { main } = view;
  if (needSession(main, 'Cart')) return;
  loading(main, 'Your cart');
  const status = h('div', { role: 'status', class: 'status' });
  const draw = (c) => {
    if (!view.live()) return;
    const blocked = c.lines.some((l) => !l.available);
    fill(main, heading('Your cart'), status,
      c.lines.length === 0 ? h('p', {}, 'Your cart is empty. ', h('a', { href: '#/' }, 'Keep shopping')) : [
        h('table', { class: 'lines' },
          h('caption', { class: 'visually-hidden' }, 'Items in your cart'),
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Item'), h('th', { scope: 'col' }, 'Price'), h('th', { scope: 'col' }, 'Quantity'), h('th', { scope: 'col' }, 'Total'), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
          h('tbody', {}, c.lines.map((line) => {
            const name = line.title ?? line.sku;
            return h('tr', {},
              h('th', { scope: 'row' }, name, h('br'), h('small', { class: 'muted' }, line.sku), line.available ? null : h('p', { class: 'alert' }, 'No longer sold: remove it to check out.')),
              h('td', {}, money(line.unit_price)),
              h('td', {}, h('input', {
                type: 'number', min: 0, max: 99, value: line.quantity, class: 'qty', 'aria-label': `Quantity of ${name}`,
                onchange: (event) => change(c.id, line.sku, Number.parseInt(event.target.value, 10)),
              })),
              h('td', {}, money(line.line_total)),
              h('td', {}, h('button', { type: 'button', class: 'link', 'aria-label': `Remove ${name}`, onclick: () => change(c.id, line.sku, 0) }, 'Remove')));
          }))),
        h('p', { class: 'total' }, `Subtotal (${c.item_count} items): `, h('strong', { id: 'subtotal' }, money(c.subtotal))),
        h('p', { class: 'muted' }, 'Shipping, discounts and tax are added at checkout.'),
        blocked ? h('p', { class: 'alert' }, 'Remove the items no longer sold to check out.') : h('a', { class: 'button primary', href: '#/checkout' }, 'Check out'),
      ]);
  };
  const change = async (cartId, sku, quantity) => {
    if (!Number.isInteger(quantity) || quantity < 0 || quantity > 99) {
      fill(status, h('p', { class: 'alert', role: 'alert' }, 'Enter a quantity from 0 to 99.'));
      return;
    }
    try {
      const updated = quantity === 0
        ? (await call('DELETE', `/carts/${cartId}/items/${encodeURIComponent(sku)}`)).data
        : await setQuantity(cartId, sku, quantity);
      draw(updated);
      announce(quantity === 0 ? 'Removed from your cart' : `Quantity set to ${quantity}`);
    } catch (error) {
      fill(status, h('p', { class: 'alert', role: 'alert' }, error.problem?.errors?.[0]?.detail ?? error.message));
    }
  };
  draw(await cart());
}

const CARDS = [
  ['pm_card_visa', 'Visa 4242 — succeeds'],
  ['pm_card_mastercard', 'Mastercard 4444 — succeeds'],
  ['pm_card_chargeDeclined', 'Visa 0002 — declined'],
  ['pm_card_chargeDeclinedInsufficientFunds', 'Visa 9995 — insufficient funds'],
  ['pm_card_authenticationRequired', 'Visa 3184 — asks for 3-D Secure'],
];
const COUNTRIES = [['US', 'United States'], ['GB', 'United Kingdom'], ['DE', 'Germany'], ['FR', 'France'], ['NL', 'Netherlands'], ['IE', 'Ireland'], ['ES', 'Spain'], ['IT', 'Italy'], ['CA', 'Canada']];

export async function checkout(view) {
  const { main } = view;
  if (needSession(main, 'Checkout')) return;
  loading(main, 'Checkout');
  const [mine, methods] = await Promise.all([cart(), get('/shipping-methods')]);
  if (!view.live()) return;
  if (mine.lines.length === 0) {
    fill(main, heading('Checkout'), h('p', {}, 'Your cart is empty. ', h('a', { href: '#/' }, 'Keep shopping')));
    return;
  }
  const currency = mine.subtotal?.currency ?? 'USD';
  // One key per order the shopper means to place; a retry of the same submit reuses it.
  const key = crypto.randomUUID();
  const summary = h('div', { class: 'summary-errors' });
  const payments = settings().payments ?? {};
  // Stripe mode: the card field's PaymentMethod maker, once Stripe.js is loaded and mounted.
  let stripeCard = null;
  const cardProblem = h('p', { class: 'card-problem', id: 'card-problem', role: 'alert' });
  const shipping = methods.items.filter((m) => m.rates[currency] !== undefined);
  const radio = (name, value, label, pointer, checked) => h('label', { class: 'choice' },
    h('input', { type: 'radio', name, value, checked, 'data-pointer': pointer }), h('span', {}, label));

  const form = h('form', { class: 'checkout', novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    const f = fields(form);
    const address = { name: f.name, line1: f.line1, line2: f.line2 || undefined, city: f.city, region: f.region || undefined, postal_code: f.postal_code, country: f.country };
    const body = { cart_id: mine.id, email: f.email, shipping_address: address, shipping_method: f.shipping_method, payment_method: f.payment_method };
    if (f.promo_code) body.promo_code = f.promo_code;
    submit.disabled = true;
    try {
      if (stripeCard) {
        // Stripe.js turns the card into a PaymentMethod; only its pm_… id goes to the API.
        try {
          body.payment_method = await (await stripeCard)({ name: f.name, email: f.email, address: { line1: f.line1, city: f.city, postal_code: f.postal_code, country: f.country } });
        } catch (error) {
          fill(cardProblem, error.message);
          submit.disabled = false;
          return;
        }
      }
      const { data } = await call('POST', '/checkout', { body, headers: { 'idempotency-key': key } });
      forgetCart();
      location.hash = `#/orders/${data.order_id}`;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      showProblem(form, summary, error);
      submit.disabled = false;
    }
  } },
  summary,
  h('fieldset', {}, h('legend', {}, 'Contact'),
    field('Email', { name: 'email', type: 'email', autocomplete: 'email', value: session().email ?? `${session().sub}@example.com`, 'data-pointer': '/email' })),
  h('fieldset', {}, h('legend', {}, 'Shipping address'),
    field('Full name', { name: 'name', autocomplete: 'name', 'data-pointer': '/shipping_address/name' }),
    field('Address', { name: 'line1', autocomplete: 'address-line1', 'data-pointer': '/shipping_address/line1' }),
    field('Address line 2 (optional)', { name: 'line2', autocomplete: 'address-line2', 'data-pointer': '/shipping_address/line2' }),
    field('City', { name: 'city', autocomplete: 'address-level2', 'data-pointer': '/shipping_address/city' }),
    field('State or region (optional)', { name: 'region', autocomplete: 'address-level1', 'data-pointer': '/shipping_address/region' }),
    field('Postcode', { name: 'postal_code', autocomplete: 'postal-code', 'data-pointer': '/shipping_address/postal_code' }),
    h('div', { class: 'field' }, h('label', { for: 'f-country' }, 'Country'),
      h('select', { id: 'f-country', name: 'country', autocomplete: 'country', 'data-pointer': '/shipping_address/country' },
        COUNTRIES.map(([code, name]) => h('option', { value: code }, name))))),
  h('fieldset', { class: 'field' }, h('legend', {}, 'Shipping method'),
    shipping.map((m, i) => radio('shipping_method', m.id,
      `${m.name}: ${money({ amount: m.rates[currency], currency })}${m.free_over[currency] !== undefined ? `, free over ${money({ amount: m.free_over[currency], currency })}` : ''}`,
      i === 0 ? '/shipping_method' : null, i === 0))),
  field('Promo code (optional)', { name: 'promo_code', autocomplete: 'off', 'data-pointer': '/promo_code' }),
  payments.mode === 'test-cards'
    ? h('fieldset', { class: 'field' }, h('legend', {}, 'Payment: test card'),
      h('p', { class: 'hint' }, 'Local mode: pick one of the Stripe emulator’s test cards. No card number is ever sent to the shop.'),
      CARDS.map(([id, label], i) => radio('payment_method', id, label, i === 0 ? '/payment_method' : null, i === 0)))
    : payments.mode === 'stripe'
      ? h('fieldset', { class: 'field' }, h('legend', {}, 'Payment: card'),
        h('div', { class: 'card-field', id: 'card-field', 'data-pointer': '/payment_method' }),
        cardProblem)
      : h('p', { class: 'alert' }, `config.json asks for a payment mode this storefront does not know (${payments.mode}).`),
  h('p', { class: 'total' }, `Subtotal (${mine.item_count} items): `, h('strong', {}, money(mine.subtotal))),
  h('p', { class: 'muted' }, 'Shipping, discounts and tax are computed when the order is placed.'));
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Place order');
  form.append(submit);
  fill(main, heading('Checkout'), form);
  if (payments.mode === 'stripe') {
    stripeCard = import('./stripe.js').then((stripe) => stripe.cardField(form.querySelector('#card-field'), payments.publishable_key, (message) => fill(cardProblem, message)));
    stripeCard.catch((error) => fill(cardProblem, error.message));
  }
}

const STATUS = {
  pending: 'Placed: reserving your items',
  reserved: 'Items reserved: authorizing your payment',
  requires_action: 'Waiting for your bank to confirm the payment',
  authorized: 'Payment authorized',
  confirmed: 'Confirmed',
  partially_shipped: 'Partly shipped',
  shipped: 'Shipped',
  delivered: 'Delivered',
  cancelled: 'Cancelled',
};
const FAILURES = {
  card_declined: 'your card was declined',
  insufficient_funds: 'your card has insufficient funds',
  payment_intent_authentication_failure: 'the bank’s security check (3-D Secure) failed',
  authentication_required: 'your bank asked for a security check this shop could not complete',
  amount_not_chargeable: 'the amount cannot be charged in this currency',
  amount_too_small: 'the amount is below the card network’s minimum',
  payment_intent_canceled: 'the payment was cancelled',
};
function cancelWords(order) {
  switch (order.cancel_reason) {
    case 'out_of_stock': return 'Sorry: an item sold out before we could reserve it for you. Nothing was charged.';
    case 'order_too_large': return 'This order is too large to reserve at once. Please place it as smaller orders. Nothing was charged.';
    case 'payment_failed': {
      const why = FAILURES[order.payment_failure] ?? (order.payment_failure ?? 'it was refused').replace(/_/g, ' ');
      return `The payment was declined: ${why}. Nothing was charged, and the items were put back on sale.`;
    }
    case 'customer_cancelled': return 'This order was cancelled at your request. Any hold on your card is released.';
    case 'timeout': return 'The order timed out before the payment completed. Nothing was charged.';
    case 'reservation_expired': return 'The hold on the items expired before the payment completed. Nothing was charged.';
    default: return `Cancelled (${order.cancel_reason}).`;
  }
}

const RETURNS = { requested: 'Requested', received: 'Received', refunded: 'Refunded', rejected: 'Rejected' };
const REASONS = { damaged: 'Damaged', defective: 'Defective', wrong_item: 'Wrong item', not_as_described: 'Not as described', no_longer_needed: 'No longer needed', other: 'Other' };
const REFUND_STATUS = { succeeded: 'Paid back', pending: 'Pending at the bank', failed: 'Failed: nothing paid back' };
const DISPUTE_OUTCOME = { won: 'Won', lost: 'Lost: the money is gone', warning_closed: 'Closed without a charge back', prevented: 'Prevented' };
const SAGA = ['pending', 'reserved', 'authorized', 'confirmed'];
const OPEN = new Set(['pending', 'reserved', 'requires_action', 'authorized']);
const CANCELLABLE = new Set(['pending', 'reserved', 'requires_action', 'confirmed']);

export async function order(view, _params, id) {
  const { main } = view;
  if (needSession(main, 'Order')) return;
  loading(main, 'Order');
  const status = h('div', { class: 'status', role: 'status' });
  const body = h('div');
  // Forms live outside the redrawn part, so a poll never wipes what is being typed.
  const actions = h('div');
  let stockShown = false;
  let returnForm = false;
  let refundForm = false;
  // Admins: the flags and their Resolve forms, redrawn only when the flags change (a poll never
  // wipes a note being typed).
  const flagsBox = h('div');
  let flagsShown = '[]';
  let last = 0;
  fill(main, heading('Order ', h('span', { class: 'mono' }, id)), status, flagsBox, body, actions);

  const draw = (o) => {
    const reached = new Set(o.history.map((e) => e.status));
    const cancelled = o.status === 'cancelled';
    fill(status, h('p', { class: `badge ${o.status}`, id: 'order-status' }, STATUS[o.status] ?? o.status, o.return_status ? ` · ${o.return_status.replace(/_/g, ' ')}` : ''),
      cancelled ? h('p', { class: 'alert', id: 'cancel-reason' }, cancelWords(o)) : null);
    fill(body,
      h('ol', { class: 'steps', 'aria-label': 'Progress' }, SAGA.map((s) =>
        h('li', { class: reached.has(s) ? 'done' : '' }, STATUS[s].split(':')[0], reached.has(s) ? h('span', { class: 'visually-hidden' }, ' (done)') : null))),
      o.status === 'requires_action' ? challenge(o) : null,
      h('h2', {}, 'Items'),
      h('ul', { class: 'plain', id: 'order-lines' }, o.lines.map((l) => h('li', { 'data-sku': l.sku },
        `${l.quantity} × ${l.title} (${l.sku}), ${money(l.line_total)}`, cancelled ? h('span', { class: 'restock muted' }) : null))),
      h('dl', { class: 'totals' },
        ['subtotal', 'discount', 'shipping', 'tax', 'rounding', 'total'].filter((k) => o.totals[k]).map((k) =>
          [h('dt', {}, title(k)), h('dd', {}, money(o.totals[k]))])),
      o.totals.promotions?.length ? h('p', { class: 'muted' }, `Promotions: ${o.totals.promotions.join(', ')}`) : null,
      o.shipments.length ? [h('h2', {}, 'Shipments'), h('ul', { class: 'plain', id: 'shipments' }, o.shipments.map((s) => h('li', {},
        h('strong', {}, title(s.status)), ` from ${s.warehouse ?? 'a warehouse'}: `,
        s.lines.map((l) => `${l.quantity} × ${l.sku}`).join(', '),
        s.carrier ? h('span', {}, ` · ${s.carrier.toUpperCase()} tracking `,
          s.tracking_url?.startsWith('https://') ? h('a', { href: s.tracking_url, rel: 'noreferrer' }, s.tracking_number) : h('span', { class: 'mono' }, s.tracking_number)) : null)))] : null,
      h('h2', {}, 'Delivery'),
      h('p', {}, [o.shipping_address.name, o.shipping_address.line1, o.shipping_address.line2, o.shipping_address.city, o.shipping_address.region, o.shipping_address.postal_code, o.shipping_address.country].filter(Boolean).join(', ')),
      o.payment?.refunded || o.payment?.refunds?.length ? [h('h2', {}, 'Refunds'), h('p', { id: 'refunded' }, `Refunded ${money(o.payment.refunded ?? { amount: 0, currency: o.totals.total.currency })} in all.`),
        h('ul', { class: 'plain', id: 'refunds' }, (o.payment.refunds ?? []).map((r) => h('li', {},
          h('strong', {}, REFUND_STATUS[r.status] ?? title(r.status ?? 'succeeded')), `: ${money(r.amount)}, ${r.return_id ? 'for a return' : (r.reason ?? 'other').replace(/_/g, ' ')}, ${when(r.at)}`,
          r.failure_reason ? ` · the bank’s reason: ${r.failure_reason.replace(/_/g, ' ')}` : '')))] : null,
      o.disputes?.length ? [h('h2', {}, 'Disputes (admin)'), h('ul', { class: 'plain', id: 'disputes' }, o.disputes.map((d) => h('li', {},
        h('strong', {}, DISPUTE_OUTCOME[d.outcome] ?? (d.outcome ? title(d.outcome) : 'Open')), `: ${money(d.amount)}, ${d.reason.replace(/_/g, ' ')}, opened ${when(d.at)}`,
        d.closed_at ? `, closed ${when(d.closed_at)}` : '', ' · ', h('span', { class: 'mono' }, d.dispute_id))))] : null,
      o.returns?.length ? [h('h2', {}, 'Returns'), h('ul', { class: 'plain', id: 'returns' }, o.returns.map((r) => h('li', {},
        h('strong', {}, RETURNS[r.status] ?? r.status), `: ${r.lines.map((l) => `${l.quantity} × ${l.sku}`).join(', ')} (${r.reason.replace(/_/g, ' ')})`,
        r.refund ? `, refund ${money(r.refund)}` : '', r.note ? ` · ${r.note}` : '')))] : null,
      h('h2', {}, 'Timeline'),
      h('ol', { class: 'plain timeline' }, o.timeline.map((t) => h('li', {}, h('time', { datetime: t.at }, when(t.at)), ` ${t.event.replace(/_/g, ' ')}${(t.reason ?? t.outcome ?? t.flag) ? ` (${(t.reason ?? t.outcome ?? t.flag).replace(/_/g, ' ')})` : ''}`))),
      CANCELLABLE.has(o.status) ? h('button', { type: 'button', onclick: () => cancel(o) }, 'Cancel this order') : null);
    if (cancelled && !stockShown) { stockShown = true; restock(o); }
    if (!returnForm && o.customer === session()?.sub && o.shipments.some((s) => s.status === 'delivered')) {
      returnForm = true;
      actions.append(requestReturn(o));
    }
    const flagsNow = JSON.stringify([o.flags ?? [], o.flag_resolutions ?? []]);
    if (session()?.admin && o.flags && flagsNow !== flagsShown) {
      flagsShown = flagsNow;
      import('./admin.js').then((admin) => {
        if (flagsShown !== flagsNow) return; // a later order is already being drawn
        fill(flagsBox, admin.flagsPanel(o, (resolved) => { last = resolved.version; draw(resolved); }));
      });
    }
    if (!refundForm && session()?.admin && o.payment?.captured) {
      refundForm = true;
      import('./admin.js').then((admin) => actions.append(admin.refundForm(o)));
    }
  };

  const requestReturn = (o) => {
    const summary = h('div');
    // One key per return asked for: a retried request (a lost answer) records it once.
    let key = crypto.randomUUID();
    const form = h('form', { novalidate: true, class: 'card', onsubmit: async (event) => {
      event.preventDefault();
      const inputs = [...form.querySelectorAll('input[data-sku]')];
      const chosen = inputs.filter((i) => Number(i.value) > 0);
      inputs.forEach((i) => i.removeAttribute('data-pointer'));
      chosen.forEach((i, index) => i.setAttribute('data-pointer', `/lines/${index}/quantity`));
      const lines = chosen.map((i) => ({ sku: i.dataset.sku, quantity: Number(i.value) }));
      try {
        await call('POST', `/orders/${o.order_id}/returns`, { body: { lines, reason: form.elements.reason.value }, headers: { 'idempotency-key': key } });
        key = crypto.randomUUID();
        showProblem(form, summary, null);
        fill(summary, h('p', { class: 'ok', role: 'status' }, 'Return requested. Send the items back; the refund follows when they arrive.'));
        inputs.forEach((i) => { i.value = 0; });
      } catch (error) { showProblem(form, summary, error); }
    } },
    h('h2', {}, 'Return items'), summary,
    o.lines.map((l) => field(`Units of ${l.title} to return (of ${l.quantity})`, { name: `return-${l.sku}`, type: 'number', min: 0, max: l.quantity, value: 0, 'data-sku': l.sku })),
    h('div', { class: 'field' }, h('label', { for: 'f-reason' }, 'Reason'),
      h('select', { id: 'f-reason', name: 'reason', 'data-pointer': '/reason' }, Object.entries(REASONS).map(([value, label]) => h('option', { value }, label)))),
    h('button', { type: 'submit' }, 'Request a return'));
    return form;
  };

  // Stripe mode: Stripe.js shows the bank's 3-D Secure page, once by itself, again on request.
  let authenticating = false;
  const authenticate = async (o, slot) => {
    if (authenticating) return;
    authenticating = true;
    try {
      await (await import('./stripe.js')).authenticate(settings().payments.publishable_key, o.payment.client_secret);
      announce('Sent to your bank');
    } catch (error) {
      fill(slot, error.message);
    } finally { authenticating = false; }
  };
  let asked = false;
  const challenge = (o) => {
    if (settings().payments?.mode === 'stripe' && o.payment?.client_secret) {
      const problem = h('p', { class: 'card-problem', role: 'alert' });
      if (!asked) { asked = true; authenticate(o, problem); }
      return h('section', { class: 'challenge', 'aria-labelledby': 'challenge-title' },
        h('h2', { id: 'challenge-title' }, 'Your bank asks you to confirm this payment'), problem,
        h('button', { type: 'button', class: 'primary', onclick: () => authenticate(o, problem) }, 'Confirm with your bank'));
    }
    const url = settings().payments?.challenge_url;
    if (!url || !o.payment?.client_secret) return h('p', {}, 'Your bank needs you to confirm this payment.');
    const answer = async (success) => {
      await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ payment_intent: o.payment_intent_id, client_secret: o.payment.client_secret, success }) });
      announce('Sent to your bank');
    };
    return h('section', { class: 'challenge', 'aria-labelledby': 'challenge-title' },
      h('h2', { id: 'challenge-title' }, 'Your bank asks you to confirm this payment'),
      h('p', { class: 'hint' }, 'Test mode: this stands in for the bank’s 3-D Secure page.'),
      h('button', { type: 'button', class: 'primary', onclick: () => answer(true) }, 'Confirm the payment'), ' ',
      h('button', { type: 'button', onclick: () => answer(false) }, 'Fail the check'));
  };

  const cancel = async (o) => {
    try {
      draw((await call('POST', `/orders/${o.order_id}/cancel`)).data);
      announce('Order cancelled');
    } catch (error) {
      fill(status, h('p', { class: 'alert', role: 'alert' }, error.kind === 'already-shipped' ? 'A shipment has already left, so this order can no longer be cancelled.' : error.message));
    }
  };

  // A cancelled order's units go back on sale asynchronously: show them as inventory sees them.
  const restock = async (o) => {
    for (let round = 0; round < 15 && view.live(); round += 1) {
      const stock = await get(`/availability?skus=${o.lines.map((l) => encodeURIComponent(l.sku)).join(',')}`);
      for (const item of stock.items) {
        const slot = body.querySelector(`[data-sku="${CSS.escape(item.sku)}"] .restock`);
        if (slot) fill(slot, ` · ${item.available} on sale now`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  };

  // Poll while the saga runs (1 s), then slower while shipments can still change (3 s).
  while (view.live()) {
    let o;
    try { o = await get(`/orders/${id}`); } catch (error) {
      if (error.status === 404) { fill(body, h('p', {}, 'No such order.')); return; }
      throw error;
    }
    if (!view.live()) return;
    if (o.version !== last) {
      last = o.version;
      draw(o);
      announce(STATUS[o.status] ?? o.status);
    }
    if (o.status === 'cancelled') return;
    // After the saga, returns and refunds can still change the order: poll slowly.
    await new Promise((r) => setTimeout(r, OPEN.has(o.status) ? 1000 : 3000));
  }
}

export async function orders(view, params) {
  const { main } = view;
  if (needSession(main, 'Orders')) return;
  loading(main, 'Your orders');
  const result = await get(`/orders${query({ limit: 20, cursor: params.get('cursor') })}`);
  fill(main, heading('Your orders'),
    result.items.length === 0 ? h('p', {}, 'No orders yet.') : orderTable(result.items),
    result.next_cursor ? h('nav', { class: 'pager', 'aria-label': 'Pages' }, h('a', { href: `#/orders?cursor=${encodeURIComponent(result.next_cursor)}` }, 'Older orders')) : null);
}

export function orderTable(items, { customer = false, flagName = (f) => f } = {}) {
  return h('table', { class: 'lines' },
    h('thead', {}, h('tr', {}, ['Order', 'Placed', customer ? 'Customer' : null, 'Status', 'Total'].filter(Boolean).map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, items.map((o) => h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: `#/orders/${o.order_id}`, class: 'mono' }, o.order_id)),
      h('td', {}, when(o.created_at)),
      customer ? h('td', {}, o.customer, o.flags?.length ? [' ', h('span', { class: 'badge cancelled' }, o.flags.map(flagName).join(', '))] : null) : null,
      h('td', {}, STATUS[o.status] ?? o.status),
      h('td', {}, money(o.totals.total))))));
}

export async function signIn({ main }, params) {
  const next = params.get('next') || '#/';
  const auth = settings().auth ?? {};
  if (auth.mode === 'cognito') {
    // The managed login asks for the e-mail and password on its own page, then comes back.
    const problem = params.get('error');
    fill(main, heading('Sign in'),
      problem ? h('p', { class: 'alert', role: 'alert' }, problem) : null,
      h('p', {}, 'You sign in on the shop’s secure login page, then come back here.'),
      h('button', { type: 'button', class: 'primary', onclick: async () => (await cognito()).start(auth, next) }, 'Continue to sign in'));
    return;
  }
  if (auth.mode !== 'local') {
    fill(main, heading('Sign in'), h('p', { class: 'alert' }, `config.json asks for a sign-in mode this storefront does not know (${auth.mode}).`));
    return;
  }
  const summary = h('div');
  const form = h('form', { novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    const f = fields(form);
    try {
      await devSignIn(f.sub, f.admin === 'on');
      location.hash = next;
    } catch (error) {
      fill(summary, h('p', { class: 'alert', role: 'alert' }, error.message));
    }
  } },
  summary,
  field('Name', { name: 'sub', autocomplete: 'username', value: 'alice', required: true }, 'Any short name: letters, digits, dot, dash, underscore or @. Your cart and orders belong to it.'),
  h('div', { class: 'field' }, h('label', { class: 'choice' }, h('input', { type: 'checkbox', name: 'admin' }), h('span', {}, 'Sign in as an admin (group admin)'))),
  h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  fill(main, heading('Sign in'), h('p', { class: 'hint' }, 'Local mode: the local cloud mints a token for this name, as make token does.'), form);
}
