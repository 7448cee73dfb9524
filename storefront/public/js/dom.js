// Small DOM and formatting helpers. Text always goes in as text nodes: nothing from the API is
// ever parsed as HTML.

/** h('a', {href: '#/'}, 'Home'): an element with attributes, listeners (on*) and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'class') el.className = value;
    else if (name === 'value') el.value = value;
    else if (name === 'checked' || name === 'disabled' || name === 'selected') el[name] = Boolean(value);
    else el.setAttribute(name, value === true ? '' : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Says `text` to screen readers through the page's polite live region. */
export function announce(text) {
  const region = document.getElementById('announce');
  if (region) region.textContent = text;
}

const fractionDigits = new Map();

/** Minor-unit digits of an ISO 4217 currency, as Intl knows them (USD 2, JPY 0, KWD 3). */
export function digits(currency) {
  if (!fractionDigits.has(currency)) {
    const options = new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions();
    fractionDigits.set(currency, options.maximumFractionDigits);
  }
  return fractionDigits.get(currency);
}

/** `{amount: 1800, currency: 'USD'}` → "$18.00". The amount is turned into a decimal string,
 *  never divided as a float, and Intl formats that string exactly. */
export function money(value) {
  if (!value) return '—';
  return new Intl.NumberFormat(undefined, { style: 'currency', currency: value.currency })
    .format(decimal(value.amount, digits(value.currency)));
}

/** Minor units as a decimal string: decimal(1805, 2) → "18.05". */
export function decimal(amount, places) {
  const sign = amount < 0 ? '-' : '';
  const units = String(Math.abs(amount)).padStart(places + 1, '0');
  return places ? `${sign}${units.slice(0, -places)}.${units.slice(-places)}` : `${sign}${units}`;
}

/** "18.05" in USD → 1805; `null` when the text is not an amount with at most the currency's
 *  digits after the point. */
export function toMinor(text, currency) {
  const places = digits(currency);
  const match = /^\s*(\d{1,15})(?:\.(\d*))?\s*$/.exec(text);
  if (!match || (match[2] ?? '').length > places) return null;
  return Number(match[1] + (match[2] ?? '').padEnd(places, '0'));
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }) : '';
}

/** A form's named fields as an object of trimmed strings. */
export function fields(form) {
  const out = {};
  for (const [name, value] of new FormData(form)) out[name] = typeof value === 'string' ? value.trim() : value;
  return out;
}

/** Shows a problem's field errors next to the inputs whose `data-pointer` they name, and the
 *  rest (and the detail) in `summary`. Returns the number of errors shown next to a field. */
export function showProblem(form, summary, error) {
  for (const old of form.querySelectorAll('.field-error')) old.remove();
  for (const input of form.querySelectorAll('[aria-invalid]')) {
    input.removeAttribute('aria-invalid');
    input.setAttribute('aria-describedby', input.dataset.hint ?? '');
  }
  const loose = [];
  let placed = 0;
  let first = null;
  for (const { pointer, detail } of error?.problem?.errors ?? []) {
    const input = form.querySelector(`[data-pointer="${CSS.escape(pointer)}"]`);
    if (!input) { loose.push(`${pointer}: ${detail}`); continue; }
    const id = `err-${input.id || input.name}`;
    const message = h('p', { class: 'field-error', id }, detail);
    (input.closest('.field') ?? input.parentElement).append(message);
    input.setAttribute('aria-invalid', 'true');
    input.setAttribute('aria-describedby', [input.dataset.hint, id].filter(Boolean).join(' '));
    first ??= input;
    placed += 1;
  }
  const lead = placed ? `${placed === 1 ? 'One field needs' : `${placed} fields need`} attention.` : error?.message ?? '';
  fill(summary, error ? h('div', { class: 'alert', role: 'alert' }, lead, loose.length ? h('ul', {}, loose.map((l) => h('li', {}, l))) : null) : null);
  first?.focus();
  return placed;
}

/** A labelled input in a `.field` wrapper. */
export function field(label, attrs, hint) {
  const id = attrs.id ?? `f-${attrs.name}`;
  const hintId = hint ? `${id}-hint` : null;
  const input = h(attrs.tag ?? 'input', { ...attrs, tag: null, id, 'aria-describedby': hintId, 'data-hint': hintId });
  return h('div', { class: 'field' }, h('label', { for: id }, label), hint ? h('p', { class: 'hint', id: hintId }, hint) : null, input);
}
