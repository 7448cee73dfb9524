// Browser journeys: the storefront and the admin console in headless Chromium, against a local
// cloud started for this run. Each journey asserts what the shopper (or admin) sees; on failure
// a screenshot of its last page is saved in storefront/test-results/.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import {
  OUT, accessibilityProblems, client, fillAddress, launch, product, see, sellable, signedIn, startCloud, stock, stripeControl, token, unique, until,
} from './support.mjs';

let cloud;
let browser;
let admin;

before(async () => {
  cloud = await startCloud();
  browser = await launch();
  admin = client(cloud.url, await token(cloud.url, 'journey-admin', true));
});

after(async () => {
  await browser?.close();
  await cloud?.stop();
});

/** Runs a journey with pages that are screenshotted if it fails. */
function journey(name, body) {
  test(name, async () => {
    const pages = [];
    // The files are served with the deployed Content-Security-Policy: anything it blocks
    // (an inline style, a script from elsewhere) fails the journey.
    const blocked = [];
    const open = async (context) => {
      const page = await context.newPage();
      page.on('pageerror', (error) => console.error(`[${name}] page error: ${error.message}`));
      page.on('console', (message) => {
        if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) blocked.push(message.text());
      });
      pages.push(page);
      return page;
    };
    try {
      await body(open);
      assert.deepEqual(blocked, [], 'the Content-Security-Policy blocked nothing');
    } catch (error) {
      const slug = name.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
      await Promise.all(pages.map((p, i) => p.screenshot({ path: join(OUT, `${slug}-${i}.png`), fullPage: true }).catch(() => {})));
      throw error;
    } finally {
      await Promise.all(pages.map((p) => p.context().close().catch(() => {})));
    }
  });
}

/** Adds the product at `#/p/{id}` to the cart, with the options named in `picks` chosen. */
async function addToCart(page, id, picks = []) {
  await page.goto(`${cloud.shop}#/p/${id}`);
  for (const pick of picks) await page.getByRole('radio', { name: pick, exact: true }).check();
  await page.getByRole('button', { name: 'Add to cart' }).click();
  await see(page.locator('.status'), 'Added to your cart');
}

/**
 * One unit of a new product bought by a new customer `who` with `card`, then dispatched, so the
 * payment is captured (arranged through the API): the order's id and the order as the admin reads
 * it once captured, and the run's unique suffix `u`.
 */
async function capturedOrder(who, noun, card) {
  const u = unique();
  const sub = `${who}-${u}`;
  const warehouse = `wh-${u}`;
  const shopper = client(cloud.url, await token(cloud.url, sub));
  const sku = `${who[0].toUpperCase()}${u.toUpperCase()}`;
  await product(admin, shopper, { slug: `${noun}-${u}`, title: `${noun[0].toUpperCase()}${noun.slice(1)} ${u}`, category: `${noun}s-${u}`, variants: [{ sku, price: { amount: 3000, currency: 'USD' } }] });
  await stock(admin, sku, warehouse, 2);
  await sellable(shopper, sku);
  const cart = (await shopper('POST', '/carts')).body;
  await shopper('PUT', `/carts/${cart.id}/items/${sku}`, { quantity: 1 });
  const placed = await shopper('POST', '/checkout', {
    cart_id: cart.id, email: `${sub}@example.com`, shipping_method: 'standard', payment_method: card,
    shipping_address: { name: 'Ada', line1: '1 Main St', city: 'Springfield', postal_code: '62701', country: 'US' },
  }, { 'idempotency-key': `k-${u}` });
  const orderId = placed.body.order_id;
  const shipment = await until(async () => (await admin('GET', `/admin/shipments?status=pending&warehouse=${warehouse}`)).body.items[0], 'the shipment exists', 20_000);
  assert.equal((await admin('POST', `/admin/shipments/${shipment.id}/dispatch`, { carrier: 'dhl', tracking_number: `T${u}` })).status, 200);
  const order = await until(async () => {
    const o = (await admin('GET', `/orders/${orderId}`)).body;
    return o.payment?.captured ? o : null;
  }, 'the payment is captured', 20_000);
  return { u, orderId, order };
}

async function placeOrder(page, card) {
  await page.goto(`${cloud.shop}#/checkout`);
  await fillAddress(page);
  await page.getByRole('radio', { name: card }).check();
  await page.getByRole('button', { name: 'Place order' }).click();
  await page.waitForURL(/#\/orders\/ord_/);
  return page.url().split('/').pop();
}

test('the storefront is served with the deployed Content-Security-Policy, which refuses an inline script', async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const response = await page.goto(cloud.shop);
    const policy = response.headers()['content-security-policy'] ?? '';
    assert.match(policy, /default-src 'none'; script-src 'self' https:\/\/js\.stripe\.com /);
    await see(page.locator('h1'), /\w/);
    const outcome = await page.evaluate(() => new Promise((resolve) => {
      document.addEventListener('securitypolicyviolation', (event) => resolve(`blocked by ${event.effectiveDirective}`), { once: true });
      const script = document.createElement('script');
      script.textContent = 'window.injected = true';
      document.head.append(script);
      setTimeout(() => resolve(window.injected ? 'ran' : 'neither'), 2000);
    }));
    assert.equal(outcome, 'blocked by script-src-elem');
  } finally {
    await context.close();
  }
});

journey('a shopper browses, pages, searches, picks a variant and pays with the test Visa until the order is confirmed', async (open) => {
  const u = unique();
  const shopper = client(cloud.url, await token(cloud.url, `shopper-${u}`));
  const category = `cat-${u}`;
  // 13 products: one more than a page of the storefront's listing.
  const plain = await Promise.all(Array.from({ length: 12 }, (_, i) => product(admin, shopper, {
    slug: `plain-${u}-${i}`, title: `Plain ${u} ${i}`, category,
    variants: [{ sku: `P${u.toUpperCase()}-${i}`, price: { amount: 900, currency: 'USD' } }],
  })));
  const mug = await product(admin, shopper, {
    slug: `mug-${u}`, title: `Speckle${u} Mug`, category,
    options: [{ name: 'colour', values: ['Sand', 'Slate'] }, { name: 'size', values: ['Small', 'Large'] }],
    variants: [['Sand', 'Small'], ['Sand', 'Large'], ['Slate', 'Small'], ['Slate', 'Large']].map(([colour, size], i) => ({
      sku: `M${u.toUpperCase()}-${i}`, options: { colour, size }, price: { amount: size === 'Large' ? 2250 : 1800, currency: 'USD' },
    })),
  });
  const slateLarge = `M${u.toUpperCase()}-3`;
  await stock(admin, slateLarge, 'main', 5);
  await sellable(shopper, slateLarge);
  await until(async () => (await admin('GET', `/products?category=${category}&limit=100`)).body.items.length === 13, 'the category lists 13 products');
  assert.equal(plain.length, 12);

  const context = await browser.newContext({ viewport: { width: 1200, height: 900 }, locale: 'en-US' });
  const page = await open(context);
  // Sign in through the dev sign-in form.
  await page.goto(`${cloud.shop}#/`);
  await page.getByRole('link', { name: 'Sign in' }).click();
  await page.getByLabel('Name').fill(`shopper-${u}`);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await see(page.getByRole('button', { name: /Sign out/ }), `Sign out shopper-${u}`);

  // Home → category: 12 on the first page, the 13th on the next.
  await page.getByRole('link', { name: new RegExp(`Cat ${u}`) }).click();
  await see(page.getByRole('heading', { level: 1 }), `Cat ${u}`);
  await until(async () => (await page.locator('.card').count()) === 12, 'the first page shows 12 products');
  await page.getByRole('link', { name: 'Next page' }).click();
  await until(async () => (await page.locator('.card').count()) === 1, 'the second page shows the 13th product');
  assert.equal(await page.getByRole('link', { name: 'Next page' }).count(), 0, 'the last page has no next page');

  // Search by a word of the title.
  await page.getByRole('searchbox', { name: 'Search products' }).fill(`speckle${u}`);
  await page.keyboard.press('Enter');
  await see(page.getByRole('heading', { level: 1 }), `Results for “speckle${u}”`);
  await page.getByRole('link', { name: `Speckle${u} Mug` }).click();

  // Pick Slate / Large: its price and stock show.
  await see(page.getByRole('heading', { level: 1 }), `Speckle${u} Mug`);
  await see(page.locator('.price.big'), '$18.00');
  await see(page.locator('#availability'), 'Sold out');
  await page.getByRole('radio', { name: 'Slate' }).check();
  await page.getByRole('radio', { name: 'Large' }).check();
  await see(page.locator('.price.big'), '$22.50');
  await see(page.locator('#availability'), '5 in stock');
  await page.getByRole('button', { name: 'Add to cart' }).click();
  await see(page.locator('.status'), 'Added to your cart (1 items)');

  // Cart: change the quantity to 2, totals from the API.
  await page.getByRole('link', { name: 'View cart' }).click();
  await page.getByLabel(`Quantity of Speckle${u} Mug`).fill('2');
  await page.getByLabel(`Quantity of Speckle${u} Mug`).press('Tab');
  await see(page.locator('#subtotal'), '$45.00');
  await page.getByRole('link', { name: 'Check out' }).click();

  // Checkout with the test Visa: the order page follows the saga to confirmed.
  await see(page.getByRole('heading', { level: 1 }), 'Checkout');
  await fillAddress(page);
  await page.getByRole('radio', { name: /Visa 4242/ }).check();
  await page.getByRole('button', { name: 'Place order' }).click();
  await see(page.locator('#order-status'), 'Confirmed', 20_000);
  await see(page.locator('.steps li.done'), 'Confirmed');
  await see(page.locator('.totals'), '$50.00'); // 45.00 + 5.00 standard shipping, no US tax
  await see(page.locator('#order-lines'), `2 × Speckle${u} Mug (${slateLarge})`);
  void mug;
});

journey('a declined card: the order page says the payment was declined and the units are back on sale', async (open) => {
  const u = unique();
  const sub = `declined-${u}`;
  const shopper = client(cloud.url, await token(cloud.url, sub));
  const sku = `D${u.toUpperCase()}`;
  const item = await product(admin, shopper, { slug: `lamp-${u}`, title: `Lamp ${u}`, category: `lamps-${u}`, variants: [{ sku, price: { amount: 4000, currency: 'USD' } }] });
  await stock(admin, sku, 'main', 3);
  await sellable(shopper, sku);

  const page = await open(await signedIn(browser, cloud.url, sub));
  await addToCart(page, item.id);
  await placeOrder(page, /declined/);
  await see(page.locator('#order-status'), 'Cancelled', 20_000);
  await see(page.locator('#cancel-reason'), 'The payment was declined: your card was declined. Nothing was charged');
  await see(page.locator(`#order-lines [data-sku="${sku}"]`), '3 on sale now', 20_000);
  await page.goto(`${cloud.shop}#/p/${item.id}`);
  await see(page.locator('#availability'), '3 in stock');
});

journey('out of stock: two shoppers want the last unit; the second is told it sold out (on a phone-width screen)', async (open) => {
  const u = unique();
  const sku = `L${u.toUpperCase()}`;
  const first = client(cloud.url, await token(cloud.url, `first-${u}`));
  const item = await product(admin, first, { slug: `last-${u}`, title: `Last ${u}`, category: `rare-${u}`, variants: [{ sku, price: { amount: 1500, currency: 'USD' } }] });
  await stock(admin, sku, 'main', 1);
  await sellable(first, sku);

  const phone = { width: 390, height: 844 };
  const pageA = await open(await signedIn(browser, cloud.url, `first-${u}`));
  const pageB = await open(await signedIn(browser, cloud.url, `second-${u}`, { viewport: phone }));
  await addToCart(pageA, item.id);
  await addToCart(pageB, item.id);

  await placeOrder(pageA, /Visa 4242/);
  await see(pageA.locator('#order-status'), 'Confirmed', 20_000);
  await placeOrder(pageB, /Visa 4242/);
  await see(pageB.locator('#order-status'), 'Cancelled', 20_000);
  await see(pageB.locator('#cancel-reason'), 'Sorry: an item sold out before we could reserve it for you. Nothing was charged.');
  await pageB.goto(`${cloud.shop}#/p/${item.id}`);
  await see(pageB.locator('#availability'), 'Sold out');
  assert.ok(await pageB.getByRole('button', { name: 'Add to cart' }).isDisabled(), 'a sold-out variant cannot be added');
  const width = await pageB.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= phone.width, `the phone page scrolls sideways (${width}px wide)`);
});

journey('checkout form errors: a missing postcode shows the API\'s field error next to the field', async (open) => {
  const u = unique();
  const sub = `forms-${u}`;
  const shopper = client(cloud.url, await token(cloud.url, sub));
  const sku = `F${u.toUpperCase()}`;
  const item = await product(admin, shopper, { slug: `pen-${u}`, title: `Pen ${u}`, category: `pens-${u}`, variants: [{ sku, price: { amount: 300, currency: 'USD' } }] });
  await stock(admin, sku, 'main', 2);
  await sellable(shopper, sku);

  const page = await open(await signedIn(browser, cloud.url, sub));
  await addToCart(page, item.id);
  await page.goto(`${cloud.shop}#/checkout`);
  await fillAddress(page, { skip: ['Postcode'] });
  await page.getByRole('button', { name: 'Place order' }).click();
  const postcode = page.getByLabel('Postcode', { exact: true });
  await see(page.locator('.field:has(#f-postal_code) .field-error'), 'must not be empty');
  assert.equal(await postcode.getAttribute('aria-invalid'), 'true');
  assert.match(await postcode.getAttribute('aria-describedby'), /err-f-postal_code/);
  assert.ok(await postcode.evaluate((el) => el === document.activeElement), 'focus moves to the first invalid field');
  await see(page.getByRole('alert'), 'One field needs attention.');

  await postcode.fill('62701');
  await page.getByRole('button', { name: 'Place order' }).click();
  await see(page.locator('#order-status'), /Placed|Items reserved|Confirmed/, 20_000);
});

journey('admin: create and edit a product, stock it, dispatch an order\'s shipment; the shopper sees carrier and tracking', async (open) => {
  const u = unique();
  const warehouse = `wh-${u}`;
  const page = await open(await signedIn(browser, cloud.url, `admin-${u}`, { admin: true }));

  // Create with two colours.
  await page.goto(`${cloud.shop}#/admin/products/new`);
  await page.getByLabel('Title').fill(`Tote ${u}`);
  await page.getByLabel('Slug').fill(`tote-${u}`);
  await page.getByLabel('Category').fill(`bags-${u}`);
  await page.getByLabel('Options (one per line, name: values)').fill('colour: Red, Blue');
  await page.getByRole('button', { name: 'Update the variants from the options' }).click();
  await page.getByLabel('SKU of Red').fill(`T${u.toUpperCase()}-RED`);
  await page.getByLabel('Price of Red').fill('12.50');
  await page.getByLabel('SKU of Blue').fill(`T${u.toUpperCase()}-BLUE`);
  await page.getByLabel('Price of Blue').fill('12.5x');
  await page.getByRole('button', { name: 'Create product' }).click();
  await see(page.locator('.field-error'), 'enter an amount such as 18.00');
  await page.getByLabel('Price of Blue').fill('13');
  await page.getByRole('button', { name: 'Create product' }).click();
  await see(page.getByRole('heading', { level: 1 }), `Edit Tote ${u}`);
  const id = page.url().split('/').pop();

  // Edit with If-Match: the version goes up.
  await page.getByLabel('Title').fill(`Tote ${u} Deluxe`);
  await page.getByRole('button', { name: 'Save changes' }).click();
  await see(page.locator('[role=status]'), 'Saved: version 2.');

  // Stock the red one in a warehouse of its own.
  await page.getByRole('row', { name: /Red/ }).getByRole('link', { name: 'Stock' }).click();
  await see(page.getByRole('heading', { level: 1 }), `Stock of T${u.toUpperCase()}-RED`);
  await page.getByLabel('Warehouse').fill(warehouse);
  await page.getByLabel('On hand').fill('4');
  await page.getByRole('button', { name: 'Set stock' }).click();
  await see(page.locator('#stock-table caption'), '4 on hand, 0 reserved, 4 available');

  // A shopper buys one through the storefront.
  const sub = `buyer-${u}`;
  const shopper = client(cloud.url, await token(cloud.url, sub));
  await sellable(shopper, `T${u.toUpperCase()}-RED`);
  const buyer = await open(await signedIn(browser, cloud.url, sub));
  await addToCart(buyer, id, ['Red']);
  const orderId = await placeOrder(buyer, /Visa 4242/);
  await see(buyer.locator('#order-status'), 'Confirmed', 20_000);

  // The admin finds its shipment and dispatches it.
  await until(async () => (await admin('GET', `/admin/shipments?status=pending&warehouse=${warehouse}`)).body.items.length === 1, 'the shipment is listed');
  await page.goto(`${cloud.shop}#/admin/shipments?status=pending&warehouse=${warehouse}`);
  const card = page.locator(`[data-order="${orderId}"]`);
  await card.getByLabel('Carrier').fill('ups');
  await card.getByLabel('Tracking number').fill(`1Z${u.toUpperCase()}`);
  await card.getByRole('button', { name: 'Dispatch' }).click();
  await see(card, `Dispatched with ups, tracking 1Z${u.toUpperCase()}.`);

  // The shopper's order page (polling) shows it shipped with the carrier and tracking number.
  await see(buyer.locator('#order-status'), 'Shipped', 20_000);
  await see(buyer.locator('#shipments'), `UPS tracking 1Z${u.toUpperCase()}`);

  // Archive: the shop no longer shows it.
  await page.goto(`${cloud.shop}#/admin/products/${id}`);
  await page.getByRole('button', { name: 'Archive' }).click();
  await see(page.locator('[role=status]'), 'Archived: shoppers no longer see it');
  await buyer.goto(`${cloud.shop}#/p/${id}`);
  await see(buyer.getByRole('heading', { level: 1 }), 'Product not found');
});

// Cognito mode in the browser: config.json says "cognito" and the managed login's endpoints are
// stood in for by routes on the page's own origin (the CSP here allows only that; no Cognito is
// reachable). What is checked is the storefront: the PKCE pair it sends, the state it checks,
// what it keeps where, the code leaving the address bar, and sign-out through /logout.
journey('cognito mode: sign-in through the managed login with PKCE, a forged callback refused, sign-out through /logout', async (open) => {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await open(context);
  const auth = { mode: 'cognito', domain: cloud.url, client_id: 'storefront-client', redirect_uri: cloud.shop, scopes: 'openid email' };
  await page.route(`${cloud.url}/shop/config.json`, (route) => route.fulfill({
    json: { api_base: cloud.url, auth, payments: { mode: 'test-cards' }, images: false },
  }));
  const access = await token(cloud.url, `cognito-${unique()}`); // a token the local API accepts
  const idToken = `e30.${Buffer.from(JSON.stringify({ email: 'zoe@example.com', token_use: 'id' })).toString('base64url')}.sig`;
  let authorize = null;
  let exchange = null;
  let logout = null;
  await page.route(`${cloud.url}/oauth2/authorize?*`, (route) => {
    authorize = Object.fromEntries(new URL(route.request().url()).searchParams);
    route.fulfill({ status: 302, headers: { location: `${authorize.redirect_uri}?code=c0de&state=${authorize.state}` } });
  });
  await page.route(`${cloud.url}/oauth2/token`, (route) => {
    exchange = Object.fromEntries(new URLSearchParams(route.request().postData()));
    route.fulfill({ json: { access_token: access, id_token: idToken, token_type: 'Bearer', expires_in: 3600 } });
  });
  await page.route(`${cloud.url}/logout?*`, (route) => {
    logout = Object.fromEntries(new URL(route.request().url()).searchParams);
    route.fulfill({ status: 302, headers: { location: cloud.shop } });
  });

  await page.goto(`${cloud.shop}#/orders`);
  await page.getByRole('link', { name: 'Sign in' }).first().click();
  await page.getByRole('button', { name: 'Continue to sign in' }).click();
  await see(page.locator('h1'), 'Your orders');
  await see(page.locator('#account'), 'Sign out zoe@example.com');
  assert.equal(authorize.code_challenge_method, 'S256');
  assert.match(authorize.state, /^[A-Za-z0-9_-]{22}$/);
  assert.deepEqual([authorize.response_type, authorize.client_id, authorize.scope], ['code', 'storefront-client', 'openid email']);
  assert.deepEqual([exchange.grant_type, exchange.code, exchange.client_id, exchange.redirect_uri], ['authorization_code', 'c0de', 'storefront-client', cloud.shop]);
  const challenge = createHash('sha256').update(exchange.code_verifier).digest('base64url');
  assert.equal(challenge, authorize.code_challenge, 'the verifier sent for the token is the one the challenge was made from');
  assert.ok(!page.url().includes('code='), `the code left the address bar: ${page.url()}`);
  const kept = await page.evaluate(() => [sessionStorage.getItem('ferrocart.session'), localStorage.getItem('ferrocart.session'), sessionStorage.getItem('ferrocart.sign-in')]);
  assert.equal(JSON.parse(kept[0]).token, access, 'the API is sent the access token, kept for the tab');
  assert.deepEqual(kept.slice(1), [null, null], 'nothing on disk, and the pending sign-in is gone');

  await page.getByRole('button', { name: 'Sign out zoe@example.com' }).click();
  await see(page.locator('#account'), 'Sign in');
  // The page forgets the session first, then leaves for /logout: wait for that request.
  for (const deadline = Date.now() + 5000; logout === null && Date.now() < deadline;) await page.waitForTimeout(50);
  assert.deepEqual(logout, { client_id: 'storefront-client', logout_uri: cloud.shop });

  // A callback this tab never started (another site's code) signs no one in.
  exchange = null;
  await page.goto(`${cloud.shop}?code=evil&state=forged`);
  await see(page.locator('[role=alert]'), 'not started in this tab');
  await see(page.locator('#account'), 'Sign in');
  assert.equal(exchange, null, 'no token request for a forged callback');
});

journey('accessibility: the main pages have no serious or critical axe-core violations', async (open) => {
  const u = unique();
  const sub = `a11y-${u}`;
  const shopper = client(cloud.url, await token(cloud.url, sub));
  const sku = `A${u.toUpperCase()}-S`;
  const item = await product(admin, shopper, {
    slug: `cap-${u}`, title: `Cap ${u}`, category: `caps-${u}`, options: [{ name: 'size', values: ['S', 'M'] }],
    variants: [{ sku, options: { size: 'S' }, price: { amount: 2000, currency: 'EUR' } }, { sku: `A${u.toUpperCase()}-M`, options: { size: 'M' }, price: { amount: 2000, currency: 'EUR' } }],
  });
  await stock(admin, sku, 'main', 2);
  await sellable(shopper, sku);
  const page = await open(await signedIn(browser, cloud.url, sub, { admin: true }));
  await addToCart(page, item.id);
  const checks = [
    ['home', '#/', 'Shop by category'],
    ['category', `#/c/caps-${u}`, `Caps ${u}`],
    ['product', `#/p/${item.id}`, `Cap ${u}`],
    ['cart', '#/cart', 'Your cart'],
    ['checkout', '#/checkout', 'Checkout'],
    ['orders', '#/orders', 'Your orders'],
    ['sign-in', '#/sign-in', 'Sign in'],
    ['admin products', '#/admin/products', 'Products'],
    ['admin new product', '#/admin/products/new', 'New product'],
    ['admin orders by flag', '#/admin/orders?flag=disputed', 'Orders'],
    ['admin shipments', '#/admin/shipments', 'Shipments'],
    ['admin returns', '#/admin/returns', 'Returns'],
  ];
  const problems = [];
  for (const [name, hash, title] of checks) {
    await page.goto(`${cloud.shop}${hash}`);
    await see(page.getByRole('heading', { level: 1 }), title);
    await page.waitForLoadState('networkidle');
    for (const problem of await accessibilityProblems(page)) problems.push(`${name}: ${problem}`);
  }
  // The price shows in the product's currency.
  await page.goto(`${cloud.shop}#/p/${item.id}`);
  await see(page.locator('.price.big'), '€20.00');
  assert.deepEqual(problems, []);
});

journey('returns and refunds: the shopper returns a delivered unit, an admin receives it and refunds more; the order page shows both', async (open) => {
  const u = unique();
  const sub = `returner-${u}`;
  const warehouse = `wh-${u}`;
  const shopper = client(cloud.url, await token(cloud.url, sub));
  const sku = `K${u.toUpperCase()}`;
  await product(admin, shopper, { slug: `kettle-${u}`, title: `Kettle ${u}`, category: `kettles-${u}`, variants: [{ sku, price: { amount: 2000, currency: 'USD' } }] });
  await stock(admin, sku, warehouse, 5);
  await sellable(shopper, sku);
  // An order for 2, confirmed, shipped and delivered, arranged through the API.
  const cart = (await shopper('POST', '/carts')).body;
  await shopper('PUT', `/carts/${cart.id}/items/${sku}`, { quantity: 2 });
  const placed = await shopper('POST', '/checkout', {
    cart_id: cart.id, email: `${sub}@example.com`, shipping_method: 'standard', payment_method: 'pm_card_visa',
    shipping_address: { name: 'Ada', line1: '1 Main St', city: 'Springfield', postal_code: '62701', country: 'US' },
  }, { 'idempotency-key': `k-${u}` });
  const orderId = placed.body.order_id;
  const shipment = await until(async () => (await admin('GET', `/admin/shipments?status=pending&warehouse=${warehouse}`)).body.items[0], 'the shipment exists', 20_000);
  assert.equal((await admin('POST', `/admin/shipments/${shipment.id}/dispatch`, { carrier: 'dhl', tracking_number: `T${u}` })).status, 200);
  assert.equal((await admin('POST', `/admin/shipments/${shipment.id}/deliver`)).status, 200);
  await until(async () => (await shopper('GET', `/orders/${orderId}`)).body.status === 'delivered', 'the order is delivered', 20_000);

  // The shopper asks to return one of the two.
  const page = await open(await signedIn(browser, cloud.url, sub));
  await page.goto(`${cloud.shop}#/orders/${orderId}`);
  await see(page.locator('#order-status'), 'Delivered');
  await page.getByLabel(`Units of Kettle ${u} to return (of 2)`).fill('1');
  await page.getByLabel('Reason').selectOption('damaged');
  await page.getByRole('button', { name: 'Request a return' }).click();
  await see(page.locator('[role=status]'), 'Return requested.');
  await see(page.locator('#returns'), `Requested: 1 × ${sku} (damaged)`, 10_000);

  // An admin receives it into a returns warehouse; the units go back on hand there.
  const staff = await open(await signedIn(browser, cloud.url, `staff-${u}`, { admin: true }));
  await until(async () => (await admin('GET', '/admin/returns?status=requested&limit=100')).body.items.some((r) => r.order_id === orderId), 'the return is listed');
  await staff.goto(`${cloud.shop}#/admin/returns?status=requested`);
  const card = staff.locator(`[data-order="${orderId}"]`);
  await card.getByLabel('Receive into warehouse').fill(`returns-${u}`);
  await card.getByRole('button', { name: 'Receive' }).click();
  await see(card, `Received into returns-${u}`);

  // Half the merchandise comes back: 20.00 of the 45.00 captured (never shipping).
  await see(page.locator('#returns'), `Refunded: 1 × ${sku} (damaged), refund $20.00`, 20_000);
  await see(page.locator('#refunded'), 'Refunded $20.00 in all.');
  await see(page.locator('#order-status'), 'partially returned');

  // The admin refunds another 1.00 from the order page.
  await staff.goto(`${cloud.shop}#/orders/${orderId}`);
  await staff.getByLabel('Amount (USD, optional)').fill('1.00');
  await staff.getByRole('button', { name: 'Refund', exact: true }).click();
  await see(staff.locator('[role=status]'), 'Refunded $1.00 ($21.00 in all).');
  await see(page.locator('#refunded'), 'Refunded $21.00 in all.', 20_000);
});

// The refund form says what the API answered (docs/api.md, POST /admin/orders/{id}/refunds):
// a refund Stripe holds `pending` (no `refunded_total` yet), a Stripe outage's 503 and its retry
// under the same Idempotency-Key, and Stripe's refusal. Pending and the outage are real, made with
// the Stripe emulator's pm_card_pendingRefund and fail_next_refund; a refusal at request time
// (e.g. `charge_disputed`) is not emulated, so that one answer is stubbed with page.route.
journey('admin refund form: a pending refund says Stripe is processing it, a 503 says retry and the retry reuses the key, a refusal says nothing was paid back', async (open) => {
  const { u, orderId, order } = await capturedOrder('pender', 'vase', 'pm_card_pendingRefund');
  const intent = order.payment_intent_id;

  const page = await open(await signedIn(browser, cloud.url, `staff-${u}`, { admin: true }));
  const keys = [];
  page.on('request', (request) => {
    if (request.method() === 'POST' && request.url().endsWith(`/admin/orders/${orderId}/refunds`)) keys.push(request.headers()['idempotency-key']);
  });
  const refundButton = page.getByRole('button', { name: 'Refund', exact: true });
  const refund = async (amount) => {
    await page.getByLabel('Amount (USD, optional)').fill(amount);
    const answered = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/refunds'));
    await refundButton.click();
    return answered;
  };
  await page.goto(`${cloud.shop}#/orders/${orderId}`);
  await see(page.getByRole('heading', { name: 'Refund (admin)' }), 'Refund (admin)');

  // Pending at Stripe: the API answers 201 `pending` without `refunded_total`; the form says
  // Stripe is processing it (no total, no "—"), and the order page (polling) lists it pending at
  // the bank with nothing refunded yet.
  const pending = await (await refund('5.00')).json();
  assert.equal(pending.status, 'pending', JSON.stringify(pending));
  assert.equal(pending.refunded_total, undefined);
  const said = await see(page.locator('[role=status]'), 'Stripe is processing the refund of $5.00');
  assert.doesNotMatch(said, /in all|—/);
  await see(page.locator('#refunds'), 'Pending at the bank: $5.00, requested by customer', 20_000);
  await see(page.locator('#refunded'), 'Refunded $0.00 in all.');
  await see(page.locator('.timeline'), 'refund pending');
  // The bank pays it: the order page (polling) shows it paid back.
  await stripeControl(cloud.stripe, `/_test/refunds/${pending.stripe_refund_id}/end`, { status: 'succeeded' });
  await see(page.locator('#refunded'), 'Refunded $5.00 in all.', 20_000);
  await see(page.locator('#refunds'), 'Paid back: $5.00');

  // Stripe answers 500: a 503 with the problem's detail and what a retry does; the amount stays.
  await stripeControl(cloud.stripe, `/_test/payment_intents/${intent}/fail_next_refund`);
  const outage = await refund('2.00');
  assert.equal(outage.status(), 503);
  const alert = page.locator('[role=alert]');
  await see(alert, (await outage.json()).detail);
  await see(alert, 'Try again in 60 seconds: pressing Refund with the same amount, reason and note sends the same Idempotency-Key');
  assert.equal(await page.getByLabel('Amount (USD, optional)').inputValue(), '2.00');
  // The retry sends the same key; Stripe makes the refund once (pending again, this card).
  const again = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/refunds'));
  await refundButton.click();
  assert.equal((await again).status(), 201);
  await see(page.locator('[role=status]'), 'Stripe is processing the refund of $2.00');
  assert.equal(await alert.count(), 0, 'the outage message is gone');
  assert.equal(keys.length, 3);
  assert.notEqual(keys[1], keys[0], 'a new refund, a new key');
  assert.equal(keys[2], keys[1], 'the retry reuses the key');
  const atStripe = await (await fetch(`${cloud.stripe}/v1/refunds?payment_intent=${intent}`, { headers: { authorization: 'Bearer sk_test_local' } })).json();
  assert.deepEqual(atStripe.data.map((r) => r.amount).sort((a, b) => a - b), [200, 500], 'the 2.00 refund made once at Stripe');

  // Stripe refuses (stubbed for this one request): the problem's detail and that nothing was
  // paid back; the next Refund is a new refund with a new key (the refused one's key would
  // answer the refusal again).
  await page.route(`**/admin/orders/${orderId}/refunds`, (route) => route.fulfill({
    status: 422, contentType: 'application/problem+json',
    body: JSON.stringify({ type: '/problems/refund-refused', title: 'Stripe refused the refund', status: 422, detail: 'Stripe refused refund rfd_01JD (charge_disputed); nothing was refunded.' }),
  }), { times: 1 });
  await refund('1.00');
  await see(alert, 'Stripe refused refund rfd_01JD (charge_disputed)');
  await see(alert, 'Nothing was paid back; the amount can be refunded again.');
  const real = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/refunds'));
  await refundButton.click();
  assert.equal((await real).status(), 201);
  await see(page.locator('[role=status]'), 'Stripe is processing the refund of $1.00');
  assert.equal(keys.length, 5);
  assert.notEqual(keys[4], keys[3], 'a new key after a refusal');
  assert.deepEqual(await accessibilityProblems(page), []);
});

// After a 503 the form keeps the key; an admin who then changes the amount sends it with another
// body, which the API answers 422 (field error on header:Idempotency-Key). The form says the
// earlier request may still complete on its own and offers an explicit new refund (new key); the
// earlier one is then finished by payment's sweep, so Stripe ends with both, each once.
journey('admin refund form: a changed amount after a 503 says the earlier refund may still complete and offers a new, separate refund', async (open) => {
  const { u, orderId, order } = await capturedOrder('changer', 'jug', 'pm_card_visa');
  const intent = order.payment_intent_id;
  const atStripe = async () => (await (await fetch(`${cloud.stripe}/v1/refunds?payment_intent=${intent}`, { headers: { authorization: 'Bearer sk_test_local' } })).json())
    .data.map((r) => r.amount).sort((a, b) => a - b);

  const page = await open(await signedIn(browser, cloud.url, `staff-${u}`, { admin: true }));
  const keys = [];
  page.on('request', (request) => {
    if (request.method() === 'POST' && request.url().endsWith(`/admin/orders/${orderId}/refunds`)) keys.push(request.headers()['idempotency-key']);
  });
  const answer = () => page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/refunds'));
  const refund = async (amount) => {
    await page.getByLabel('Amount (USD, optional)').fill(amount);
    const answered = answer();
    await page.getByRole('button', { name: 'Refund', exact: true }).click();
    return answered;
  };
  await page.goto(`${cloud.shop}#/orders/${orderId}`);
  await see(page.getByRole('heading', { name: 'Refund (admin)' }), 'Refund (admin)');

  // A Stripe outage: 503, the key is kept for a retry.
  await stripeControl(cloud.stripe, `/_test/payment_intents/${intent}/fail_next_refund`);
  assert.equal((await refund('2.00')).status(), 503);
  // The admin changes the amount instead: the kept key with another body is the API's 422.
  const changed = await refund('3.00');
  assert.equal(changed.status(), 422);
  assert.ok((await changed.json()).errors.some((e) => e.pointer === 'header:Idempotency-Key'));
  const alert = page.locator('[role=alert]');
  await see(alert, 'The earlier refund request (amount $2.00) may still be in progress at Stripe: it completes on its own');
  assert.equal(keys.length, 2);
  assert.equal(keys[1], keys[0], 'the key is not renewed silently');
  assert.deepEqual(await atStripe(), [], 'nothing refunded yet');
  assert.deepEqual(await accessibilityProblems(page), []);

  // "Make a new refund": a separate refund of $3.00 under a new key.
  const made = answer();
  await page.getByRole('button', { name: 'Make a new refund' }).click();
  assert.equal((await made).status(), 201);
  await see(page.locator('[role=status]'), 'Refunded $3.00');
  assert.equal(await alert.count(), 0, 'the message is gone');
  assert.equal(keys.length, 3);
  assert.notEqual(keys[2], keys[0], 'a new refund, a new key');
  assert.deepEqual(await atStripe(), [300], 'only the new refund so far');

  // The earlier request completes on its own: payment's sweep, fired as if its time had come.
  const later = new Date(Date.now() + 5 * 60_000).toISOString();
  const swept = await fetch(`${cloud.url}/_localcloud/schedules/PaymentSweepFunction/StalledSweep?time=${encodeURIComponent(later)}`, { method: 'POST' });
  assert.ok(swept.ok, await swept.text());
  assert.deepEqual(await atStripe(), [200, 300], 'the earlier $2.00 once and the new $3.00 once');
  await see(page.locator('#refunded'), 'Refunded $5.00 in all.', 20_000);
});

// A refund that fails at the bank and a lost dispute, arranged through the API and the Stripe
// emulator's controls (as tests/e2e does): the admin finds the order under its flag, sees both on
// its page, and resolves the failed refund with a note (a blank note first).
journey('flags: an admin finds a flagged order, sees the failed refund and the lost dispute, and resolves a flag with a note', async (open) => {
  const { u, orderId, order: captured } = await capturedOrder('flagged', 'lamp', 'pm_card_pendingRefund');
  // A refund of 5.00 the bank fails; then the customer's bank disputes the payment and wins.
  const refund = await admin('POST', `/admin/orders/${orderId}/refunds`, { amount: 500, reason: 'requested_by_customer' }, { 'idempotency-key': `r-${u}` });
  assert.equal(refund.status, 201, JSON.stringify(refund.body));
  await stripeControl(cloud.stripe, `/_test/refunds/${refund.body.stripe_refund_id}/end`, { status: 'failed', failure_reason: 'expired_or_canceled_card' });
  const dispute = await stripeControl(cloud.stripe, `/_test/payment_intents/${captured.payment_intent_id}/dispute`);
  await until(async () => (await admin('GET', `/orders/${orderId}`)).body.disputes?.length, 'the dispute is on the order', 20_000);
  await stripeControl(cloud.stripe, `/_test/disputes/${dispute.id}/close`, { status: 'lost' });
  await until(async () => {
    const o = (await admin('GET', `/orders/${orderId}`)).body;
    return o.disputes?.[0]?.outcome === 'lost' && o.flags.includes('refund_failed') && o.flags.includes('disputed');
  }, 'the order is flagged refund_failed and disputed, the dispute lost', 20_000);

  // The flag filter offers every flag in words; the order is listed under "Refund failed".
  const page = await open(await signedIn(browser, cloud.url, `staff-${u}`, { admin: true }));
  await page.goto(`${cloud.shop}#/admin/orders`);
  await see(page.getByRole('heading', { level: 1 }), 'Orders');
  const options = await page.getByLabel('Show orders').locator('option[value^="flag:"]').allTextContents();
  assert.deepEqual(options, ['Flag: Payment not collected', 'Flag: Shipped after cancelling', 'Flag: Payment disputed', 'Flag: Refund failed']);
  await page.getByLabel('Show orders').selectOption('flag:refund_failed');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.waitForURL(/flag=refund_failed/);
  await page.getByRole('link', { name: orderId }).click();

  // The order page: the failed refund with the bank's reason, the lost dispute, both flags.
  await see(page.locator('#refunds'), 'Failed: nothing paid back: $5.00, requested by customer');
  await see(page.locator('#refunds'), 'the bank’s reason: expired or canceled card');
  await see(page.locator('#refunded'), 'Refunded $0.00 in all.');
  await see(page.locator('#disputes'), 'Lost: the money is gone: $');
  const flag = page.locator('[data-flag="refund_failed"]');
  await see(flag, 'Refund failed');
  await see(page.locator('[data-flag="disputed"]'), 'Payment disputed');
  assert.deepEqual(await accessibilityProblems(page), [], 'no serious or critical axe-core violations on a flagged order');

  // A blank note: the API's error beside the field, focus on it; nothing resolved.
  await flag.getByRole('button', { name: 'Resolve' }).click();
  await see(flag.locator('.field-error'), /./);
  await see(flag.locator('[role=alert]'), 'One field needs attention.');
  assert.equal(await flag.getByLabel('Note (required: what was done)').evaluate((el) => el === document.activeElement && el.getAttribute('aria-invalid')), 'true');

  // A second refund fails while the page is open: the flag is raised again by a new fact, so a
  // resolution decided on the page as shown is refused (412); the page reloads the order and says so.
  const second = await admin('POST', `/admin/orders/${orderId}/refunds`, { amount: 500, reason: 'requested_by_customer' }, { 'idempotency-key': `r2-${u}` });
  assert.equal(second.status, 201, JSON.stringify(second.body));
  await stripeControl(cloud.stripe, `/_test/refunds/${second.body.stripe_refund_id}/end`, { status: 'failed', failure_reason: 'lost_or_stolen_card' });
  await until(async () => (await admin('GET', `/orders/${orderId}`)).body.payment?.refunds?.filter((r) => r.status === 'failed').length === 2, 'the second failed refund is on the order', 20_000);
  await flag.getByLabel('Note (required: what was done)').fill(`paid back by bank transfer ${u}`);
  await flag.getByRole('button', { name: 'Resolve' }).click();
  await see(flag.locator('[role=alert]'), 'This order changed since you opened it');
  await see(page.locator('#refunds'), 'the bank’s reason: lost or stolen card');
  assert.equal(await page.locator('#flag-resolutions').count(), 0, 'nothing resolved');

  // With a note, on the order as it is: the flag leaves, the resolution shows who and what.
  await flag.getByRole('button', { name: 'Resolve' }).click();
  await see(page.locator('#flag-resolutions'), `Refund failed resolved by staff-${u}`);
  await see(page.locator('#flag-resolutions'), `paid back by bank transfer ${u}`);
  assert.equal(await page.locator('[data-flag="refund_failed"]').count(), 0, 'the resolved flag has no Resolve form');
  await see(page.locator('[data-flag="disputed"]'), 'Payment disputed');
  const after = (await admin('GET', `/orders/${orderId}`)).body;
  assert.deepEqual(after.flags, ['disputed']);
  assert.deepEqual(await accessibilityProblems(page), []);
});
