// The router: hash routes (so any static host serves the app without rewrites), the header's
// account links and search box. Shopper views live in shop.js; the admin console in admin.js,
// loaded only when an admin page is opened.

import { cognito, keepSession, loadConfig, onSessionChange, session, settings, signOut } from './api.js';
import { fill, h } from './dom.js';
import * as shop from './shop.js';

const main = document.getElementById('main');

// Each navigation gets a number; a view that is still loading or polling checks it to stop
// when the shopper has moved on.
let navigation = 0;
export const current = (token) => token === navigation;

const routes = [
  [/^\/$/, shop.home],
  [/^\/c\/([a-z0-9-]+)$/, shop.category],
  [/^\/search$/, shop.search],
  [/^\/p\/([A-Za-z0-9_]+)$/, shop.product],
  [/^\/cart$/, shop.cartPage],
  [/^\/checkout$/, shop.checkout],
  [/^\/orders$/, shop.orders],
  [/^\/orders\/([A-Za-z0-9_]+)$/, shop.order],
  [/^\/sign-in$/, shop.signIn],
  [/^\/admin(\/.*)?$/, async (view, params, rest) => (await import('./admin.js')).route(view, params, rest ?? '')],
];

async function render() {
  const token = ++navigation;
  const [path, search = ''] = (location.hash.slice(1) || '/').split('?');
  const params = new URLSearchParams(search);
  // Each view draws into a container of its own: one that is still loading when the shopper
  // moves on draws into a detached node, never over the new page.
  const container = h('div');
  main.replaceChildren(container);
  const view = { main: container, token, live: () => current(token) };
  for (const [pattern, handler] of routes) {
    const match = pattern.exec(path);
    if (!match) continue;
    try {
      await handler(view, params, ...match.slice(1));
    } catch (error) {
      if (!current(token)) return;
      fill(container, h('h1', { tabindex: '-1' }, 'Something went wrong'), h('p', { class: 'alert', role: 'alert' }, error.message));
    }
    if (current(token)) focusHeading();
    return;
  }
  fill(container, h('h1', { tabindex: '-1' }, 'Page not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the shop')));
  focusHeading();
}

/** After a navigation, focus moves to the new page's heading, as a page load would. */
function focusHeading() {
  const heading = main.querySelector('h1');
  if (!heading) return;
  heading.setAttribute('tabindex', '-1');
  document.title = `${heading.textContent} · Ferrocart`;
  if (!firstRender) heading.focus({ preventScroll: false });
  firstRender = false;
}
let firstRender = true;

function account() {
  const me = session();
  const items = [h('li', {}, h('a', { href: '#/cart' }, 'Cart'))];
  if (me) {
    items.push(h('li', {}, h('a', { href: '#/orders' }, 'Orders')));
    if (me.admin) items.push(h('li', {}, h('a', { href: '#/admin' }, 'Admin')));
    items.push(h('li', {}, h('button', { type: 'button', class: 'link', onclick: leave }, `Sign out ${me.name ?? me.sub}`)));
  } else {
    items.push(h('li', {}, h('a', { href: `#/sign-in?next=${encodeURIComponent(location.hash || '#/')}` }, 'Sign in')));
  }
  fill(document.getElementById('account'), items);
}

/** Signs out here, and with Cognito at the managed login too (it comes back to the shop). */
async function leave() {
  signOut();
  const auth = settings().auth ?? {};
  if (auth.mode === 'cognito') (await cognito()).leave(auth);
  else location.hash = '#/';
}

/** Cognito mode: the managed login sent the shopper back with ?code=&state= (or ?error=). */
async function returnFromLogin() {
  const auth = settings().auth ?? {};
  const query = new URLSearchParams(location.search);
  if (auth.mode !== 'cognito' || !(query.has('code') || query.has('error'))) return;
  try {
    location.hash = await (await cognito()).finish(auth, keepSession);
  } catch (error) {
    location.hash = `#/sign-in?error=${encodeURIComponent(error.message)}`;
  }
}

document.getElementById('search').addEventListener('submit', (event) => {
  event.preventDefault();
  const q = new FormData(event.target).get('q').trim();
  location.hash = `#/search?q=${encodeURIComponent(q)}`;
});

try {
  await loadConfig();
  await returnFromLogin();
  onSessionChange(account);
  account();
  window.addEventListener('hashchange', () => { account(); render(); });
  await render();
} catch (error) {
  fill(main, h('h1', {}, 'The shop could not start'), h('p', { role: 'alert' }, error.message));
}
