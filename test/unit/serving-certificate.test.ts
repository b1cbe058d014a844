// The verification service's serving certificate changes without a restart: mounted files
// that cert-manager renews are read again (a half-written pair never serves), and the one the
// built-in CA issues is renewed when two thirds of its life have passed. Checked over real TLS
// connections to the verification server.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from 'node:tls';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createCa, loadCa, type Ca } from '../../src/credentials/ca.ts';
import { issueServingCertificate } from '../../src/credentials/certificate.ts';
import { Directory } from '../../src/verify/directory.ts';
import { startVerificationServer } from '../../src/verify/server.ts';
import { ServingCertificate, type TlsPair } from '../../src/verify/serving-certificate.ts';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/observability/logger.ts';

/** A logger into `lines` (unit tests have no run log to write to). */
const testLogger = (lines: string[]) => createLogger('info', new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString()), done()) }));

const dir = mkdtempSync(path.join(tmpdir(), 'serving-'));
const files = { certFile: path.join(dir, 'tls.crt'), keyFile: path.join(dir, 'tls.key') };
const mount = (pair: TlsPair) => {
  writeFileSync(files.certFile, pair.certPem);
  writeFileSync(files.keyFile, pair.keyPem);
};
/** The serial a new TLS connection is shown. */
const servedSerial = (port: number) =>
  new Promise<string>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().serialNumber.toLowerCase());
      socket.end();
    });
    socket.on('error', reject);
  });
const serialOf = async (pair: TlsPair) => new (await import('node:crypto')).X509Certificate(pair.certPem).serialNumber.toLowerCase();
const changed = (serving: ServingCertificate) => new Promise<TlsPair>((resolve) => serving.onChange(resolve));

afterEach(() => {
  vi.useRealTimers();
});

describe('a mounted serving certificate', () => {
  it('is read again when its files change, new connections get it, and a half-written pair never serves', { timeout: 30_000 }, async () => {
    const ca: Ca = await loadCa(await createCa({ commonName: 'serving test CA' }));
    const first = await issueServingCertificate(ca, ['127.0.0.1'], new Date());
    mount(first);
    const logs: string[] = [];
    const serving = await ServingCertificate.mounted(files, { log: testLogger(logs), pollMs: 50 });
    const server = await startVerificationServer({ address: '127.0.0.1:0', directory: new Directory(), caPem: ca.certPem, crl: () => '', log: testLogger(logs), tls: serving });
    try {
      const port = (server.address() as { port: number }).port;
      expect(await servedSerial(port)).toBe(await serialOf(first));
      // cert-manager renewed it: the kubelet updates the mount.
      const second = await issueServingCertificate(ca, ['127.0.0.1'], new Date());
      const swapped = changed(serving);
      mount(second);
      await swapped;
      expect(await servedSerial(port)).toBe(await serialOf(second));
      // A certificate without its key yet (one file updated, the other not): not taken.
      const third = await issueServingCertificate(ca, ['127.0.0.1'], new Date());
      writeFileSync(files.certFile, third.certPem);
      await vi.waitFor(() => expect(logs.join('')).toContain('serving certificate files not taken'), { timeout: 10_000, interval: 50 });
      expect(await servedSerial(port)).toBe(await serialOf(second));
      const completed = changed(serving);
      writeFileSync(files.keyFile, third.keyPem);
      await completed;
      expect(await servedSerial(port)).toBe(await serialOf(third));
    } finally {
      serving.stop();
      server.close();
    }
  });

  it('refuses to start on files that do not make a pair, naming them', async () => {
    const ca = await loadCa(await createCa());
    const a = await issueServingCertificate(ca, ['127.0.0.1'], new Date());
    const b = await issueServingCertificate(ca, ['127.0.0.1'], new Date());
    mount({ certPem: a.certPem, keyPem: b.keyPem });
    await expect(ServingCertificate.mounted(files, { log: testLogger([]) })).rejects.toThrow(`serving certificate ${files.certFile} / ${files.keyFile}: the key is not the certificate's`);
  });
});

describe('the serving certificate the built-in CA issues', () => {
  it('is renewed when two thirds of its life have passed, not before', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const ca = await loadCa(await createCa());
    const issued: TlsPair[] = [];
    // Three days' life: renewed after two.
    const issue = async () => {
      const pair = await issueServingCertificate(ca, ['127.0.0.1'], new Date(Date.now()), 3);
      issued.push(pair);
      return pair;
    };
    const serving = await ServingCertificate.issued(issue, { log: testLogger([]), now: () => Date.now() });
    try {
      expect(issued).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(2 * 86_400_000 - 120_000);
      expect(issued).toHaveLength(1);
      const renewed = changed(serving);
      await vi.advanceTimersByTimeAsync(120_000);
      expect(await renewed).toBe(issued[1]);
      expect(serving.current()).toBe(issued[1]);
    } finally {
      serving.stop();
    }
  });
});
