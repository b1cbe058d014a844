// The verification service's caller flags: bad values stop the start with an error naming the
// flag; the anonymous TokenReview opt-in answers anyone and says so at start.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createCa, loadCa } from '../../src/credentials/ca.ts';
import { issueServingCertificate } from '../../src/credentials/certificate.ts';
import { issueToken } from '../../src/credentials/token.ts';
import { Directory } from '../../src/verify/directory.ts';
import { startVerificationServer } from '../../src/verify/server.ts';
import { ServingCertificate } from '../../src/verify/serving-certificate.ts';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../../src/observability/logger.ts';
import { unreachableKubeconfig } from '../kube.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'verify-flags-'));
// A kubeconfig that loads (nothing is contacted before the flags are judged).
const kubeconfig = unreachableKubeconfig(dir);
const main = (args: string[]) => {
  const r = spawnSync(process.execPath, [fileURLToPath(new URL('../../src/main.ts', import.meta.url)), '--kubeconfig', kubeconfig, '--metrics-bind-address', '0', '--health-probe-bind-address', '0', ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
};

// Each case starts a Node process: slow on a loaded machine, not a timing claim.
describe('operator flags for verification callers', { timeout: 60_000 }, () => {
  it('refuses a --trusted-proxy-hops that is not a small whole number, naming the flag', () => {
    for (const bad of ['-1', 'two', '1.5']) {
      const r = main([`--trusted-proxy-hops=${bad}`]);
      expect(r.status, r.out).toBe(2);
      expect(r.out).toContain('--trusted-proxy-hops must be a whole number');
    }
  });

  it('refuses a --tokenreview-client-ca or --verify-client-ca file without a certificate, naming the flag and file', () => {
    const notPem = path.join(dir, 'not-a-ca.pem');
    writeFileSync(notPem, 'hello\n');
    for (const flag of ['--tokenreview-client-ca', '--verify-client-ca']) {
      const r = main([flag, notPem]);
      expect(r.status, r.out).toBe(2);
      expect(r.out).toContain(`${flag} ${notPem}: no PEM certificate in it`);
    }
    const missing = main(['--tokenreview-client-ca', path.join(dir, 'absent.pem')]);
    expect(missing.status).toBe(2);
    expect(missing.out).toContain('--tokenreview-client-ca');
  });
});

describe('--tokenreview-allow-anonymous', { timeout: 30_000 }, () => {
  it('answers TokenReview for anyone, and warns at start', async () => {
    const material = await createCa({ commonName: 'flags test CA' });
    const logs: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (logs.push(chunk.toString()), done()) });
    const server = await startVerificationServer({
      address: '127.0.0.1:0', directory: new Directory(), caPem: material.certPem, crl: () => '', log: createLogger('info', sink), allowAnonymousTokenReview: true,
      tls: ServingCertificate.fixed(await issueServingCertificate(await loadCa(material), ['127.0.0.1'], new Date())),
    });
    try {
      expect(logs.join('')).toContain('--tokenreview-allow-anonymous');
      const port = (server.address() as { port: number }).port;
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/apis/authentication.k8s.io/v1/tokenreviews', rejectUnauthorized: false, headers: { 'content-type': 'application/json' } }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: issueToken().token } }));
      });
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.body).status).toEqual({ authenticated: false, error: 'invalid token' });
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
