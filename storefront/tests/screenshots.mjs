// `make screenshots`: the README's pictures of the storefront and the admin console, taken from a
// local cloud started here with a few mugs made through the admin API.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, client, launch, see, signedIn, startCloud, stock, token } from './support.mjs';

const out = join(ROOT, 'docs/images');
mkdirSync(out, { recursive: true });

const cloud = await startCloud();
const browser = await launch();
try {
  const admin = client(cloud.url, await token(cloud.url, 'root', true));
  const names = ['Rusty', 'Ferrous', 'Borrowed', 'Async', 'Lifetime', 'Crab', 'Zero-Cost', 'Fearless'];
  for (const [i, name] of names.entries()) {
    const code = `MUG-${String(i + 1).padStart(2, '0')}`;
    const colours = ['White', 'Black', 'Blue'];
    await admin('POST', '/admin/products', {
      slug: `${name.toLowerCase()}-mug`, title: `${name} Mug`, category: 'mugs', status: 'active',
      description: `The ${name.toLowerCase()} mug: 350 ml of stoneware, dishwasher safe.`,
      options: [{ name: 'colour', values: colours }],
      variants: colours.map((c) => ({ sku: `${code}-${c.slice(0, 3).toUpperCase()}`, options: { colour: c }, price: { amount: 1400 + 100 * i, currency: 'USD' } })),
    });
    for (const c of colours) await stock(admin, `${code}-${c.slice(0, 3).toUpperCase()}`, 'main', 20);
  }
  const viewport = { width: 1200, height: 800 };
  const shopper = await (await signedIn(browser, cloud.url, 'alice', { viewport })).newPage();
  await shopper.goto(`${cloud.shop}#/c/mugs`);
  await see(shopper.getByRole('heading', { level: 1 }), 'Mugs');
  await shopper.locator('.card').first().waitFor();
  await shopper.screenshot({ path: join(out, 'storefront.png') });
  const console_ = await (await signedIn(browser, cloud.url, 'root', { admin: true, viewport })).newPage();
  const first = await shopper.locator('.card h2 a').first().getAttribute('href');
  await console_.goto(`${cloud.shop}#/admin/products/${first.split('/').pop()}`);
  await see(console_.getByRole('heading', { level: 1 }), 'Edit');
  await console_.screenshot({ path: join(out, 'admin-console.png') });
  console.log(`wrote ${join(out, 'storefront.png')} and ${join(out, 'admin-console.png')}`);
} finally {
  await browser.close();
  await cloud.stop();
}
