// Every operator log of the test run, in-process and from operator processes, goes to one
// directory (provided by the global setup); the setup's teardown scans it all for credential
// material, so a leak in any test's path fails the run — not only in the files that look.
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { inject } from 'vitest';
import { createLogger, type Logger } from '../src/observability/logger.ts';

/** What must never appear in a log: API tokens and private keys. */
const secretPatterns: [string, RegExp][] = [
  ['API token', /suo_[a-z2-7]{16}_[0-9A-Za-z]{49}/],
  ['private key', /-----BEGIN (?:EC |RSA |ENCRYPTED )?PRIVATE KEY-----/],
];

/** Where credential material appears in `text`, as "line N: what" (never the material). */
export function findSecrets(text: string): string[] {
  const found: string[] = [];
  text.split('\n').forEach((line, i) => {
    for (const [what, pattern] of secretPatterns) if (pattern.test(line)) found.push(`line ${i + 1}: ${what}`);
  });
  return found;
}

const runLog = () => path.join(inject('logDir'), `${process.pid}.log`);

/** Appends to this worker's file of the run log. */
export function recordLog(text: string): void {
  appendFileSync(runLog(), text);
}

/** A debug-level operator logger whose lines go to `lines` (when given) and to the run log. */
export function testLogger(lines?: string[]): Logger {
  const file = runLog();
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      const text = chunk.toString();
      lines?.push(text);
      appendFileSync(file, text);
      done();
    },
  });
  return createLogger('debug', sink);
}

/**
 * Whether `controller` logged a finished reconcile of `key` in `lines[from…]` (a testLogger's
 * debug lines): the event that says a wake-up was acted on, where a fixed wait would guess.
 */
export function reconciledSince(lines: string[], from: number, controller: string, key: string): boolean {
  return lines.slice(from).some((text) =>
    text.split('\n').some((line) => {
      if (!line.includes('"reconciled"')) return false;
      const entry: unknown = JSON.parse(line);
      return !!entry && typeof entry === 'object' && 'controller' in entry && entry.controller === controller && 'key' in entry && entry.key === key;
    }),
  );
}
