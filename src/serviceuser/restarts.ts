// Consumers pick up new credentials: the workloads a ServiceUser names in
// spec.credentials.restartTargets get a pod-template annotation carrying a digest of the
// credential keys, so a change of credentials (issue, rotation, renewal, revocation, wipe)
// rolls them out — as Vault Secrets Operator's rolloutRestartTargets and Reloader do. The
// digest covers only the Secret's credential keys: a status change, a new end date or a
// label never restarts anything.
//
// A target must already consume the Secret (a volume, a projected source, env or envFrom in
// its pod template). That keeps the operator from being a deputy that restarts any workload
// of the namespace for whoever may write a ServiceUser: the workloads it rolls out are those
// whose owners chose to depend on these credentials.
//
// The ServiceUser reconcile records the digest of the Secret it placed in
// status.credentialsDigest, in the status write that records the credentials; the restarts
// controller (restarts-controller.ts) annotates to the digest status records, so the new pods
// start with a token verification already honours. A missing target is not an error: a
// workload created later starts with the current Secret anyway, and gets the annotation when
// the restarts controller next looks at the user. Workloads are neither watched nor polled.
import { createHash } from 'node:crypto';
import type { ServiceUser } from '../api/serviceuser.ts';
import { setConditions, type Condition, type ConditionInput } from '../controller/conditions.ts';
import { ApiError, isNotFound, type KubeClient, type KubeObject } from '../controller/kube.ts';
import type { EventRecord } from './desired.ts';
import { credentialKeys } from './secret.ts';
import { secretNameOf } from '../api/names.ts';

export const digestAnnotation = 'serviceusers.dev/credentials-digest';

/** The one condition the restarts controller owns in a ServiceUser's status. */
export const restartsCondition = 'RestartTargetsReady';

const plurals = { Deployment: 'deployments', StatefulSet: 'statefulsets', DaemonSet: 'daemonsets' } as const;
export type Target = NonNullable<ServiceUser['spec']['credentials']['restartTargets']>[number];

/**
 * SHA-256 over the credential keys present (name, length, bytes), hex. Not a credential: the
 * token and PKCS#12 password inside it carry 256 and 192 random bits, so it reveals nothing.
 */
export function credentialsDigest(data: Record<string, string | Buffer>): string {
  const hash = createHash('sha256').update('serviceusers.dev/credentials-digest/v1\0');
  for (const key of credentialKeys.filter((k) => k in data).sort()) {
    const value = Buffer.from(data[key]!);
    hash.update(`${key}\0${value.length}\0`).update(value);
  }
  return hash.digest('hex');
}

interface PodSpec {
  volumes?: { secret?: { secretName?: string }; projected?: { sources?: { secret?: { name?: string } }[] } }[];
  containers?: Container[];
  initContainers?: Container[];
}
interface Container {
  env?: { valueFrom?: { secretKeyRef?: { name?: string } } }[];
  envFrom?: { secretRef?: { name?: string } }[];
}

/** Whether a pod template reads the Secret: a volume, a projected source, env or envFrom. */
export function consumesSecret(podSpec: PodSpec | undefined, secretName: string): boolean {
  if (!podSpec) return false;
  const volumes = (podSpec.volumes ?? []).some(
    (v) => v.secret?.secretName === secretName || (v.projected?.sources ?? []).some((s) => s.secret?.name === secretName),
  );
  const containers = [...(podSpec.containers ?? []), ...(podSpec.initContainers ?? [])].some(
    (c) => (c.env ?? []).some((e) => e.valueFrom?.secretKeyRef?.name === secretName) || (c.envFrom ?? []).some((e) => e.secretRef?.name === secretName),
  );
  return volumes || containers;
}

export interface TargetState {
  target: Target;
  /**
   * missing: no such workload; foreign: it does not read the Secret; forbidden: the operator may
   * not read it (the chart's restartTargets.enabled=false drops that rule); due: annotation differs.
   */
  state: 'missing' | 'foreign' | 'forbidden' | 'due' | 'current';
}

const label = (t: Target) => `${t.kind}/${t.name}`;

/** The condition and events for a set of targets: pure, from their observed states. */
export function judgeTargets(states: TargetState[], secretName: string, previous: ConditionInput | undefined): { condition: ConditionInput; events: EventRecord[] } {
  const missing = states.filter((s) => s.state === 'missing').map((s) => label(s.target));
  const foreign = states.filter((s) => s.state === 'foreign').map((s) => label(s.target));
  const forbidden = states.filter((s) => s.state === 'forbidden').map((s) => label(s.target));
  const events: EventRecord[] = [];
  let condition: ConditionInput;
  if (!missing.length && !foreign.length && !forbidden.length) {
    condition = { type: restartsCondition, status: 'True', reason: 'Annotated', message: `${states.map((s) => label(s.target)).join(', ')} roll out when the credentials change` };
  } else {
    const parts = [
      missing.length ? `${missing.join(', ')} not found in this namespace (created later, it starts with the current credentials)` : undefined,
      foreign.length ? `${foreign.join(', ')} ${foreign.length > 1 ? 'do' : 'does'} not read Secret ${secretName} in its pod template and ${foreign.length > 1 ? 'are' : 'is'} left alone: mount it or reference it in env/envFrom, or remove it from spec.credentials.restartTargets` : undefined,
      forbidden.length ? `the operator may not read ${forbidden.join(', ')}: restart targets are turned off on this cluster (the operator's RBAC grants no get/patch on apps workloads; Helm value restartTargets.enabled) — restart the workload yourself after a rotation, or ask the platform team to enable them` : undefined,
    ].filter(Boolean);
    condition = { type: restartsCondition, status: 'False', reason: forbidden.length ? 'TargetForbidden' : foreign.length ? 'TargetNotConsumer' : 'TargetNotFound', message: parts.join('; ') };
  }
  if (condition.status === 'False' && (previous?.reason !== condition.reason || previous.message !== condition.message)) {
    events.push({ type: 'Warning', reason: condition.reason, message: condition.message });
  }
  return { condition, events };
}

/** What the restarts controller does for a ServiceUser: nothing (and no condition of its own), or judge its targets. */
export type RestartIntent = { kind: 'none' } | { kind: 'judge'; targets: Target[]; digest: string; secretName: string };

/**
 * Pure, from the ServiceUser as cached: its targets are judged once status records the digest
 * of its credentials; a user being deleted is left as it is (`undefined`), one without targets
 * or a recorded digest (stalled before any Secret, or a spec that does not parse) has none.
 */
export function restartIntent(su: ServiceUser | undefined, deleting: boolean): RestartIntent | undefined {
  if (deleting) return undefined;
  const targets = su?.spec.credentials.restartTargets ?? [];
  const digest = su?.status?.credentialsDigest;
  if (!su || !targets.length || !digest) return { kind: 'none' };
  return { kind: 'judge', targets, digest, secretName: su.status?.secretName ?? secretNameOf(su) };
}

/** The condition's fields kstatus readers compare: a change is written, anything else is not. */
export function sameCondition(a: Condition | undefined, b: Condition | undefined): boolean {
  if (!a || !b) return a === b;
  return a.status === b.status && a.reason === b.reason && a.message === b.message && a.observedGeneration === b.observedGeneration && a.lastTransitionTime === b.lastTransitionTime;
}

const pathOf = (ns: string, t: Target) => `/apis/apps/v1/namespaces/${encodeURIComponent(ns)}/${plurals[t.kind]}/${encodeURIComponent(t.name)}`;

/** Reads each target (a GET each: workloads are not cached) and says what it needs for `digest`. */
export async function readTargets(client: KubeClient, ns: string, targets: Target[], secretName: string, digest: string): Promise<TargetState[]> {
  const states: TargetState[] = [];
  for (const target of targets) {
    let workload: KubeObject;
    try {
      workload = await client.get(pathOf(ns, target));
    } catch (err) {
      if (isNotFound(err)) {
        states.push({ target, state: 'missing' });
        continue;
      }
      // Not granted: said in the condition, never a failed reconcile (the credentials and
      // status are written regardless).
      if (err instanceof ApiError && err.status === 403) {
        states.push({ target, state: 'forbidden' });
        continue;
      }
      throw err;
    }
    const template = (workload.spec as { template?: { metadata?: { annotations?: Record<string, string> }; spec?: PodSpec } } | undefined)?.template;
    if (!consumesSecret(template?.spec, secretName)) states.push({ target, state: 'foreign' });
    else states.push({ target, state: template?.metadata?.annotations?.[digestAnnotation] === digest ? 'current' : 'due' });
  }
  return states;
}

/**
 * Annotates the due targets, each by server-side apply of that one annotation under the
 * operator's field manager; the RolloutTriggered events.
 */
export async function annotateTargets(client: KubeClient, fieldManager: string, ns: string, states: TargetState[], secretName: string, digest: string): Promise<EventRecord[]> {
  const done: EventRecord[] = [];
  for (const { target } of states.filter((s) => s.state === 'due')) {
    const object = { apiVersion: 'apps/v1', kind: target.kind, metadata: { name: target.name, namespace: ns }, spec: { template: { metadata: { annotations: { [digestAnnotation]: digest } } } } };
    // RBAC grants no create: a workload deleted since the read is not made again from
    // this fragment; the next reconcile finds it missing.
    await client.apply(pathOf(ns, target), object, fieldManager);
    done.push({ type: 'Normal', reason: 'RolloutTriggered', message: `${label(target)} rolls out: the credentials in Secret ${secretName} changed (digest ${digest.slice(0, 12)})` });
  }
  return done;
}

/** The targets' condition as status would record it (lastTransitionTime kept while its status holds), and the warnings owed. */
export function restartCondition(states: TargetState[], secretName: string, previous: Condition | undefined, generation: number | undefined, now: number): { condition: Condition; events: EventRecord[] } {
  const { condition, events } = judgeTargets(states, secretName, previous);
  return { condition: setConditions(previous ? [previous] : undefined, [condition], generation, now)[0]!, events };
}
