// Small pieces for map functions (event → keys), shared by the controllers' setups.
import type { ChangeType } from './informer.ts';

/**
 * Whether a change altered what `fingerprint` reads (controller-runtime's predicates): an
 * object added or deleted always did; a modification did when the fingerprints differ.
 */
export function changed<T>(type: ChangeType, obj: T, old: T | undefined, fingerprint: (o: T) => string): boolean {
  return type === 'DELETED' || old === undefined || fingerprint(old) !== fingerprint(obj);
}
