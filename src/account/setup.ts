// The Account controller with the manager: its reconciler (status: how many ServiceUsers
// each Account admits) and the watches that wake it — the Account itself, and a ServiceUser
// whose named or admitted accounts changed (the Accounts it left and joined recount).
import { accountsOf } from '../api/indexes.ts';
import type { Caches } from '../caches.ts';
import type { Controller } from '../controller/controller.ts';
import type { Manager } from '../controller/manager.ts';
import { stableJson } from '../controller/stable-json.ts';
import { changed } from '../controller/watch.ts';
import { accountReconciler } from './reconcile.ts';

export function setupAccounts(mgr: Manager, caches: Caches, s: { fieldManager: string; now: () => number }): Controller {
  const controller = mgr.controller('account', accountReconciler({ ...caches, client: mgr.client, ...s }), 1);
  caches.accounts.onChange((_type, account) => controller.enqueue(account.metadata.name));
  caches.serviceUsers.onChange((type, su, old) => {
    const fingerprint = (e: typeof su) => stableJson(accountsOf(e));
    if (!changed(type, su, old, fingerprint)) return;
    const before = old ? accountsOf(old) : { named: [], admitted: [] };
    const now = accountsOf(su);
    for (const a of new Set([...before.named, ...before.admitted, ...now.named, ...now.admitted])) controller.enqueue(a);
  });
  return controller;
}
