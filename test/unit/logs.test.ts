// The run-wide log scan finds what it must: real tokens and private keys, not their ids or
// hashes; and the text log format carries the JSON format's fields, censored the same way.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, formatText } from '../../src/observability/logger.ts';
import { issueToken } from '../../src/credentials/token.ts';
import { createCa } from '../../src/credentials/ca.ts';
import { findSecrets } from '../logs.ts';

it('finds a token and a private key, and not a token id or hash', async () => {
  const token = issueToken();
  const { keyPem } = await createCa();
  const log = [
    JSON.stringify({ msg: 'Secret applied', tokenId: token.id, sha256: token.sha256 }),
    JSON.stringify({ msg: 'oops', value: token.token }),
    keyPem.split('\n')[0],
  ].join('\n');
  expect(findSecrets(log)).toEqual(['line 2: API token', 'line 3: private key']);
});

describe('--log-format text', () => {
  const capture = (format: 'text' | 'json') => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    return { log: createLogger('debug', sink, format), lines };
  };

  it('prints time, level, message, then every other field as key=value: the fields JSON carries', () => {
    const text = capture('text');
    const json = capture('json');
    for (const { log } of [text, json]) {
      const child = log.child({ controller: 'serviceuser', serviceUser: 'ci/release-signer' });
      child.info({ secret: 'release-signer-credentials', tokenId: 'abcdefghijklmnop', count: 3, names: ['a', 'b'] }, 'Secret applied');
      child.warn({ err: 'no answer in 30s', retryInMs: 1000 }, 'list/watch failed; restarting');
    }
    expect(text.lines).toHaveLength(2);
    expect(text.lines[0]).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z INFO {2}Secret applied controller=serviceuser serviceUser=ci\/release-signer secret=release-signer-credentials tokenId=abcdefghijklmnop count=3 names=\["a","b"\]$/);
    expect(text.lines[1]).toMatch(/ WARN {2}list\/watch failed; restarting controller=serviceuser serviceUser=ci\/release-signer err="no answer in 30s" retryInMs=1000$/);
    // The same fields, the same values (component is constant and left out of the text).
    json.lines.forEach((line, i) => {
      const record = JSON.parse(line) as Record<string, unknown>;
      expect(text.lines[i]).toContain(record.msg as string);
      for (const [k, v] of Object.entries(record)) {
        if (['time', 'level', 'msg', 'component'].includes(k)) continue;
        expect(text.lines[i]).toContain(`${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`);
      }
    });
  });

  it('censors credentials as JSON does, so the run-wide scan still finds nothing', () => {
    const token = issueToken();
    const { log, lines } = capture('text');
    log.info({ token: token.token, data: { token: token.token }, tokenId: token.id }, 'careless');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('token=[redacted]');
    expect(lines[0]).toContain('data=[redacted]');
    expect(lines[0]).not.toContain(token.token);
    expect(findSecrets(lines.join('\n'))).toEqual([]);
    // And the scan reads text lines: a token printed in one is found.
    expect(findSecrets(`${lines[0]}\n2026-01-01T00:00:00.000Z INFO  oops value=${token.token}`)).toEqual(['line 2: API token']);
  });

  it('passes a line that is not JSON through unchanged, and colours the level only when asked', () => {
    expect(formatText('not json')).toBe('not json');
    const line = JSON.stringify({ level: 50, time: '2026-01-01T00:00:00.000Z', msg: 'boom', component: 'service-user-operator', reason: 'x' });
    expect(formatText(line)).toBe('2026-01-01T00:00:00.000Z ERROR boom reason=x');
    expect(formatText(line, { color: true })).toBe('2026-01-01T00:00:00.000Z \u001b[31mERROR\u001b[0m boom reason=x');
  });
});
