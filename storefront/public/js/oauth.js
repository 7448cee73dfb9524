// Cognito managed login for a public client: the authorization code flow with PKCE (RFC 7636,
// S256). Pure functions over Web Crypto and URLs, no DOM, so node's test runner checks them
// (tests/oauth.test.mjs); cognito.js does the redirects, the storage and the token request.
//
// `auth` is config.json's auth section in "cognito" mode: {domain, client_id, redirect_uri,
// scopes} (make deploy-storefront writes it from the stack's outputs).

const base64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

/** `bytes` random bytes as base64url: 32 give a 43-character code verifier (RFC 7636's least). */
export function randomString(bytes = 32) {
  const buffer = new Uint8Array(bytes);
  crypto.getRandomValues(buffer);
  return base64url(buffer);
}

/** The S256 code challenge of a verifier: base64url(SHA-256(ascii(verifier))). */
export async function challengeFor(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** Where the sign-in starts: the managed login's authorize endpoint. */
export function authorizeUrl(auth, { state, challenge }) {
  const url = new URL('/oauth2/authorize', auth.domain);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: auth.client_id,
    redirect_uri: auth.redirect_uri,
    scope: auth.scopes ?? 'openid email',
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();
  return url.toString();
}

/** A sign-in that did not come back as it left. */
export class SignInError extends Error {}

/**
 * The authorization code the login sent back to the storefront (`params`: the callback's query),
 * checked against the sign-in this browser tab started (`pending`: `{state, verifier}`, or
 * null). A callback without a matching state is refused: another site may have sent the
 * shopper here with a code of its own (login CSRF).
 */
export function callbackCode(params, pending) {
  if (!pending?.state || !pending?.verifier) throw new SignInError('This sign-in was not started in this tab: sign in again.');
  if (params.get('state') !== pending.state) throw new SignInError('The sign-in came back with another state than it left with: sign in again.');
  const error = params.get('error');
  if (error) throw new SignInError(error === 'access_denied' ? 'Sign-in was cancelled.' : `Sign-in failed: ${params.get('error_description') ?? error}.`);
  const code = params.get('code');
  if (!code) throw new SignInError('The sign-in came back without a code: sign in again.');
  return code;
}

/** The token request that trades the code and its verifier for tokens (no client secret). */
export function tokenRequest(auth, code, verifier) {
  return {
    url: new URL('/oauth2/token', auth.domain).toString(),
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      client_id: auth.client_id,
      code,
      redirect_uri: auth.redirect_uri,
      code_verifier: verifier,
    }).toString(),
  };
}

/** The managed login's sign-out, which ends its own session too and comes back to the shop. */
export function logoutUrl(auth) {
  const url = new URL('/logout', auth.domain);
  url.search = new URLSearchParams({ client_id: auth.client_id, logout_uri: auth.redirect_uri }).toString();
  return url.toString();
}

/** A JWT's claims, unverified: the API verifies the token it is sent; this only reads it. */
export function claimsOf(jwt) {
  const payload = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))));
}

/**
 * The session kept from a token response. The API is sent the access token (the HTTP API's
 * JWT authorizer checks its `client_id` against the app client, as it checks an ID token's
 * `aud`); the ID token is only read for the e-mail shown in the header and put in checkout.
 * No refresh token is kept: when the access token expires the shopper signs in again, which
 * the managed login answers at once while its own session lasts.
 */
export function sessionFrom(tokens) {
  const access = claimsOf(tokens.access_token);
  const id = tokens.id_token ? claimsOf(tokens.id_token) : {};
  const groups = access['cognito:groups'] ?? [];
  return { token: tokens.access_token, sub: access.sub, admin: groups.includes('admin'), exp: access.exp, email: id.email, name: id.email ?? access.username };
}
