// The plugin's failures and their exit codes, as kubectl's: 1 for an error (a message on
// stderr that says what to do), 2 when `inspect` or `whoami` ran but a check failed.
export class UsageError extends Error {}

/** A command that ran to the end and found something wrong (the report says what). */
export class CheckFailed extends Error {}

export const exitCodes = { ok: 0, error: 1, checkFailed: 2 } as const;
