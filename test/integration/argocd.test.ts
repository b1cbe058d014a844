// The Argo CD health check in docs/argocd.md, run by a Lua interpreter against the status
// of real objects the operator produced.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { lauxlib, lua, lualib, to_luastring } from 'fengari';
import { describe, expect, it } from 'vitest';
import { resourcePath, type KubeObject } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { eventually, useNamespace } from '../kube.ts';
import { api, useAccounts, useOperator } from '../operator.ts';

const ns = useNamespace('argocd');
const running = useOperator(ns);
useAccounts(['acme']);
const k = () => api(running.client, ns.name);
const script = /```lua\n([\s\S]*?)```/.exec(readFileSync(path.join(repoRoot, 'docs/argocd.md'), 'utf8'))![1]!;

/** A JSON value as a Lua constructor. */
function toLua(value: unknown): string {
  if (value === null || value === undefined) return 'nil';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `{${value.map(toLua).join(', ')}}`;
  return `{${Object.entries(value as Record<string, unknown>).map(([k, v]) => `[${JSON.stringify(k)}] = ${toLua(v)}`).join(', ')}}`;
}

function health(object: KubeObject): { status: string; message: string } {
  const L = lauxlib.luaL_newstate();
  lualib.luaL_openlibs(L);
  const program = `obj = ${toLua(object)}\nlocal function check()\n${script}\nend\nlocal hs = check()\nreturn hs.status .. "\\n" .. (hs.message or "")`;
  if (lauxlib.luaL_dostring(L, to_luastring(program)) !== lua.LUA_OK) throw new Error(`Lua: ${lua.lua_tojsstring(L, -1)}`);
  const [status, message] = lua.lua_tojsstring(L, -1).split('\n');
  return { status: status!, message: message ?? '' };
}

const phase = (o: KubeObject) => (o.status as { phase?: string } | undefined)?.phase;
const base = { email: 'ops@example.com', accounts: ['acme'] };

describe('the Argo CD health check', () => {
  it('judges ServiceUsers: Healthy, Suspended, Degraded, Progressing', async () => {
    await k().createServiceUser('healthy', base);
    expect(health(await k().waitFor('healthy', 'Active', (o) => phase(o) === 'Active'))).toMatchObject({ status: 'Healthy' });

    await k().createServiceUser('paused', { ...base, disabled: true });
    expect(health(await k().waitFor('paused', 'Disabled', (o) => phase(o) === 'Disabled'))).toMatchObject({ status: 'Suspended' });

    await k().createServiceUser('gone', { ...base, endDate: '2020-01-01' });
    expect(health(await k().waitFor('gone', 'Expired', (o) => phase(o) === 'Expired'))).toMatchObject({ status: 'Degraded', message: expect.stringContaining('Expired') });

    await k().createServiceUser('dupe', { ...base, friendlyName: 'healthy' });
    const conflict = await k().waitFor('dupe', 'Failed (friendly-name conflict)', (o) => phase(o) === 'Failed');
    expect(health(conflict)).toEqual({ status: 'Degraded', message: expect.stringContaining('already used by ServiceUser healthy') });

    await k().createServiceUser('waiting', { ...base, credentials: { clientCertificate: { issuerRef: { name: 'nobody', kind: 'Issuer' } } } });
    const pending = await k().waitFor('waiting', 'Pending', (o) => phase(o) === 'Pending');
    expect(health(pending).status).toBe('Progressing');

    // A spec the operator has not seen yet.
    const fresh = await k().serviceUser('healthy');
    expect(health({ ...fresh, metadata: { ...fresh.metadata, generation: (fresh.metadata.generation ?? 1) + 1 } })).toMatchObject({ status: 'Progressing' });
    expect(health({ ...fresh, status: undefined } as KubeObject)).toMatchObject({ status: 'Progressing' });
  });

  it('judges RoleBindings: a refused binding is Degraded, a granted one Healthy', async () => {
    const bind = (name: string, role: string) =>
      running.client.request('POST', resourcePath(resources.roleBindings, ns.name), {
        apiVersion: 'serviceusers.dev/v1alpha1', kind: 'RoleBinding', metadata: { name },
        spec: { roleRef: { name: role }, subjects: [{ kind: 'ServiceUser', name: 'healthy' }] },
      });
    await running.client.request('POST', resourcePath(resources.roles), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'Role', metadata: { name: `${ns.name}.reader` },
      spec: { displayName: 'Reader', manager: 'software-trust-manager', permissions: ['releases:view'] },
    });
    await bind('good', `${ns.name}.reader`);
    await bind('bad', `${ns.name}.missing`);
    const binding = (name: string) => running.client.get(resourcePath(resources.roleBindings, ns.name, name));
    const ready = (o: KubeObject) => (o.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions?.find((c) => c.type === 'Ready')?.status;
    expect(health(await eventually('good granted', async () => { const b = await binding('good'); return ready(b) === 'True' ? b : undefined; }))).toMatchObject({ status: 'Healthy' });
    expect(health(await eventually('bad refused', async () => { const b = await binding('bad'); return ready(b) === 'False' ? b : undefined; }))).toMatchObject({ status: 'Degraded', message: expect.stringContaining('does not exist') });
    const role = await eventually('the Role status', async () => { const r = await running.client.get(resourcePath(resources.roles, undefined, `${ns.name}.reader`)); return ready(r) === 'True' ? r : undefined; });
    expect(health(role)).toMatchObject({ status: 'Healthy' });
    await running.client.request('DELETE', resourcePath(resources.roles, undefined, `${ns.name}.reader`));
  });
});
