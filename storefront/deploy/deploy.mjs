// `make deploy-storefront STACK=<stack> [REGION=<region>]`: reads the stack's outputs, writes
// the deployed config.json, uploads storefront/public to the storefront bucket (release.mjs
// decides the layout and caching) and invalidates the revalidated paths at CloudFront.
//
// It calls the AWS CLI (`aws`, or $AWS_CLI) with your usual credentials: it needs
// cloudformation:DescribeStacks, s3:PutObject on the bucket and cloudfront:CreateInvalidation.
// Run with `--dry-run` to print the config.json and the uploads without calling S3 or CloudFront.

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { INVALIDATE, configFor, describeStack, release, warnings } from './release.mjs';

/** Every file under `dir`, as a Map of relative path (with /) → Buffer. */
export function readTree(dir) {
  const files = new Map();
  const walk = (at) => {
    for (const name of readdirSync(at)) {
      const path = join(at, name);
      if (statSync(path).isDirectory()) walk(path);
      else files.set(relative(dir, path).split('\\').join('/'), readFileSync(path));
    }
  };
  walk(dir);
  return files;
}

/** Runs the AWS CLI; resolves to its stdout. */
export function awsCli(region) {
  const command = process.env.AWS_CLI ?? 'aws';
  return (args) => new Promise((done, fail) => {
    execFile(command, [...args, ...(region ? ['--region', region] : [])], { maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error) fail(new Error(`aws ${args.slice(0, 2).join(' ')} failed: ${stderr.trim() || error.message}`));
      else done(stdout);
    });
  });
}

/** The whole deployment; `aws(args)` runs one AWS CLI command (injected by the tests). */
export async function deploy({ stack, publicDir, aws, log = console.log, dryRun = false }) {
  const info = describeStack(JSON.parse(await aws(['cloudformation', 'describe-stacks', '--stack-name', stack, '--output', 'json'])));
  const config = configFor(info);
  for (const warning of warnings(info)) log(`warning: ${warning}`);
  const { version, uploads } = release(readTree(publicDir), config);
  const bucket = info.outputs.StorefrontBucketName;
  const distribution = info.outputs.StorefrontDistributionId;
  if (!bucket || !distribution) throw new Error(`stack ${stack} has no StorefrontBucketName or StorefrontDistributionId output: deploy it with StorefrontHosting=cloudfront`);
  log(`release ${version}: ${uploads.length} files to s3://${bucket}, config.json:\n${JSON.stringify(config, null, 2)}`);
  if (dryRun) {
    for (const upload of uploads) log(`  ${upload.key}  (${upload.contentType}; ${upload.cacheControl})`);
    return { version, uploads, config };
  }
  const staging = mkdtempSync(join(tmpdir(), 'ferrocart-storefront-'));
  try {
    for (const upload of uploads) {
      const file = join(staging, upload.key);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, upload.body);
      await aws(['s3', 'cp', file, `s3://${bucket}/${upload.key}`, '--content-type', upload.contentType, '--cache-control', upload.cacheControl, '--only-show-errors']);
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  await aws(['cloudfront', 'create-invalidation', '--distribution-id', distribution, '--paths', ...INVALIDATE]);
  log(`deployed: ${info.outputs.StorefrontUrl}/ (CloudFront forgets the old index.html and config.json within a few minutes)`);
  return { version, uploads, config };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const option = (name) => { const at = args.indexOf(name); return at >= 0 ? args[at + 1] : undefined; };
  const stack = option('--stack');
  if (!stack) {
    console.error('usage: node storefront/deploy/deploy.mjs --stack <stack> [--region <region>] [--dry-run]');
    process.exit(2);
  }
  const publicDir = resolve(dirname(fileURLToPath(import.meta.url)), '../public');
  deploy({ stack, publicDir, aws: awsCli(option('--region')), dryRun: args.includes('--dry-run') }).catch((error) => {
    console.error(`deploy-storefront: ${error.message}`);
    process.exit(1);
  });
}
