// Fuzz-style: a seeded stream of mutated manifests against the API server's validation, and
// of mangled requests against the verification service. The properties, not the cases, are
// the test: admission never fails with a 5xx, every refusal names a field, the operator's
// zod schemas agree with the API server on every case (what the API stores, the operator
// parses; what it refuses, the operator would refuse too), and the verification service
// answers every request with a 2xx or 4xx and keeps serving, and none without a caller's
// credential gets an answer about a token. FUZZ_SEED replays a run.
import { randomBytes } from 'node:crypto';
import { request } from 'node:https';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ApiError, KubeClient, resourcePath } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { testLogger } from '../logs.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { startOperator } from '../../src/operator.ts';
import { clusterScoped, pluralFor, schemaFor } from '../api-objects.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { loadYaml } from '../crds.ts';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';
import { decodeSecret } from '../operator.ts';
import { freePort } from '../net.ts';
import { callerCa, type CallerCertificate } from '../callers.ts';

const seed = Number(process.env.FUZZ_SEED ?? 20261121);
const cases = Number(process.env.FUZZ_CASES ?? 400);

/** mulberry32: small, seeded, good enough to pick mutations reproducibly. */
function prng(s: number) {
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const hostile: unknown[] = [
  '', ' ', 'x'.repeat(300), 'ä'.repeat(70), '\u0000', '\n', '../../etc/passwd', '${jndi:ldap://x}', '*', '-', '0', '-1', '1e309',
  '-1h', '0s', '1y', '1h30', '999999h', '2026-02-30', '2026-13-01', '2024-02-29', '2026-11-21T25:00:00Z', '2026-11-21T10:00:00+01:00',
  'not-an-email', 'a@b', '10.0.0.1/33', '10.0.0.1/24', '::/0', 'fe80::/10', 'RSA', 'Ed25519', 'ECDSA', 'ClusterIssuer', 'ServiceUser',
  0, -1, 1, 255, 256, 65537, 2 ** 53, 1.5, true, false, null, [], [''], ['a', 'a'], {}, { name: '' },
];

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every path under spec (containers and leaves), as key lists. */
function paths(value: Json, at: (string | number)[] = []): (string | number)[][] {
  const out = at.length ? [at] : [];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...paths(v, [...at, i])));
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) out.push(...paths(v, [...at, k]));
  return out;
}

function mutate(doc: { spec: Json }, random: () => number): { doc: { spec: Json }; what: string } {
  const copy = structuredClone(doc);
  const all = paths(copy.spec);
  const target = all[Math.floor(random() * all.length)]!;
  const roll = random();
  let parent = copy.spec as Record<string | number, Json>;
  for (const k of target.slice(0, -1)) parent = parent[k] as Record<string | number, Json>;
  const last = target.at(-1)!;
  let what: string;
  if (roll < 0.15 && !Array.isArray(parent)) {
    delete parent[last];
    what = `removed spec.${target.join('.')}`;
  } else {
    const value = hostile[Math.floor(random() * hostile.length)] as Json;
    parent[last] = value;
    what = `spec.${target.join('.')} = ${JSON.stringify(value)?.slice(0, 60)}`;
  }
  return { doc: copy, what };
}

const ns = useNamespace('fuzz');

describe('the API server and the operator, on mutated manifests', () => {
  const samples = readdirSync(path.join(repoRoot, 'config/samples'))
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .flatMap((f) => loadYaml(path.join(repoRoot, 'config/samples', f))) as { kind: string; metadata: { name: string }; spec: Json }[];

  it(`agree on ${cases} cases (seed ${seed}), never 5xx, and every refusal names a field`, { timeout: 300_000 }, async () => {
    const client = new KubeClient(kubeConfig());
    const random = prng(seed);
    const disagreements: string[] = [];
    const unnamed: string[] = [];
    let refused = 0;
    try {
      for (let i = 0; i < cases; i++) {
        const sample = samples[Math.floor(random() * samples.length)]!;
        const { doc, what } = mutate(sample, random);
        const kind = sample.kind;
        const name = kind === 'Role' ? `${ns.name}.fuzz-${i}` : `fuzz-${i}`;
        const body = { ...doc, apiVersion: 'serviceusers.dev/v1alpha1', kind, metadata: { name, ...(clusterScoped.has(kind) ? {} : { namespace: ns.name }) } };
        const resource = { group: 'serviceusers.dev', version: 'v1alpha1', plural: pluralFor[kind]!, namespaced: !clusterScoped.has(kind) };
        const answer = await client.request('POST', `${resourcePath(resource, clusterScoped.has(kind) ? undefined : ns.name)}?dryRun=All&fieldValidation=Strict`, body).then(
          (stored) => ({ status: 201, message: '', stored }),
          (err: unknown) => {
            if (!(err instanceof ApiError)) throw err;
            return { status: err.status, message: err.message, stored: undefined };
          },
        );
        expect(answer.status, `${kind} ${what}: ${answer.message}`).toBeLessThan(500);
        const admitted = answer.status === 201;
        // What the operator reads is what the API server stored: a null in a field that is
        // not nullable is dropped (or defaulted) at admission, so it is the stored object that
        // must parse. A refused one must not parse as sent.
        const zod = schemaFor[kind]!.safeParse(answer.stored ?? body);
        if (admitted !== zod.success) {
          disagreements.push(`${kind} ${what}: API server ${admitted ? 'admits' : `refuses (${answer.message.slice(0, 200)})`}, zod ${zod.success ? 'accepts' : `refuses (${zod.error.issues.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ')})`}`);
        }
        if (!admitted) {
          refused++;
          if (!/spec\.|metadata\.|\.spec\b/.test(answer.message)) unnamed.push(`${kind} ${what}: ${answer.message.slice(0, 200)}`);
        }
      }
    } finally {
      client.close();
    }
    expect(disagreements, 'cases where zod and the API server disagree').toEqual([]);
    expect(unnamed, 'refusals that name no field').toEqual([]);
    // A corpus that the API server always admitted would test nothing.
    expect(refused).toBeGreaterThan(cases / 5);
  });
});

describe('the verification service, on mangled requests', () => {
  it('answers every one with a 2xx or 4xx and keeps authenticating', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const client = new KubeClient(kubeConfig());
    // Most requests come from a caller trusted for every endpoint, so that the mangling
    // reaches the parsers; the rest from no one, and must learn nothing.
    const callers = await callerCa('fuzz callers');
    const caller = await callers.issue('fuzzer');
    const operator = startOperator({
      kubeConfig: kubeConfig(), log: testLogger(), metrics: createMetrics(), namespaces: [ns.name], operatorNamespace: ns.name,
      verification: { address: `127.0.0.1:${port}`, tokenReviewCaPems: [callers.certPem], callerCaPems: [callers.certPem] },
    });
    try {
      await operator.ready;
      await client.request('POST', resourcePath(resources.serviceUsers, ns.name), {
        apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name: 'probe' },
        spec: { email: 'fuzz@example.com', accounts: ['fuzz'], credentials: { clientCertificate: { enabled: false } } },
      });
      const token = await eventually('the token', async () => decodeSecret(await client.get(resourcePath(resources.secrets, ns.name, 'probe-credentials'))).token);
      await eventually('the token verifies', async () => ((await send(port, 'POST', '/apis/authentication.k8s.io/v1/tokenreviews', 'application/json', review(token), caller)).body.includes('"authenticated":true') ? true : undefined));

      const random = prng(seed + 1);
      const endpoints = ['/apis/authentication.k8s.io/v1/tokenreviews', '/v1/introspect', '/v1/authorize', '/v1/check', '/v1/ca.crt', '/v1/crl', '/healthz', '/nope', '/v1/introspect?x=%ff'];
      const types = ['application/json', 'application/x-www-form-urlencoded', 'text/plain', '', 'application/json; charset=utf-16', 'multipart/form-data; boundary=x'];
      const bodies = [
        () => randomBytes(Math.floor(random() * 2048)),
        () => Buffer.from(JSON.stringify(hostile[Math.floor(random() * hostile.length)])),
        () => Buffer.from(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: hostile[Math.floor(random() * hostile.length)] } })),
        () => Buffer.from(JSON.stringify({ spec: { token: `${token.slice(0, -1)}${token.endsWith('a') ? 'b' : 'a'}` } })),
        () => Buffer.from(`token=${encodeURIComponent(token.slice(0, Math.floor(random() * token.length)))}&client_ip=${String(hostile[Math.floor(random() * hostile.length)])}`),
        () => Buffer.from('{"a":'.repeat(5000)),
        () => Buffer.from(`{"spec":{"token":"${'x'.repeat(70_000)}"}}`),
      ];
      const statuses = new Map<number, number>();
      const guarded = /^\/(apis\/authentication|v1\/(introspect|authorize|check))/;
      for (let i = 0; i < 300; i++) {
        const method = random() < 0.8 ? 'POST' : ['GET', 'PUT', 'DELETE', 'PATCH'][Math.floor(random() * 4)]!;
        const endpoint = endpoints[Math.floor(random() * endpoints.length)]!;
        const credentialed = random() < 0.7;
        const answer = await send(port, method, endpoint, types[Math.floor(random() * types.length)]!, bodies[Math.floor(random() * bodies.length)]!(), credentialed ? caller : undefined);
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        expect(answer.status, answer.body.slice(0, 200)).toBeGreaterThanOrEqual(200);
        expect(answer.status, answer.body.slice(0, 200)).toBeLessThan(500);
        if (!credentialed && guarded.test(endpoint)) expect(answer.status, `${method} ${endpoint} without a credential: ${answer.body.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
      }
      // Still up, still right, and nothing it answered authenticated a mangled token.
      const after = await send(port, 'POST', '/apis/authentication.k8s.io/v1/tokenreviews', 'application/json', review(token), caller);
      expect(after.body).toContain('"authenticated":true');
      expect(statuses.size).toBeGreaterThan(2);
    } finally {
      await operator.stop();
      client.close();
    }
  });
});

const review = (token: string) => Buffer.from(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } }));

function send(port: number, method: string, p: string, type: string, body: Buffer, cert?: CallerCertificate): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const tls = cert ? { cert: cert.certPem, key: cert.keyPem } : {};
    const req = request({ host: '127.0.0.1', port, method, path: p, rejectUnauthorized: false, ...tls, headers: { ...(type ? { 'content-type': type } : {}), 'content-length': body.length } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
