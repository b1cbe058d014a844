// Kubernetes Events on the objects they concern: what `kubectl describe` and
// `kubectl get events` show. Best effort: a failed event is logged, never retried into a loop.
import { randomBytes } from 'node:crypto';
import type { KubeClient, KubeObject } from '../controller/kube.ts';
import type { Logger } from './logger.ts';

export interface EventInput {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export class EventRecorder {
  private readonly client: KubeClient;
  private readonly log: Logger;
  private readonly component: string;
  private readonly instance: string;

  constructor(client: KubeClient, log: Logger, component = 'service-user-operator', instance = process.env.HOSTNAME ?? 'local') {
    this.client = client;
    this.log = log;
    this.component = component;
    this.instance = instance;
  }

  async record(object: KubeObject, event: EventInput): Promise<void> {
    const namespace = object.metadata.namespace ?? 'default';
    const now = new Date().toISOString();
    const body = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: `${object.metadata.name}.${randomBytes(8).toString('hex')}`, namespace },
      involvedObject: {
        apiVersion: object.apiVersion,
        kind: object.kind,
        name: object.metadata.name,
        namespace: object.metadata.namespace,
        uid: object.metadata.uid,
        resourceVersion: object.metadata.resourceVersion,
      },
      type: event.type,
      reason: event.reason,
      message: event.message.slice(0, 1024),
      source: { component: this.component },
      reportingComponent: this.component,
      reportingInstance: this.instance,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    try {
      await this.client.request('POST', `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`, body);
    } catch (err) {
      this.log.warn({ err: String(err), reason: event.reason, object: `${object.kind}/${object.metadata.name}` }, 'could not record event');
    }
  }
}
