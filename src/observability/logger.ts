// Structured logs (pino). Credentials never reach a log line: the reconcilers log ids
// and hashes only, and these paths are censored as a second line of defence.
//
// Two formats of the same record: JSON, one object a line, for machines (the default when
// stdout is not a terminal), and text for a person at a terminal — the time, the level, the
// message, then every other field as key=value. The text is made from the JSON pino wrote,
// after redaction, so both formats carry the same fields and the same censoring.
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

export type { Logger };

export const logFormats = ['text', 'json'] as const;
export type LogFormat = (typeof logFormats)[number];

export const redactedPaths = ['token', '*.token', 'data', '*.data', 'stringData', '*.stringData', 'SM_API_KEY', '*.SM_API_KEY', 'authorization', '*.authorization'];

export function createLogger(level = 'info', destination?: NodeJS.WritableStream, format: LogFormat = 'json'): Logger {
  const out = destination ?? process.stdout;
  return pino(
    { level, base: { component: 'service-user-operator' }, redact: { paths: redactedPaths, censor: '[redacted]' }, timestamp: pino.stdTimeFunctions.isoTime },
    format === 'text' ? textStream(out, { color: 'isTTY' in out && out.isTTY === true && !process.env.NO_COLOR }) : out,
  );
}

const levelNames: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const levelColors: Record<number, string> = { 10: '90', 20: '36', 30: '32', 40: '33', 50: '31', 60: '35' };
// Fields every line carries or that open the line: not repeated as key=value.
const leading = new Set(['time', 'level', 'msg', 'component']);

/** A value as it reads in `key=value`: bare when it has no spaces or quotes, else JSON. */
function show(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value) ?? String(value);
}

/** One pino JSON record as a line of text: `TIME LEVEL message key=value ...`. */
export function formatText(line: string, options: { color?: boolean } = {}): string {
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch {
    return line;
  }
  if (record === null || typeof record !== 'object') return line;
  const level = 'level' in record && typeof record.level === 'number' ? record.level : 30;
  let name = (levelNames[level] ?? String(level)).padEnd(5);
  if (options.color) name = `\u001b[${levelColors[level] ?? '0'}m${name}\u001b[0m`;
  const fields = Object.entries(record)
    .filter(([k]) => !leading.has(k))
    .map(([k, v]) => `${k}=${show(v)}`);
  const time = 'time' in record && typeof record.time === 'string' ? record.time : new Date().toISOString();
  const msg = 'msg' in record && typeof record.msg === 'string' ? record.msg : '';
  return [time, name, msg, ...fields].filter((p) => p !== '').join(' ');
}

/** A stream that takes pino's JSON lines and writes them to `out` as text. */
export function textStream(out: NodeJS.WritableStream, options: { color?: boolean } = {}): Writable {
  let pending = '';
  return new Writable({
    write(chunk: Buffer | string, _enc, done) {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      const text = lines.filter((l) => l.trim()).map((l) => `${formatText(l, options)}\n`).join('');
      if (text) out.write(text);
      done();
    },
    final(done) {
      if (pending.trim()) out.write(`${formatText(pending, options)}\n`);
      done();
    },
  });
}
