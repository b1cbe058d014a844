// metav1.Condition lists, kept the way kstatus (Argo CD, Flux, kubectl wait) reads them:
// lastTransitionTime moves only when status changes.
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  observedGeneration?: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export type ConditionInput = Pick<Condition, 'type' | 'status' | 'reason' | 'message'>;

export function setConditions(previous: Condition[] | undefined, next: ConditionInput[], generation: number | undefined, now: number): Condition[] {
  return next.map((c) => {
    const old = previous?.find((p) => p.type === c.type);
    const lastTransitionTime = old && old.status === c.status ? old.lastTransitionTime : new Date(now).toISOString().replace(/\.\d{3}Z$/, 'Z');
    return { ...c, ...(generation !== undefined ? { observedGeneration: generation } : {}), lastTransitionTime };
  });
}

export function conditionTrue(list: Condition[] | undefined, type: string): boolean {
  return list?.some((c) => c.type === type && c.status === 'True') ?? false;
}
