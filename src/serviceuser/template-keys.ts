// A ServiceUser's SecretTemplateAdmitted condition: which secretTemplate keys the operator
// left off its Secret (api/secret-template.ts says why), and the events its change announces
// — a Warning naming each key when that changes, a Normal one when all are written again.
import type { RefusedKey } from '../api/secret-template.ts';
import type { ConditionInput } from '../controller/conditions.ts';

export function templateAdmission(
  refused: readonly RefusedKey[],
  previous: { type: string; status: string; message: string }[] | undefined,
): { condition: ConditionInput; events: { type: 'Normal' | 'Warning'; reason: string; message: string }[] } {
  const before = previous?.find((c) => c.type === 'SecretTemplateAdmitted');
  if (!refused.length) {
    const condition: ConditionInput = { type: 'SecretTemplateAdmitted', status: 'True', reason: 'Admitted', message: 'every secretTemplate key is written to the Secret' };
    return { condition, events: before?.status === 'False' ? [{ type: 'Normal', reason: 'SecretTemplateAdmitted', message: condition.message }] : [] };
  }
  const condition: ConditionInput = {
    type: 'SecretTemplateAdmitted',
    status: 'False',
    reason: 'SecretTemplateKeyRefused',
    message:
      `not written to the Secret: ${refused.map((r) => `spec.credentials.secretTemplate.${r.field}[${r.key}] (${r.why})`).join('; ')}. ` +
      'Remove the key, or ask the platform team to allow it (--secret-template-refused-prefixes, --secret-template-allowed-prefixes)',
  };
  const changed = before?.status !== 'False' || before.message !== condition.message;
  return { condition, events: changed ? [{ type: 'Warning', reason: condition.reason, message: condition.message }] : [] };
}
