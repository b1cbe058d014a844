// What a ServiceUser's status recorded, read field by field without the spec: a part that does
// not parse is read as absent, never as a reason to skip the rest (finalize.ts revokes from it
// even when the spec no longer parses).
import type { z } from 'zod';
import { certificateStatus, tokenStatus, type TokenStatus } from '../api/serviceuser.ts';

export function recordedStatus(status: unknown): { tokens: TokenStatus[]; certificate: z.output<typeof certificateStatus> | undefined; secretName: string | undefined } {
  const s = (status ?? {}) as Record<string, unknown>;
  const tokens = Array.isArray(s.tokens) ? s.tokens.flatMap((t) => { const p = tokenStatus.safeParse(t); return p.success ? [p.data] : []; }) : [];
  const certificate = certificateStatus.safeParse(s.certificate);
  return { tokens, certificate: certificate.success ? certificate.data : undefined, secretName: typeof s.secretName === 'string' ? s.secretName : undefined };
}
