// What `make deploy-storefront` uploads, decided offline: the deployed config.json from the
// stack's outputs, and the files laid out for CloudFront's cache. Pure functions (no AWS, no
// disk), tested by tests/deploy.test.mjs; deploy.mjs does the AWS calls.

import { createHash } from 'node:crypto';

/** `aws cloudformation describe-stacks` output → `{outputs, parameters}` of its one stack. */
export function describeStack(described) {
  const stack = described?.Stacks?.[0];
  if (!stack) throw new Error('describe-stacks answered no stack');
  const pairs = (list, key, value) => Object.fromEntries((list ?? []).map((item) => [item[key], item[value]]));
  return {
    name: stack.StackName,
    outputs: pairs(stack.Outputs, 'OutputKey', 'OutputValue'),
    parameters: pairs(stack.Parameters, 'ParameterKey', 'ParameterValue'),
  };
}

/**
 * The deployed storefront's config.json: the API, Cognito's managed login and Stripe.js.
 * Throws, saying which parameter to set, when the stack lacks one of them.
 */
export function configFor({ name, outputs }) {
  const need = (key, fix) => {
    if (!outputs[key]) throw new Error(`stack ${name} has no ${key} output: ${fix}`);
    return outputs[key];
  };
  need('StorefrontUrl', 'deploy it with StorefrontHosting=cloudfront');
  const domain = need('LoginDomainUrl', 'deploy it with LoginDomainPrefix=<a prefix unique in the region>');
  const redirect = need('LoginRedirectUrl', 'deploy it again with StorefrontUrl=<its StorefrontUrl output> (the login needs the callback URL)');
  const key = need('StripePublishableKey', 'deploy it with StripePublishableKey=pk_test_… or pk_live_… (the pair of StripeSecretKey)');
  return {
    api_base: need('ApiUrl', 'is this a Ferrocart stack?'),
    auth: { mode: 'cognito', domain, client_id: need('UserPoolClientId', 'is this a Ferrocart stack?'), redirect_uri: redirect, scopes: outputs.LoginScopes ?? 'openid email' },
    payments: { mode: 'stripe', publishable_key: key },
    images: true,
  };
}

/** What is deployable but probably wrong: said before uploading, not refused. */
export function warnings({ outputs, parameters }) {
  const found = [];
  const site = outputs.StorefrontUrl;
  if (site && outputs.LoginRedirectUrl && outputs.LoginRedirectUrl !== `${site}/`) {
    found.push(`the login comes back to ${outputs.LoginRedirectUrl}, not to this storefront (${site}/): is StorefrontUrl a custom domain in front of it?`);
  }
  const origins = (parameters.AllowedOrigins ?? '*').split(',').map((origin) => origin.trim());
  if (site && !origins.includes('*') && !origins.includes(site)) {
    found.push(`AllowedOrigins (${origins.join(',')}) does not allow ${site}: browsers will refuse the API's answers. Deploy with AllowedOrigins=${site}`);
  }
  if (origins.includes('*')) found.push(`AllowedOrigins is *: any site may call the API from a browser. Deploy with AllowedOrigins=${site} to allow only the storefront`);
  if (/^pk_test_/.test(outputs.StripePublishableKey ?? '')) found.push('the Stripe publishable key is a test key: no real card can pay');
  return found;
}

const TYPES = { html: 'text/html; charset=utf-8', css: 'text/css; charset=utf-8', js: 'text/javascript; charset=utf-8', json: 'application/json', svg: 'image/svg+xml', png: 'image/png', ico: 'image/x-icon' };
export const contentType = (path) => TYPES[path.split('.').pop()] ?? 'application/octet-stream';

export const LONG = 'public, max-age=31536000, immutable';
export const REVALIDATE = 'no-cache';

/**
 * The uploads of one release. Every file but index.html goes under assets/<version>/, where
 * version is a hash of all the files' contents, so it is cached for a year and never goes
 * stale; index.html (pointing at that folder) and config.json are revalidated on every load.
 * `files`: a Map of path relative to storefront/public → Buffer.
 */
export function release(files, config) {
  const hash = createHash('sha256');
  for (const path of [...files.keys()].sort()) hash.update(path).update('\0').update(files.get(path)).update('\0');
  const version = hash.digest('hex').slice(0, 12);
  const index = files.get('index.html');
  if (!index) throw new Error('storefront/public has no index.html');
  const uploads = [];
  for (const [path, body] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    if (path === 'index.html' || path === 'config.json') continue;
    uploads.push({ key: `assets/${version}/${path}`, body, contentType: contentType(path), cacheControl: LONG });
  }
  // Relative references (app.css, js/app.js) move with the assets; data:, #fragments, absolute
  // URLs and the config.json fetched at run time stay where they are.
  const page = index.toString('utf8').replace(/\b(href|src)="(?![a-z]+:|#|\/)([^"]+)"/gi, (_, attribute, ref) => `${attribute}="assets/${version}/${ref}"`);
  uploads.push({ key: 'config.json', body: Buffer.from(`${JSON.stringify(config, null, 2)}\n`), contentType: contentType('config.json'), cacheControl: REVALIDATE });
  // Last: the page that points at the new assets goes up only once they are all there.
  uploads.push({ key: 'index.html', body: Buffer.from(page), contentType: contentType('index.html'), cacheControl: REVALIDATE });
  return { version, uploads };
}

/** The paths CloudFront must forget: the two revalidated files, and `/` (served as index.html). */
export const INVALIDATE = ['/', '/index.html', '/config.json'];
