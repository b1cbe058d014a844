// The operator as a process (`node src/main.ts`, what `npm start` runs): killed between
// writing a token to the Secret and recording it, it leaves no valid unrecorded token and
// finishes the job on restart; it serves metrics and probes; it stops on SIGTERM; and
// nothing it logs contains a token.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, describe, expect, it } from 'vitest';
import { serviceUser } from '../../src/api/serviceuser.ts';
import { KubeClient, resourcePath } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { verifyToken } from '../../src/verify/verdict.ts';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';
import { api, decodeSecret, useOperatorProcesses } from '../operator.ts';
import { freePort } from '../net.ts';
import { findSecrets } from '../logs.ts';

const ns = useNamespace('process');
const client = new KubeClient(kubeConfig());
const k = api(client, ns.name);
const output: string[] = [];
const processes = useOperatorProcesses(ns);
afterAll(() => client.close());


function operator(env: Record<string, string> = {}, ports = { metrics: 0, health: 0 }): ChildProcess {
  return processes.start(
    // Plain HTTP metrics, allowed on loopback only; the guarded HTTPS endpoint is metrics.test.ts's.
    ['--log-level', 'debug', '--metrics-bind-address', `127.0.0.1:${ports.metrics}`, '--no-metrics-secure', '--health-probe-bind-address', `127.0.0.1:${ports.health}`],
    { env, output },
  );
}

describe('the operator process', () => {
  it('killed between the Secret write and the status write: no valid unrecorded token; recorded on restart', async () => {
    const crashing = operator({ SUO_TEST_CRASH_POINT: 'after-secret-write' });
    await k.createServiceUser('crash', { email: 'ops@example.com', accounts: ['acme'] });
    const [code] = (await once(crashing, 'exit')) as [number];
    expect(code).toBe(137);

    const secret = await k.secret('crash-credentials');
    const token = decodeSecret(secret!).token!;
    expect(token).toMatch(/^suo_/);
    const before = serviceUser.parse(await k.serviceUser('crash'));
    expect(before.status?.tokens ?? []).toEqual([]);
    expect(verifyToken(before, token, Date.now())).toEqual({ active: false, reason: 'unknown token' });

    const ports = { metrics: await freePort(), health: await freePort() };
    const healthy = operator({}, ports);
    const after = await k.waitFor('crash', 'the token recorded', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active');
    const recorded = serviceUser.parse(after);
    expect(recorded.status!.tokens).toHaveLength(1);
    expect(decodeSecret((await k.secret('crash-credentials'))!).token).toBe(token);
    expect(verifyToken(recorded, token, Date.now())).toMatchObject({ active: true });

    // Probes and metrics, while it runs.
    await k.createServiceUser('metered', { email: 'ops@example.com', accounts: ['acme'], endDate: '2030-06-01' });
    await k.waitFor('metered', 'Active', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active');
    expect((await fetch(`http://127.0.0.1:${ports.health}/readyz`)).status).toBe(200);
    const metrics = await eventually('the expiration metric', async () => {
      const text = await (await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).text();
      return text.includes(`name="metered"`) ? text : undefined;
    });
    expect(metrics).toContain(`serviceuser_expiration_timestamp_seconds{namespace="${ns.name}",name="metered"} ${Date.parse('2030-06-01T23:59:59Z') / 1000}`);
    expect(metrics).toMatch(/serviceuser_tokens_issued_total \d+/);

    healthy.kill('SIGTERM');
    const [exitCode] = (await once(healthy, 'exit')) as [number];
    expect(exitCode).toBe(0);

    const log = output.join('');
    // Not a terminal: JSON by default, one object a line.
    for (const line of log.split('\n').filter(Boolean)) expect(() => JSON.parse(line), line).not.toThrow();
    expect(log).toContain('test fault: exiting between the Secret write and the status write');
    expect(log).not.toContain(token);
    expect(findSecrets(log)).toEqual([]);
  });

  it('--crl-owner-budget is exported for the alert, beside each user\'s serials on the CRL; a bad value is refused naming the flag', async () => {
    const port = await freePort();
    const child = processes.start(['--metrics-bind-address', `127.0.0.1:${port}`, '--no-metrics-secure', '--health-probe-bind-address', '0', '--verify-bind-address', '0', '--crl-owner-budget', '7'], { output });
    await k.createServiceUser('departed', { email: 'ops@example.com', accounts: ['acme'] });
    await k.waitFor('departed', 'Active with a certificate', (o) => !!o.status?.certificate && (o.status as { phase?: string }).phase === 'Active', 30_000);
    // Deleted: its certificate goes on the CRL (cessationOfOperation), counted under its name.
    await client.request('DELETE', resourcePath(resources.serviceUsers, ns.name, 'departed'));
    const metrics = await eventually('the CRL entries metric', async () => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return text.includes(`serviceuser_crl_entries{namespace="${ns.name}",name="departed"} 1`) ? text : undefined;
    }, 30_000);
    expect(metrics).toContain('serviceuser_crl_owner_budget 7');
    child.kill('SIGTERM');
    expect(((await once(child, 'exit')) as [number])[0]).toBe(0);

    const refused: string[] = [];
    const bad = processes.start(['--crl-owner-budget', 'lots'], { output: refused });
    expect(((await once(bad, 'exit')) as [number])[0]).toBe(2);
    expect(refused.join('')).toContain('--crl-owner-budget must be a positive integer (serials a ServiceUser may have on the CRL), got \\"lots\\"');
  });

  it('--log-format text prints a line a person reads, with the same fields; a bad value is refused naming the flag', async () => {
    const lines: string[] = [];
    const child = processes.start(['--log-format', 'text', '--metrics-bind-address', '0', '--health-probe-bind-address', '0', '--verify-bind-address', '0'], { output: lines });
    await eventually('caches synced', async () => (lines.join('').includes('caches synced') ? true : undefined), 30_000);
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(0);
    const text = lines.join('').split('\n').filter(Boolean);
    expect(text.length).toBeGreaterThan(2);
    for (const line of text) expect(line).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) \S/);
    expect(text.find((l) => l.includes('service-user-operator started'))).toMatch(/ INFO {2}service-user-operator started server=https:\/\/127\.0\.0\.1:\d+ node=v24\./);
    expect(text.find((l) => l.includes('caches synced'))).toContain(`namespaces=["${ns.name}"]`);

    const refused: string[] = [];
    const bad = processes.start(['--log-format', 'yaml'], { output: refused });
    const [badCode] = (await once(bad, 'exit')) as [number];
    expect(badCode).toBe(2);
    expect(refused.join('')).toBe('--log-format must be text or json, got "yaml"\n');
  });
});
