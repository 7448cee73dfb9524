// The managed login's PKCE and callback checks (public/js/oauth.js), in node: no browser, no
// network. The redirects and the token request themselves need a Cognito domain (not here).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  SignInError, authorizeUrl, callbackCode, challengeFor, claimsOf, logoutUrl, randomString, sessionFrom, tokenRequest,
} from '../public/js/oauth.js';

const auth = {
  mode: 'cognito',
  domain: 'https://shop-login.auth.eu-west-1.amazoncognito.com',
  client_id: '1example23456789',
  redirect_uri: 'https://d111111abcdef8.cloudfront.net/',
  scopes: 'openid email',
};

test('a code verifier is 43 unreserved characters, new each time', () => {
  const one = randomString(32);
  assert.match(one, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(one, randomString(32));
});

test('the S256 challenge is RFC 7636 appendix B’s for its verifier', async () => {
  assert.equal(await challengeFor('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'), 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM');
});

test('the authorize URL asks for a code with the S256 challenge, the state and the redirect', () => {
  const url = new URL(authorizeUrl(auth, { state: 'st4te', challenge: 'ch4llenge' }));
  assert.equal(url.origin + url.pathname, 'https://shop-login.auth.eu-west-1.amazoncognito.com/oauth2/authorize');
  assert.deepEqual(Object.fromEntries(url.searchParams), {
    response_type: 'code',
    client_id: '1example23456789',
    redirect_uri: 'https://d111111abcdef8.cloudfront.net/',
    scope: 'openid email',
    state: 'st4te',
    code_challenge: 'ch4llenge',
    code_challenge_method: 'S256',
  });
});

test('the callback gives its code only when it comes back with the state this tab sent', () => {
  const pending = { state: 'st4te', verifier: 'v'.repeat(43) };
  assert.equal(callbackCode(new URLSearchParams('code=abc&state=st4te'), pending), 'abc');
  assert.throws(() => callbackCode(new URLSearchParams('code=abc&state=other'), pending), SignInError);
  assert.throws(() => callbackCode(new URLSearchParams('code=abc'), pending), SignInError);
  // A callback this tab did not start (another site's code, or a reload after it was used).
  assert.throws(() => callbackCode(new URLSearchParams('code=abc&state=st4te'), null), /not started in this tab/);
  assert.throws(() => callbackCode(new URLSearchParams('state=st4te'), pending), /without a code/);
  assert.throws(() => callbackCode(new URLSearchParams('error=access_denied&state=st4te'), pending), /cancelled/);
  // An error with a foreign state is still refused as a foreign callback, not shown as ours.
  assert.throws(() => callbackCode(new URLSearchParams('error=server_error&state=x'), pending), /another state/);
});

test('the token request sends the code, the verifier and the redirect, and no secret', () => {
  const request = tokenRequest(auth, 'abc', 'verifier-43');
  assert.equal(request.url, 'https://shop-login.auth.eu-west-1.amazoncognito.com/oauth2/token');
  assert.deepEqual(Object.fromEntries(new URLSearchParams(request.body)), {
    grant_type: 'authorization_code',
    client_id: '1example23456789',
    code: 'abc',
    redirect_uri: 'https://d111111abcdef8.cloudfront.net/',
    code_verifier: 'verifier-43',
  });
});

test('sign-out goes through the managed login’s /logout back to the shop', () => {
  const url = new URL(logoutUrl(auth));
  assert.equal(url.pathname, '/logout');
  assert.equal(url.searchParams.get('client_id'), '1example23456789');
  assert.equal(url.searchParams.get('logout_uri'), 'https://d111111abcdef8.cloudfront.net/');
});

const jwt = (claims) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;

test('the session sends the access token and shows the ID token’s e-mail', () => {
  const access = jwt({ sub: 'a1b2-c3', 'cognito:groups': ['admin'], exp: 1900000000, client_id: auth.client_id, token_use: 'access', username: 'a1b2-c3' });
  const id = jwt({ sub: 'a1b2-c3', email: 'zoë@example.com', aud: auth.client_id, token_use: 'id' });
  const session = sessionFrom({ access_token: access, id_token: id, token_type: 'Bearer', expires_in: 3600 });
  assert.deepEqual(session, { token: access, sub: 'a1b2-c3', admin: true, exp: 1900000000, email: 'zoë@example.com', name: 'zoë@example.com' });
  assert.equal(claimsOf(id).email, 'zoë@example.com', 'UTF-8 claims decode');
  const shopper = sessionFrom({ access_token: jwt({ sub: 's', exp: 1, username: 'u' }) });
  assert.equal(shopper.admin, false);
  assert.equal(shopper.name, 'u');
});
