// The admin console (group `admin`): products, stock, orders and shipments, on the /admin routes.

import { ApiError, call, get, query, session } from './api.js';
import { announce, digits, decimal, field, fields, fill, h, money, showProblem, toMinor, when } from './dom.js';
import { orderTable } from './shop.js';

const TABS = [['/products', 'Products'], ['/stock', 'Stock'], ['/orders', 'Orders'], ['/shipments', 'Shipments'], ['/returns', 'Returns']];
const RETURN_STATUSES = ['requested', 'received', 'refunded', 'rejected'];
const ORDER_STATUSES = ['pending', 'reserved', 'confirmed', 'partially_shipped', 'shipped', 'delivered', 'cancelled'];
// Every flag the API raises (docs/api.md, `GET /admin/orders?flag=`), in a shop person's words:
// a short name for lists and what to do about it. The flag filter and the order page read it.
export const FLAGS = {
  capture_failed: ['Payment not collected', 'Stripe refused to collect the payment: the goods ship or shipped unpaid. Charge the customer another way or stop the shipments.'],
  dispatched_after_cancel: ['Shipped after cancelling', 'A parcel left after the order was cancelled. Recover it or charge the customer.'],
  disputed: ['Payment disputed', 'The customer’s bank disputed the payment. Answer it in Stripe before its deadline; if it was lost, the money is gone: decide what the shop does.'],
  refund_failed: ['Refund failed', 'A refund paid nothing back (the reason is under Refunds): the customer is still owed it. Refund again or pay them another way.'],
};
/** A flag's short name (an unknown one as the API spells it). */
export const flagName = (flag) => FLAGS[flag]?.[0] ?? flag.replace(/_/g, ' ');
const SHIPMENT_STATUSES = ['pending', 'dispatched', 'delivered', 'cancelled'];

function frame(main, active, title, ...content) {
  fill(main,
    h('nav', { 'aria-label': 'Admin' }, h('ul', { class: 'tabs' }, TABS.map(([path, label]) =>
      h('li', {}, h('a', { href: `#/admin${path}`, 'aria-current': path === active ? 'page' : null }, label))))),
    h('h1', { tabindex: '-1' }, title), ...content);
}

export async function route(view, params, rest) {
  const { main } = view;
  if (!session()?.admin) {
    fill(main, h('h1', { tabindex: '-1' }, 'Admin console'),
      h('p', {}, 'This needs an admin. ', h('a', { href: `#/sign-in?next=${encodeURIComponent(location.hash)}` }, 'Sign in as an admin'), '.'));
    return;
  }
  if (rest === '' || rest === '/' || rest === '/products') return products(view, params);
  if (rest === '/products/new') return productForm(view, null);
  const match = /^\/products\/(prod_[A-Za-z0-9]+)$/.exec(rest);
  if (match) return productForm(view, match[1]);
  if (rest === '/stock') return stock(view, params);
  if (rest === '/orders') return ordersList(view, params);
  if (rest === '/shipments') return shipments(view, params);
  if (rest === '/returns') return returns(view, params);
  frame(main, '', 'Not found', h('p', {}, 'No such admin page.'));
}

async function products({ main }, params) {
  const result = await get(`/products${query({ limit: 20, cursor: params.get('cursor') })}`);
  const open = h('form', { class: 'row', onsubmit: (event) => {
    event.preventDefault();
    location.hash = `#/admin/products/${fields(open).id}`;
  } }, field('Open a product by id (any status)', { name: 'id', placeholder: 'prod_…' }), h('button', { type: 'submit' }, 'Open'));
  frame(main, '/products', 'Products',
    h('p', {}, h('a', { class: 'button primary', href: '#/admin/products/new' }, 'New product')),
    open,
    h('p', { class: 'hint' }, 'Listed: active products, newest first (the API lists drafts and archived products nowhere; open them by id).'),
    h('table', { class: 'lines' },
      h('thead', {}, h('tr', {}, ['Title', 'Category', 'Variants', 'Price'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, result.items.map((p) => h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: `#/admin/products/${p.id}` }, p.title)),
        h('td', {}, p.category), h('td', {}, p.variants.length), h('td', {}, money(p.variants[0].price)))))),
    result.next_cursor ? h('nav', { class: 'pager', 'aria-label': 'Pages' }, h('a', { href: `#/admin/products?cursor=${encodeURIComponent(result.next_cursor)}` }, 'Next page')) : null);
}

/** Every combination of the options' values: [{colour: 'Sand', size: 'S'}, …]. */
function combinations(options) {
  return options.reduce((acc, o) => acc.flatMap((c) => o.values.map((v) => ({ ...c, [o.name]: v }))), [{}]);
}

async function productForm(view, id) {
  const { main } = view;
  let product = null;
  let etag = null;
  if (id) {
    const { data, headers } = await call('GET', `/admin/products/${id}`);
    product = data;
    etag = headers.get('etag');
  }
  const summary = h('div');
  const variantsBox = h('div');
  const options = (product?.options ?? []).map((o) => `${o.name}: ${o.values.join(', ')}`).join('\n');
  const currency = product?.variants[0]?.price.currency ?? 'USD';
  let rows = product?.variants.map((v) => ({ options: v.options, sku: v.sku, price: decimal(v.price.amount, digits(v.price.currency)) })) ?? [];

  const parseOptions = (text) => text.split('\n').map((l) => l.trim()).filter(Boolean).map((line) => {
    const [name, values = ''] = line.split(':');
    return { name: name.trim(), values: values.split(',').map((v) => v.trim()).filter(Boolean) };
  });
  const drawVariants = () => {
    const parsed = parseOptions(form.elements.options.value);
    const wanted = combinations(parsed);
    const keyOf = (o) => JSON.stringify(Object.keys(o).sort().map((k) => [k, o[k]]));
    const known = new Map(rows.map((r) => [keyOf(r.options), r]));
    rows = wanted.map((o) => known.get(keyOf(o)) ?? { options: o, sku: '', price: '' });
    fill(variantsBox, h('div', { class: 'scroll' }, h('table', { class: 'lines' },
      h('caption', { class: 'visually-hidden' }, 'Variants'),
      h('thead', {}, h('tr', {}, ['Variant', 'SKU', `Price (${form.elements.currency.value || currency})`, 'Stock'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.map((r, i) => {
        const name = Object.values(r.options).join(' / ') || 'The only variant';
        return h('tr', {},
          h('th', { scope: 'row' }, name),
          h('td', { class: 'field' }, h('input', { name: `sku-${i}`, value: r.sku, 'aria-label': `SKU of ${name}`, 'data-pointer': `/variants/${i}/sku`, oninput: (e) => { r.sku = e.target.value.trim(); } })),
          h('td', { class: 'field' }, h('input', { name: `price-${i}`, value: r.price, inputmode: 'decimal', 'aria-label': `Price of ${name}`, 'data-pointer': `/variants/${i}/price/amount`, oninput: (e) => { r.price = e.target.value.trim(); } })),
          h('td', {}, r.sku && id ? h('a', { href: `#/admin/stock?sku=${encodeURIComponent(r.sku)}` }, 'Stock') : ''));
      })))));
  };

  const save = async (event) => {
    event.preventDefault();
    const f = fields(form);
    const cur = f.currency.toUpperCase();
    const body = {
      slug: f.slug, title: f.title, description: f.description, category: f.category, status: f.status,
      images: f.images.split('\n').map((l) => l.trim()).filter(Boolean),
      options: parseOptions(f.options),
      variants: rows.map((r) => ({ sku: r.sku, options: r.options, price: { amount: toMinor(r.price, cur) ?? -1, currency: cur } })),
    };
    const bad = rows.findIndex((r) => toMinor(r.price, cur) === null);
    if (bad >= 0) {
      showProblem(form, summary, new ApiError(422, { type: '/problems/validation-error', detail: 'price', errors: [{ pointer: `/variants/${bad}/price/amount`, detail: `enter an amount such as 18.00 (at most ${digits(cur)} decimals)` }] }));
      return;
    }
    try {
      const { data, headers } = id
        ? await call('PUT', `/admin/products/${id}`, { body, headers: { 'if-match': etag } })
        : await call('POST', '/admin/products', { body });
      announce(id ? `Saved: version ${data.version}` : 'Product created');
      if (!id) { location.hash = `#/admin/products/${data.id}`; return; }
      product = data; etag = headers.get('etag');
      fill(summary, h('p', { class: 'ok', role: 'status' }, `Saved: version ${data.version}.`));
      fill(versionLine, `Version ${data.version}, ${data.status}, updated ${when(data.updated_at)}`);
    } catch (error) {
      if (error.kind === 'precondition-failed') {
        fill(summary, h('p', { class: 'alert', role: 'alert' }, `Someone else changed this product meanwhile (${error.message}). `, h('a', { href: location.hash, onclick: () => setTimeout(() => location.reload()) }, 'Reload it'), ' and make your change again.'));
        return;
      }
      showProblem(form, summary, error);
    }
  };

  const archive = async () => {
    try {
      const { data, headers } = await call('DELETE', `/admin/products/${id}`, { headers: { 'if-match': etag } });
      product = data; etag = headers.get('etag');
      form.elements.status.value = data.status;
      fill(summary, h('p', { class: 'ok', role: 'status' }, `Archived: shoppers no longer see it (version ${data.version}).`));
      fill(versionLine, `Version ${data.version}, ${data.status}`);
    } catch (error) { showProblem(form, summary, error); }
  };

  const versionLine = h('p', { class: 'muted' }, product ? `Version ${product.version}, ${product.status}, updated ${when(product.updated_at)}` : 'New products are drafts unless you make them active.');
  const form = h('form', { novalidate: true, onsubmit: save },
    summary,
    field('Title', { name: 'title', value: product?.title, 'data-pointer': '/title' }),
    field('Slug', { name: 'slug', value: product?.slug, 'data-pointer': '/slug' }, 'Lower-case words joined by hyphens, unique: stoneware-mug.'),
    field('Category', { name: 'category', value: product?.category, 'data-pointer': '/category' }, 'Same form as a slug: mugs, t-shirts.'),
    h('div', { class: 'field' }, h('label', { for: 'f-status' }, 'Status'),
      h('select', { id: 'f-status', name: 'status', 'data-pointer': '/status' }, ['draft', 'active', 'archived'].map((s) =>
        h('option', { value: s, selected: (product?.status ?? 'active') === s }, s)))),
    field('Description', { tag: 'textarea', name: 'description', rows: 3, value: product?.description, 'data-pointer': '/description' }),
    field('Image URLs (one per line)', { tag: 'textarea', name: 'images', rows: 2, value: product?.images.join('\n'), 'data-pointer': '/images' }),
    field('Options (one per line, name: values)', { tag: 'textarea', name: 'options', rows: 3, value: options, 'data-pointer': '/options', placeholder: 'colour: Sand, Slate' }, 'Up to 3 options. Leave empty for a product with a single variant.'),
    field('Currency', { name: 'currency', value: currency, maxlength: 3, 'data-pointer': '/variants/0/price/currency' }),
    h('p', {}, h('button', { type: 'button', onclick: drawVariants }, 'Update the variants from the options')),
    variantsBox,
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, id ? 'Save changes' : 'Create product'),
      id && product.status !== 'archived' ? h('button', { type: 'button', onclick: archive }, 'Archive') : null));
  frame(main, '/products', product ? `Edit ${product.title}` : 'New product', versionLine, form);
  drawVariants();
}

async function stock({ main }, params) {
  const sku = params.get('sku') ?? '';
  const summary = h('div');
  const lookup = h('form', { class: 'row', onsubmit: (event) => {
    event.preventDefault();
    location.hash = `#/admin/stock?sku=${encodeURIComponent(fields(lookup).sku)}`;
  } }, field('SKU', { name: 'sku', value: sku, id: 'f-lookup' }), h('button', { type: 'submit' }, 'Show stock'));
  if (!sku) { frame(main, '/stock', 'Stock', lookup); return; }
  let level;
  try { level = await get(`/admin/inventory/${encodeURIComponent(sku)}`); } catch (error) {
    frame(main, '/stock', 'Stock', lookup, h('p', { class: 'alert', role: 'alert' }, error.message));
    return;
  }
  const table = () => h('table', { class: 'lines', id: 'stock-table' },
    h('caption', {}, `${level.sku}: ${level.on_hand} on hand, ${level.reserved} reserved, ${level.available} available`),
    h('thead', {}, h('tr', {}, ['Warehouse', 'On hand', 'Reserved', 'Available'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, level.warehouses.map((w) => h('tr', {}, h('th', { scope: 'row' }, w.warehouse), h('td', {}, w.on_hand), h('td', {}, w.reserved), h('td', {}, w.available)))));
  const box = h('div', {}, table());
  const set = h('form', { novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    const f = fields(set);
    const before = level.warehouses.find((w) => w.warehouse === f.warehouse);
    const body = { warehouse: f.warehouse, on_hand: Number(f.on_hand) };
    if (!/^\d+$/.test(f.on_hand)) body.on_hand = f.on_hand; // let the API say what is wrong
    if (before) body.expected_on_hand = before.on_hand;
    try {
      level = (await call('PUT', `/admin/inventory/${encodeURIComponent(sku)}`, { body })).data;
      fill(box, table());
      showProblem(set, summary, null);
      fill(summary, h('p', { class: 'ok', role: 'status' }, `Set ${f.warehouse} to ${body.on_hand}.`));
    } catch (error) {
      if (error.kind === 'precondition-failed') {
        level = await get(`/admin/inventory/${encodeURIComponent(sku)}`);
        fill(box, table());
      }
      showProblem(set, summary, error);
    }
  } },
  summary,
  h('div', { class: 'row' },
    field('Warehouse', { name: 'warehouse', value: level.warehouses[0]?.warehouse ?? 'main', 'data-pointer': '/warehouse', list: 'warehouses' }),
    field('On hand', { name: 'on_hand', inputmode: 'numeric', value: '', 'data-pointer': '/on_hand' }),
    h('button', { type: 'submit', class: 'primary' }, 'Set stock')),
  h('datalist', { id: 'warehouses' }, level.warehouses.map((w) => h('option', { value: w.warehouse }))),
  h('p', { class: 'hint' }, 'The count you set replaces the warehouse’s on-hand units. If someone changed it since this page loaded, nothing is written and the new count is shown.'));
  frame(main, '/stock', `Stock of ${sku}`, lookup, box, h('h2', {}, 'Set the count in a warehouse'), set);
}

async function ordersList({ main }, params) {
  const flag = params.get('flag') ?? '';
  const status = flag ? '' : params.get('status') ?? 'confirmed';
  const result = await get(`/admin/orders${query({ status, flag, limit: 20, cursor: params.get('cursor') })}`);
  const pick = h('form', { class: 'row', onsubmit: (event) => {
    event.preventDefault();
    const [kind, value] = fields(pick).filter.split(':');
    location.hash = `#/admin/orders?${kind}=${value}`;
  } },
  h('div', { class: 'field' }, h('label', { for: 'f-filter' }, 'Show orders'),
    h('select', { id: 'f-filter', name: 'filter' },
      ORDER_STATUSES.map((s) => h('option', { value: `status:${s}`, selected: s === status }, `Status: ${s.replace(/_/g, ' ')}`)),
      Object.keys(FLAGS).map((f) => h('option', { value: `flag:${f}`, selected: f === flag }, `Flag: ${flagName(f)}`)))),
  h('button', { type: 'submit' }, 'Show'));
  const base = `#/admin/orders?${flag ? `flag=${flag}` : `status=${status}`}`;
  frame(main, '/orders', 'Orders', pick,
    result.items.length ? orderTable(result.items, { customer: true, flagName }) : h('p', {}, 'No orders here.'),
    result.next_cursor ? h('nav', { class: 'pager', 'aria-label': 'Pages' }, h('a', { href: `${base}&cursor=${encodeURIComponent(result.next_cursor)}` }, 'Next page')) : null);
}

async function shipments(view, params) {
  const { main } = view;
  const status = params.get('status') ?? 'pending';
  const warehouse = params.get('warehouse') ?? '';
  const result = await get(`/admin/shipments${query({ status, warehouse, limit: 20, cursor: params.get('cursor') })}`);
  const pick = h('form', { class: 'row', onsubmit: (event) => {
    event.preventDefault();
    const f = fields(pick);
    location.hash = `#/admin/shipments${query({ status: f.status, warehouse: f.warehouse })}`;
  } },
  h('div', { class: 'field' }, h('label', { for: 'f-shipstatus' }, 'Status'),
    h('select', { id: 'f-shipstatus', name: 'status' }, SHIPMENT_STATUSES.map((s) => h('option', { value: s, selected: s === status }, s)))),
  field('Warehouse (optional)', { name: 'warehouse', value: warehouse, id: 'f-shipwarehouse' }),
  h('button', { type: 'submit' }, 'Show'));

  const card = (s) => {
    const summary = h('div');
    const li = h('li', { class: 'card', 'data-shipment': s.id, 'data-order': s.order_id },
      h('h2', {}, h('span', { class: 'mono' }, s.id)),
      h('p', {}, `Order `, h('a', { href: `#/orders/${s.order_id}`, class: 'mono' }, s.order_id), ` · from ${s.warehouse} · ${s.status}`),
      h('p', {}, s.lines.map((l) => `${l.quantity} × ${l.sku}`).join(', ')),
      h('p', { class: 'muted' }, `To ${s.shipping.address.name}, ${s.shipping.address.city} ${s.shipping.address.country} (${s.shipping.method})`),
      s.carrier ? h('p', {}, `${s.carrier}: ${s.tracking_number}`) : null,
      summary);
    if (s.status === 'pending') {
      const form = h('form', { novalidate: true, onsubmit: async (event) => {
        event.preventDefault();
        const f = fields(form);
        const body = { carrier: f.carrier, tracking_number: f.tracking_number };
        if (f.tracking_url) body.tracking_url = f.tracking_url;
        try {
          await call('POST', `/admin/shipments/${s.id}/dispatch`, { body });
          fill(summary, h('p', { class: 'ok', role: 'status' }, `Dispatched with ${f.carrier}, tracking ${f.tracking_number}.`));
          form.remove();
        } catch (error) { showProblem(form, summary, error); }
      } },
      h('div', { class: 'row' },
        field('Carrier', { name: 'carrier', id: `carrier-${s.id}`, 'data-pointer': '/carrier' }),
        field('Tracking number', { name: 'tracking_number', id: `tracking-${s.id}`, 'data-pointer': '/tracking_number' }),
        field('Tracking URL (optional, https)', { name: 'tracking_url', id: `url-${s.id}`, 'data-pointer': '/tracking_url' }),
        h('button', { type: 'submit', class: 'primary' }, 'Dispatch')));
      li.append(form);
    } else if (s.status === 'dispatched') {
      li.append(h('button', { type: 'button', onclick: async (event) => {
        try {
          await call('POST', `/admin/shipments/${s.id}/deliver`);
          fill(summary, h('p', { class: 'ok', role: 'status' }, 'Marked delivered.'));
          event.target.remove();
        } catch (error) { fill(summary, h('p', { class: 'alert', role: 'alert' }, error.message)); }
      } }, 'Mark delivered'));
    }
    return li;
  };
  frame(main, '/shipments', 'Shipments', pick,
    result.items.length ? h('ul', { class: 'plain bare shipments' }, result.items.map(card)) : h('p', {}, 'No shipments here.'),
    result.next_cursor ? h('nav', { class: 'pager', 'aria-label': 'Pages' }, h('a', { href: `#/admin/shipments${query({ status, warehouse, cursor: result.next_cursor })}` }, 'Next page')) : null);
}

/** On an order page, for admins: the order's raised flags, each with a "Resolve" form asking for
 *  the note the API keeps, and the flags resolved before (who, when, the note). `resolved(order)`
 *  gets the order the API answers, or the order read again when it changed since it was shown. */
export function flagsPanel(o, resolved) {
  const raised = o.flags ?? [];
  const done = o.flag_resolutions ?? [];
  if (!raised.length && !done.length) return null;
  // The version the admin decides on: the API resolves nothing on an order that changed since.
  let seen = o.version;
  const resolveForm = (flag) => {
    const summary = h('div');
    const form = h('form', { novalidate: true, class: 'card', 'data-flag': flag, onsubmit: async (event) => {
      event.preventDefault();
      try {
        const { data } = await call('POST', `/admin/orders/${o.order_id}/flags/${flag}/resolve`, { body: { note: fields(form).note, version: seen } });
        announce(`${flagName(flag)}: resolved`);
        resolved(data);
      } catch (error) {
        if (error.status !== 412) { showProblem(form, summary, error); return; }
        const message = 'This order changed since you opened it (something new may have raised the flag again). Nothing was resolved: the page now shows the order as it is; read it, then resolve again if still needed.';
        try {
          const { data } = await call('GET', `/orders/${o.order_id}`);
          seen = data.version;
          fill(summary, h('p', { class: 'alert', role: 'alert' }, message));
          resolved(data);
        } catch (reload) { showProblem(form, summary, reload); }
      }
    } },
    h('h3', {}, flagName(flag)),
    h('p', {}, FLAGS[flag]?.[1] ?? ''),
    summary,
    field('Note (required: what was done)', { tag: 'textarea', name: 'note', id: `f-note-${flag}`, rows: 2, maxlength: 500, 'data-pointer': '/note' }, 'Kept with the order, with your name. Up to 500 characters.'),
    h('button', { type: 'submit' }, 'Resolve'));
    return form;
  };
  return h('section', { 'aria-labelledby': 'flags-title', id: 'flags' },
    h('h2', { id: 'flags-title' }, 'Flags (admin)'),
    raised.length ? raised.map(resolveForm) : h('p', {}, 'No flag is raised.'),
    done.length ? [h('h3', {}, 'Resolved'), h('ul', { class: 'plain', id: 'flag-resolutions' }, done.map((r) => h('li', {},
      h('strong', {}, flagName(r.flag)), ` resolved by ${r.by}, `, h('time', { datetime: r.at }, when(r.at)), `: ${r.note}`)))] : null);
}

/** What a 201 of `POST /admin/orders/{id}/refunds` means, in words (docs/api.md): `succeeded`
 *  carries `refunded_total`; `pending` (Stripe holds it until the customer's bank pays it) has
 *  none: the order lists it pending at the bank, nothing refunded, until it ends. */
export function refundOutcome(refund) {
  const amount = money(refund.amount);
  switch (refund.status) {
    case 'succeeded':
      return refund.refunded_total ? `Refunded ${amount} (${money(refund.refunded_total)} in all).` : `Refunded ${amount}.`;
    case 'pending':
      return `Stripe is processing the refund of ${amount}: nothing is paid back yet. The order lists it under Refunds as pending at the bank until the bank completes it (or flags it “Refund failed” if the bank fails it).`;
    case 'failed':
      return `The refund of ${amount} failed: nothing was paid back, and the amount can be refunded again.`;
    default:
      return `Stripe answered the refund of ${amount} “${refund.status}”; the order’s Refunds show how it ends.`;
  }
}

/** On an order page, for admins: refund part or all of what was captured. */
export function refundForm(o) {
  const currency = o.payment.captured.currency;
  const summary = h('div');
  // One key per refund the admin means to make: a retry after a 503 (or any answer that is not
  // final) reuses it, so the refund is made once; a 201 or Stripe's refusal ends it.
  // After a 503 the kept key belongs to a refund that may still complete (the sweep carries it
  // on); `sent` is the body it first went out with, so the API's 422 on the key can name it.
  let key = crypto.randomUUID();
  let sent = null;
  let renew = false;
  const form = h('form', { novalidate: true, class: 'card', onsubmit: async (event) => {
    event.preventDefault();
    // "Make a new refund" asks for it explicitly: the earlier request is left to finish on its own.
    if (renew) { key = crypto.randomUUID(); sent = null; renew = false; }
    const f = fields(form);
    const body = { reason: f.reason };
    if (f.amount) {
      const amount = toMinor(f.amount, currency);
      if (amount === null) {
        showProblem(form, summary, new ApiError(422, { type: '/problems/validation-error', detail: 'amount', errors: [{ pointer: '/amount', detail: `enter an amount such as 10.00 in ${currency}` }] }));
        return;
      }
      body.amount = amount;
    }
    if (f.note) body.note = f.note;
    try {
      sent ??= body;
      const { data } = await call('POST', `/admin/orders/${o.order_id}/refunds`, { body, headers: { 'idempotency-key': key } });
      key = crypto.randomUUID();
      sent = null;
      showProblem(form, summary, null);
      fill(summary, h('p', { class: data.status === 'failed' ? 'alert' : 'ok', role: 'status' }, refundOutcome(data)));
      form.elements.amount.value = '';
    } catch (error) {
      // Stripe's refusal is final (the same key answers it again): the next submit is a new refund.
      if (error instanceof ApiError && error.kind === 'refund-refused') { key = crypto.randomUUID(); sent = null; }
      // The key went out before with another body (an earlier request, e.g. the one a 503 left
      // unfinished): recognised by its field error, not by the words.
      const reused = error instanceof ApiError && error.kind === 'validation-error'
        && (error.problem.errors ?? []).some((e) => e.pointer === 'header:Idempotency-Key');
      if (reused) {
        const earlier = sent;
        showProblem(form, summary, null);
        fill(summary, h('div', { class: 'alert', role: 'alert' },
          h('p', {}, `The earlier refund request (${earlier?.amount === undefined ? 'everything still refundable' : `amount ${money({ amount: earlier.amount, currency })}`}) `
            + 'may still be in progress at Stripe: it completes on its own within a few minutes, and the order lists it under Refunds. '
            + 'Changing the amount, reason or note does not change that request.'),
          h('p', {}, 'To refund this amount as well, as a new and separate refund, press “Make a new refund”. '
            + 'To finish the earlier request instead, put back its amount, reason and note and press Refund.'),
          h('button', { type: 'button', onclick: () => { renew = true; form.requestSubmit(); } }, 'Make a new refund')));
        return;
      }
      showProblem(form, summary, error);
      const alert = summary.querySelector('[role=alert]');
      if (alert && error instanceof ApiError && error.kind === 'refund-unavailable') {
        const after = Number.parseInt(error.headers?.get('retry-after') ?? '', 10);
        alert.append(h('p', { id: 'refund-retry' }, `${after > 0 ? `Try again in ${after} seconds` : 'Try again shortly'}: `
          + 'pressing Refund with the same amount, reason and note sends the same Idempotency-Key, so the refund is made once; '
          + 'payment also finishes a recorded refund by itself within a few minutes.'));
      } else if (alert && error instanceof ApiError && error.kind === 'refund-refused') {
        alert.append(h('p', {}, 'Nothing was paid back; the amount can be refunded again.'));
      }
    }
  } },
  h('h2', {}, 'Refund (admin)'), summary,
  h('p', { class: 'hint' }, `Captured ${money(o.payment.captured)}. Leave the amount empty to refund everything still refundable.`),
  field(`Amount (${currency}, optional)`, { name: 'amount', inputmode: 'decimal', 'data-pointer': '/amount' }),
  h('div', { class: 'field' }, h('label', { for: 'f-refund-reason' }, 'Reason'),
    h('select', { id: 'f-refund-reason', name: 'reason', 'data-pointer': '/reason' },
      ['requested_by_customer', 'duplicate', 'fraudulent', 'other'].map((r) => h('option', { value: r }, r.replace(/_/g, ' '))))),
  field('Note (optional, kept with the refund)', { name: 'note', 'data-pointer': '/note' }),
  h('button', { type: 'submit' }, 'Refund'));
  return form;
}

async function returns({ main }, params) {
  const status = params.get('status') ?? 'requested';
  const result = await get(`/admin/returns${query({ status, limit: 20, cursor: params.get('cursor') })}`);
  const pick = h('form', { class: 'row', onsubmit: (event) => {
    event.preventDefault();
    location.hash = `#/admin/returns?status=${fields(pick).status}`;
  } },
  h('div', { class: 'field' }, h('label', { for: 'f-retstatus' }, 'Status'),
    h('select', { id: 'f-retstatus', name: 'status' }, RETURN_STATUSES.map((s) => h('option', { value: s, selected: s === status }, s)))),
  h('button', { type: 'submit' }, 'Show'));
  const card = (r) => {
    const summary = h('div');
    const li = h('li', { class: 'card', 'data-return': r.id, 'data-order': r.order_id },
      h('h2', {}, h('span', { class: 'mono' }, r.id)),
      h('p', {}, 'Order ', h('a', { href: `#/orders/${r.order_id}`, class: 'mono' }, r.order_id), ` · ${r.status} · ${r.reason.replace(/_/g, ' ')} · ${when(r.requested_at)}`),
      h('p', {}, r.lines.map((l) => `${l.quantity} × ${l.sku}`).join(', '), r.refund ? `, refund ${money(r.refund)}` : ''),
      summary);
    if (r.status === 'requested') {
      const act = (path, body, done) => async (event) => {
        event.preventDefault();
        try {
          await call('POST', `/admin/returns/${r.id}/${path}`, { body });
          fill(summary, h('p', { class: 'ok', role: 'status' }, done));
          receive.remove(); reject.remove();
        } catch (error) { showProblem(event.target, summary, error); }
      };
      const receive = h('form', { novalidate: true, class: 'row', onsubmit: (e) => act('receive', { warehouse: fields(receive).warehouse }, `Received into ${fields(receive).warehouse}: the units are restocked there and the refund follows.`)(e) },
        field('Receive into warehouse', { name: 'warehouse', id: `wh-${r.id}`, 'data-pointer': '/warehouse' }), h('button', { type: 'submit', class: 'primary' }, 'Receive'));
      const reject = h('form', { novalidate: true, class: 'row', onsubmit: (e) => act('reject', { note: fields(reject).note }, 'Rejected.')(e) },
        field('Why it is rejected', { name: 'note', id: `note-${r.id}`, 'data-pointer': '/note' }), h('button', { type: 'submit' }, 'Reject'));
      li.append(receive, reject);
    }
    return li;
  };
  frame(main, '/returns', 'Returns', pick,
    result.items.length ? h('ul', { class: 'plain bare' }, result.items.map(card)) : h('p', {}, 'No returns here.'),
    result.next_cursor ? h('nav', { class: 'pager', 'aria-label': 'Pages' }, h('a', { href: `#/admin/returns?status=${status}&cursor=${encodeURIComponent(result.next_cursor)}` }, 'Next page')) : null);
}
