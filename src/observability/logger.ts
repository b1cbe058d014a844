// Structured JSON logs (pino). Credentials never reach a log line: the reconcilers log ids
// and hashes only, and these paths are censored as a second line of defence.
import { pino, type Logger } from 'pino';

export type { Logger };

export const redactedPaths = ['token', '*.token', 'data', '*.data', 'stringData', '*.stringData', 'SM_API_KEY', '*.SM_API_KEY', 'authorization', '*.authorization'];

export function createLogger(level = 'info', destination?: NodeJS.WritableStream): Logger {
  return pino(
    { level, base: { component: 'service-user-operator' }, redact: { paths: redactedPaths, censor: '[redacted]' }, timestamp: pino.stdTimeFunctions.isoTime },
    destination ?? process.stdout,
  );
}
