// Sign-in with Cognito's managed login (config.json auth.mode "cognito"): the redirects, the
// code-for-tokens request and what is kept. Loaded only in that mode.
//
// Kept in sessionStorage: the pending sign-in (state and code verifier) must survive the trip
// to the login and back, and the session lives as long as the tab, not on disk after it is
// closed. A script injected into the page could read it as it could read memory; the
// Content-Security-Policy (scripts from this origin and js.stripe.com only) is what keeps such
// scripts out.

import { SignInError, authorizeUrl, callbackCode, challengeFor, logoutUrl, randomString, sessionFrom, tokenRequest } from './oauth.js';

const PENDING = 'ferrocart.sign-in';

/** Goes to the managed login; it comes back to auth.redirect_uri with ?code=&state=. */
export async function start(auth, next) {
  const verifier = randomString(32);
  const state = randomString(16);
  sessionStorage.setItem(PENDING, JSON.stringify({ state, verifier, next }));
  location.assign(authorizeUrl(auth, { state, challenge: await challengeFor(verifier) }));
}

/** Finishes the sign-in the login sent the shopper back from; resolves to the hash to show. */
export async function finish(auth, keep) {
  const params = new URLSearchParams(location.search);
  let pending = null;
  try { pending = JSON.parse(sessionStorage.getItem(PENDING) ?? 'null'); } catch { /* none */ }
  sessionStorage.removeItem(PENDING);
  // The code is single-use and short-lived, but it leaves the address bar and history at once.
  history.replaceState(null, '', location.pathname);
  const code = callbackCode(params, pending);
  const request = tokenRequest(auth, code, pending.verifier);
  const response = await fetch(request.url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: request.body,
  });
  const tokens = await response.json().catch(() => null);
  if (!response.ok || !tokens?.access_token) throw new SignInError(`Sign-in failed: ${tokens?.error ?? `HTTP ${response.status}`}.`);
  keep(sessionFrom(tokens));
  return pending.next || '#/';
}

/** Ends the managed login's session too, then comes back to the shop. */
export function leave(auth) { location.assign(logoutUrl(auth)); }
