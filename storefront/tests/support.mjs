// What the browser journeys share: a local cloud of their own, Chromium, the API as an admin
// sees it (to arrange data fast), and waiting for what the shopper sees.

import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(here, '../..');
export const OUT = resolve(here, '../test-results');
mkdirSync(OUT, { recursive: true });

const target = process.env.CARGO_TARGET_DIR ?? join(ROOT, 'target');
const LOCALCLOUD = process.env.LOCALCLOUD ?? join(target, 'debug/localcloud');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Starts `localcloud dev` on a free port; resolves to `{url, shop, stripe, stop}` once it serves
 *  (`stripe`: the Stripe emulator's URL, for its `/_test` controls). */
export async function startCloud() {
  if (!existsSync(LOCALCLOUD)) throw new Error(`no ${LOCALCLOUD}: run cargo build --workspace --bins (make test does), or set LOCALCLOUD`);
  const log = createWriteStream(join(OUT, 'localcloud.log'));
  const child = spawn(LOCALCLOUD, ['--root', ROOT, 'dev', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr.pipe(log);
  const [url, stripe] = await new Promise((resolveUrl, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`localcloud did not start in 60 s; see ${OUT}/localcloud.log`)), 60_000);
    timer.unref();
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`localcloud exited with ${code}; see ${OUT}/localcloud.log`)));
    child.stdout.on('data', (chunk) => {
      log.write(chunk);
      seen += chunk;
      // The Stripe emulator's line follows the API's (printed together at start).
      const match = /running on (http:\/\/[\d.]+:\d+)[\s\S]*Stripe emulator: (http:\/\/[\d.]+:\d+)/.exec(seen);
      if (match) { clearTimeout(timer); resolveUrl(match.slice(1)); }
    });
  });
  child.stdout.on('data', (chunk) => log.write(chunk));
  await until(async () => (await fetch(`${url}/shop/config.json`)).ok, 'the storefront is served', 30_000);
  const stop = () => new Promise((done) => {
    if (child.exitCode !== null) return done();
    child.on('exit', done);
    child.kill('SIGINT'); // like Ctrl-C: it stops moto, the Stripe emulator and every function
    setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
  });
  return { url, shop: `${url}/shop/`, stripe, stop };
}

export function launch() {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: make test installs Debian's chromium (or set CHROMIUM)`);
  // Without the background-networking flags Chromium keeps trying hosts this closed network refuses.
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

/** Polls `check` until it returns something truthy, or fails saying what did not happen. */
export async function until(check, what, timeout = 15_000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) { last = error; }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting until ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** Waits until `locator` shows `text` (a string it contains, or a RegExp), then returns its text. */
export async function see(locator, text, timeout = 15_000) {
  try {
    await locator.filter({ hasText: text }).first().waitFor({ state: 'visible', timeout });
  } catch {
    const actual = await locator.allInnerTexts().catch(() => []);
    throw new Error(`expected ${locator} to show ${text}; it shows ${JSON.stringify(actual)}`);
  }
  return locator.filter({ hasText: text }).first().innerText();
}

/** A short random word: names in one run never collide with another journey's. */
export const unique = () => Math.random().toString(36).slice(2, 8).replace(/^\d/, 'x');

/** The API with a token, for arranging data. Resolves to `{status, body, headers}`. */
export function client(base, token) {
  return async (method, path, body, headers = {}) => {
    const response = await fetch(base + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null, headers: response.headers };
  };
}

/** Calls one of the Stripe emulator's `/_test` controls (a form body) and resolves to its answer. */
export async function stripeControl(stripe, path, form = {}) {
  const response = await fetch(stripe + path, {
    method: 'POST', headers: { authorization: 'Bearer sk_test_local' }, body: new URLSearchParams(form),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(`POST ${path}: ${response.status} ${JSON.stringify(body)}`);
  return body;
}

/** A token from the dev sign-in, as the storefront gets one. */
export async function token(base, sub, admin = false) {
  const response = await fetch(`${base}/_localcloud/sign-in`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub, admin }),
  });
  return (await response.json()).token;
}

/** A browser context signed in as `sub` (the storefront's saved session), at `viewport`. */
export async function signedIn(browser, base, sub, { admin = false, viewport = { width: 1200, height: 900 } } = {}) {
  const context = await browser.newContext({ viewport, locale: 'en-US', timezoneId: 'UTC' });
  const jwt = await token(base, sub, admin);
  const claims = JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
  const saved = JSON.stringify({ token: jwt, sub, admin, exp: claims.exp });
  await context.addInitScript((value) => {
    if (!localStorage.getItem('ferrocart.session')) localStorage.setItem('ferrocart.session', value);
  }, saved);
  return context;
}

/** Creates an active product (admin API) and waits until carts can sell its SKUs. */
export async function product(admin, shopper, fields) {
  const created = await admin('POST', '/admin/products', { status: 'active', description: '', ...fields });
  if (created.status !== 201) throw new Error(`product not created: ${JSON.stringify(created.body)}`);
  return created.body;
}

/** Waits until the cart's read model of the catalog sells `sku` (ProductChanged is asynchronous). */
export async function sellable(shopper, sku) {
  const cart = (await shopper('POST', '/carts')).body;
  await until(async () => (await shopper('PUT', `/carts/${cart.id}/items/${sku}`, { quantity: 1 })).status === 200, `carts sell ${sku}`);
}

export async function stock(admin, sku, warehouse, onHand) {
  const reply = await admin('PUT', `/admin/inventory/${sku}`, { warehouse, on_hand: onHand });
  if (reply.status !== 200) throw new Error(`stock not set: ${JSON.stringify(reply.body)}`);
}

/** Fills the checkout form with a valid US address (leaving out any field named in `skip`). */
export async function fillAddress(page, { skip = [] } = {}) {
  const values = { 'Full name': 'Ada Lovelace', Address: '12 Analytical Row', City: 'Springfield', Postcode: '62701' };
  for (const [label, value] of Object.entries(values)) {
    if (!skip.includes(label)) await page.getByLabel(label, { exact: true }).fill(value);
  }
}

export const axeSource = () => readFileSync(join(ROOT, 'storefront/node_modules/axe-core/axe.min.js'), 'utf8');

/** axe-core's serious and critical violations on the page as it is now. */
export async function accessibilityProblems(page) {
  // Evaluated as devtools would, not as an inline <script>, which the page's CSP refuses.
  await page.evaluate(axeSource());
  const result = await page.evaluate(() => globalThis.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join('; ')})`);
}
