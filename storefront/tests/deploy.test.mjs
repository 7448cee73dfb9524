// `make deploy-storefront`, offline: the config.json it writes from a stack's outputs, the
// release layout and caching, and the AWS CLI commands it runs in order, against a recorded
// describe-stacks answer (no AWS here: the commands are checked, not run).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { deploy, readTree } from '../deploy/deploy.mjs';
import { INVALIDATE, LONG, REVALIDATE, configFor, describeStack, release, warnings } from '../deploy/release.mjs';

const PUBLIC = join(dirname(fileURLToPath(import.meta.url)), '../public');

/** describe-stacks as the AWS CLI prints it, for a stack deployed the second time (README). */
const described = (outputs = {}, parameters = {}) => ({
  Stacks: [{
    StackName: 'shop',
    StackStatus: 'UPDATE_COMPLETE',
    Parameters: Object.entries({ StorefrontHosting: 'cloudfront', AllowedOrigins: 'https://d111111abcdef8.cloudfront.net', ...parameters })
      .map(([ParameterKey, ParameterValue]) => ({ ParameterKey, ParameterValue })),
    Outputs: Object.entries({
      ApiUrl: 'https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com',
      UserPoolClientId: '1example23456789',
      StorefrontUrl: 'https://d111111abcdef8.cloudfront.net',
      StorefrontBucketName: 'shop-storefrontbucket-abc123',
      StorefrontDistributionId: 'E2EXAMPLE',
      LoginDomainUrl: 'https://shop-login.auth.eu-west-1.amazoncognito.com',
      LoginRedirectUrl: 'https://d111111abcdef8.cloudfront.net/',
      LoginScopes: 'openid email',
      StripePublishableKey: 'pk_live_51Example',
      ...outputs,
    }).filter(([, value]) => value !== undefined).map(([OutputKey, OutputValue]) => ({ OutputKey, OutputValue })),
  }],
});

test('config.json says cognito and stripe with the stack’s API, client, login and key', () => {
  assert.deepEqual(configFor(describeStack(described())), {
    api_base: 'https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com',
    auth: {
      mode: 'cognito',
      domain: 'https://shop-login.auth.eu-west-1.amazoncognito.com',
      client_id: '1example23456789',
      redirect_uri: 'https://d111111abcdef8.cloudfront.net/',
      scopes: 'openid email',
    },
    payments: { mode: 'stripe', publishable_key: 'pk_live_51Example' },
    images: true,
  });
});

test('a stack missing a piece is refused with the parameter that adds it', () => {
  const refused = (outputs) => assert.throws(() => configFor(describeStack(described(outputs))), Error);
  refused({ StorefrontUrl: undefined });
  assert.throws(() => configFor(describeStack(described({ LoginRedirectUrl: undefined }))), /StorefrontUrl=<its StorefrontUrl output>/);
  assert.throws(() => configFor(describeStack(described({ LoginDomainUrl: undefined }))), /LoginDomainPrefix/);
  assert.throws(() => configFor(describeStack(described({ StripePublishableKey: undefined }))), /StripePublishableKey=pk_test_/);
});

test('CORS that would refuse the storefront, or allow every site, is warned about', () => {
  assert.deepEqual(warnings(describeStack(described())), []);
  assert.match(warnings(describeStack(described({}, { AllowedOrigins: 'https://other.example' })))[0], /does not allow https:\/\/d111111abcdef8\.cloudfront\.net/);
  assert.match(warnings(describeStack(described({}, { AllowedOrigins: '*' })))[0], /AllowedOrigins is \*/);
  assert.match(warnings(describeStack(described({ StripePublishableKey: 'pk_test_1' })))[0], /test key/);
});

test('a release puts the files under a content-hashed folder cached a year, and index.html and config.json revalidated, last', () => {
  const files = readTree(PUBLIC);
  const config = configFor(describeStack(described()));
  const { version, uploads } = release(files, config);
  assert.match(version, /^[0-9a-f]{12}$/);
  assert.equal(release(files, config).version, version, 'the same files give the same version');
  const changed = new Map(files).set('app.css', Buffer.concat([files.get('app.css'), Buffer.from('\n')]));
  assert.notEqual(release(changed, config).version, version, 'any change gives a new version');

  const keys = uploads.map((u) => u.key);
  assert.deepEqual(keys.slice(-2), ['config.json', 'index.html'], 'the revalidated files go up after the assets');
  for (const upload of uploads.slice(0, -2)) {
    assert.ok(upload.key.startsWith(`assets/${version}/`), upload.key);
    assert.equal(upload.cacheControl, LONG);
  }
  assert.ok(keys.includes(`assets/${version}/js/app.js`) && keys.includes(`assets/${version}/js/admin.js`));
  const byKey = Object.fromEntries(uploads.map((u) => [u.key, u]));
  assert.equal(byKey['index.html'].cacheControl, REVALIDATE);
  assert.equal(byKey['config.json'].cacheControl, REVALIDATE);
  assert.equal(byKey[`assets/${version}/js/app.js`].contentType, 'text/javascript; charset=utf-8');
  assert.deepEqual(JSON.parse(byKey['config.json'].body), config);

  // index.html points at the release; anchors, the data: icon and nothing else move.
  const page = byKey['index.html'].body.toString();
  assert.ok(page.includes(`<link rel="stylesheet" href="assets/${version}/app.css">`), page);
  assert.ok(page.includes(`<script type="module" src="assets/${version}/js/app.js"></script>`), page);
  assert.ok(page.includes(`<link rel="modulepreload" href="assets/${version}/js/shop.js">`), page);
  assert.ok(page.includes('href="#main"') && page.includes('href="data:,"') && page.includes('href="#/"'), page);
  const references = [...page.matchAll(/(?:href|src)="(assets\/[^"]+)"/g)].map((m) => m[1]);
  for (const reference of references) assert.ok(keys.includes(reference), `${reference} is uploaded`);
});

test('deploy reads the stack, uploads each file with its type and caching, then invalidates', async () => {
  const calls = [];
  const aws = async (args) => {
    calls.push(args);
    return args[0] === 'cloudformation' ? JSON.stringify(described()) : '';
  };
  const logged = [];
  const { version, uploads } = await deploy({ stack: 'shop', publicDir: PUBLIC, aws, log: (line) => logged.push(line) });
  assert.deepEqual(calls[0], ['cloudformation', 'describe-stacks', '--stack-name', 'shop', '--output', 'json']);
  const copies = calls.slice(1, -1);
  assert.equal(copies.length, uploads.length);
  for (const [i, copy] of copies.entries()) {
    const [s3, cp, file, target, ...flags] = copy;
    assert.deepEqual([s3, cp, target], ['s3', 'cp', `s3://shop-storefrontbucket-abc123/${uploads[i].key}`]);
    assert.deepEqual(flags, ['--content-type', uploads[i].contentType, '--cache-control', uploads[i].cacheControl, '--only-show-errors']);
    assert.ok(file.endsWith(uploads[i].key));
  }
  assert.equal(copies.at(-1)[3], 's3://shop-storefrontbucket-abc123/index.html', 'index.html is the last upload');
  assert.deepEqual(calls.at(-1), ['cloudfront', 'create-invalidation', '--distribution-id', 'E2EXAMPLE', '--paths', ...INVALIDATE]);
  assert.ok(logged.some((line) => line.includes(`release ${version}`)));
  // The staged bytes are the release's: the hash of what was read matches what went up.
  const digest = (buffer) => createHash('sha256').update(buffer).digest('hex');
  assert.equal(digest(uploads.find((u) => u.key.endsWith('/js/shop.js')).body), digest(readTree(PUBLIC).get('js/shop.js')));
});

test('a dry run prints the plan and calls nothing but describe-stacks', async () => {
  const calls = [];
  const aws = async (args) => { calls.push(args); return JSON.stringify(described()); };
  await deploy({ stack: 'shop', publicDir: PUBLIC, aws, log: () => {}, dryRun: true });
  assert.equal(calls.length, 1);
});
