// The plugin's failures and their exit codes, as kubectl's: 1 for an error (a message on
// stderr that says what to do), 2 when `inspect` or `whoami` ran but a check failed.
export class UsageError extends Error {}

/** A command that ran to the end and found something wrong (the report says what). */
export class CheckFailed extends Error {}

/** What an error says, whatever was thrown. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export const exitCodes = { ok: 0, error: 1, checkFailed: 2 } as const;

/**
 * An error message with every token-like word cut to its public id: whatever argument a
 * message quotes back, a token typed where it does not belong is never printed.
 */
export function withoutTokens(text: string): string {
  return text.replace(/suo_[^\s"'`,;)]*/g, (word) => {
    const id = /^suo_([a-z2-7]{16})_/.exec(word)?.[1];
    return id ? `suo_${id}_…` : word.length > 12 ? 'suo_…' : word;
  });
}
