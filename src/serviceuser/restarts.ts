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
// The annotation is applied after the status records the credentials, so the new pods start
// with a token verification already honours. A missing target is not an error: a workload
// created later starts with the current Secret anyway, and gets the annotation at the next
// change. Nothing here is watched or polled.
import { createHash } from 'node:crypto';
import type { ServiceUser } from '../api/serviceuser.ts';
import { setConditions, type Condition, type ConditionInput } from '../controller/conditions.ts';
import { ApiError, isNotFound, type KubeClient, type KubeObject } from '../controller/kube.ts';
import type { EventRecord } from './desired.ts';
import { credentialKeys } from './secret.ts';

export const digestAnnotation = 'serviceusers.dev/credentials-digest';

const plurals = { Deployment: 'deployments', StatefulSet: 'statefulsets', DaemonSet: 'daemonsets' } as const;
type Target = NonNullable<ServiceUser['spec']['credentials']['restartTargets']>[number];

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
    condition = { type: 'RestartTargetsReady', status: 'True', reason: 'Annotated', message: `${states.map((s) => label(s.target)).join(', ')} roll out when the credentials change` };
  } else {
    const parts = [
      missing.length ? `${missing.join(', ')} not found in this namespace (created later, it starts with the current credentials)` : undefined,
      foreign.length ? `${foreign.join(', ')} ${foreign.length > 1 ? 'do' : 'does'} not read Secret ${secretName} in its pod template and ${foreign.length > 1 ? 'are' : 'is'} left alone: mount it or reference it in env/envFrom, or remove it from spec.credentials.restartTargets` : undefined,
      forbidden.length ? `the operator may not read ${forbidden.join(', ')}: restart targets are turned off on this cluster (the operator's RBAC grants no get/patch on apps workloads; Helm value restartTargets.enabled) — restart the workload yourself after a rotation, or ask the platform team to enable them` : undefined,
    ].filter(Boolean);
    condition = { type: 'RestartTargetsReady', status: 'False', reason: forbidden.length ? 'TargetForbidden' : foreign.length ? 'TargetNotConsumer' : 'TargetNotFound', message: parts.join('; ') };
  }
  if (condition.status === 'False' && (previous?.reason !== condition.reason || previous.message !== condition.message)) {
    events.push({ type: 'Warning', reason: condition.reason, message: condition.message });
  }
  return { condition, events };
}

/**
 * Reads each target and says what it needs; `apply()` then annotates the due ones, each by
 * server-side apply of that one annotation under the operator's field manager.
 */
export async function planRestarts(
  client: KubeClient,
  fieldManager: string,
  su: ServiceUser,
  secret: { name: string; data: Record<string, string | Buffer> },
  now: number,
): Promise<{ condition: Condition; events: EventRecord[]; apply: () => Promise<EventRecord[]> } | undefined> {
  const targets = su.spec.credentials.restartTargets ?? [];
  if (!targets.length) return undefined;
  const ns = su.metadata.namespace!;
  const digest = credentialsDigest(secret.data);
  const path = (t: Target) => `/apis/apps/v1/namespaces/${encodeURIComponent(ns)}/${plurals[t.kind]}/${encodeURIComponent(t.name)}`;
  const states: TargetState[] = [];
  for (const target of targets) {
    let workload: KubeObject;
    try {
      workload = await client.get(path(target));
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
    if (!consumesSecret(template?.spec, secret.name)) states.push({ target, state: 'foreign' });
    else states.push({ target, state: template?.metadata?.annotations?.[digestAnnotation] === digest ? 'current' : 'due' });
  }
  const previous = (su.status?.conditions as Condition[] | undefined)?.filter((c) => c.type === 'RestartTargetsReady');
  const { condition, events } = judgeTargets(states, secret.name, previous?.[0]);
  return {
    condition: setConditions(previous, [condition], su.metadata.generation, now)[0]!,
    events,
    apply: async () => {
      const done: EventRecord[] = [];
      for (const { target } of states.filter((s) => s.state === 'due')) {
        const object = { apiVersion: 'apps/v1', kind: target.kind, metadata: { name: target.name, namespace: ns }, spec: { template: { metadata: { annotations: { [digestAnnotation]: digest } } } } };
        // RBAC grants no create: a workload deleted since the read is not made again from
        // this fragment; the next reconcile finds it missing.
        await client.apply(path(target), object, fieldManager);
        done.push({ type: 'Normal', reason: 'RolloutTriggered', message: `${label(target)} rolls out: the credentials in Secret ${secret.name} changed (digest ${digest.slice(0, 12)})` });
      }
      return done;
    },
  };
}
