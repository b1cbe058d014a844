// A real SMTP server for the notice tests: Mailpit, built from its Go module in this folder
// (cached like the control plane), run on loopback; messages are read through its HTTP API.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildGoModule } from '../cluster/controlplane.ts';
import { freePort } from '../net.ts';

export function buildMailpit(): string {
  return buildGoModule(path.dirname(fileURLToPath(import.meta.url)), 'mailpit', [], 'github.com/axllent/mailpit');
}

export interface MailpitMessage {
  ID: string;
  MessageID: string;
  Subject: string;
  To: { Address: string }[];
  From: { Address: string };
}

export interface Mailpit {
  smtpPort: number;
  /** Every message received, oldest first. */
  messages(): Promise<MailpitMessage[]>;
  /** A message's raw source (headers and body) as delivered. */
  raw(id: string): Promise<string>;
  /** A message's plain-text body, decoded (the raw source is quoted-printable). */
  text(id: string): Promise<string>;
  stop(): Promise<void>;
  /** Starts again on the same ports (after stop), keeping nothing. */
  start(): Promise<void>;
}

export interface MailpitOptions {
  /** STARTTLS required, with this certificate and key (PEM files). */
  tls?: { certFile: string; keyFile: string };
  /** Only these credentials are accepted. */
  auth?: { user: string; pass: string };
  smtpPort?: number;
}

export async function startMailpit(options: MailpitOptions = {}): Promise<Mailpit> {
  const binary = buildMailpit();
  const dir = mkdtempSync(path.join(tmpdir(), 'mailpit-'));
  const smtpPort = options.smtpPort ?? (await freePort());
  const apiPort = await freePort();
  const args = ['--smtp', `127.0.0.1:${smtpPort}`, '--listen', `127.0.0.1:${apiPort}`, '--disable-version-check', '--smtp-disable-rdns', '--quiet'];
  if (options.tls) args.push('--smtp-tls-cert', options.tls.certFile, '--smtp-tls-key', options.tls.keyFile, '--smtp-require-starttls');
  if (options.auth) {
    const file = path.join(dir, 'auth');
    writeFileSync(file, `${options.auth.user}:{SHA}${createHash('sha1').update(options.auth.pass).digest('base64')}\n`);
    args.push('--smtp-auth-file', file);
    if (!options.tls) args.push('--smtp-auth-allow-insecure');
  } else {
    args.push('--smtp-auth-accept-any', ...(options.tls ? [] : ['--smtp-auth-allow-insecure']));
  }
  let child: ChildProcess | undefined;
  const api = (p: string) => `http://127.0.0.1:${apiPort}/api/v1/${p}`;
  const server: Mailpit = {
    smtpPort,
    async messages() {
      const r = (await (await fetch(api('messages?limit=500'))).json()) as { messages: MailpitMessage[] };
      return r.messages.reverse();
    },
    async raw(id) {
      return (await fetch(api(`message/${id}/raw`))).text();
    },
    async text(id) {
      return ((await (await fetch(api(`message/${id}`))).json()) as { Text: string }).Text;
    },
    async stop() {
      if (!child || child.exitCode !== null) return;
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
    async start() {
      child = spawn(binary, [...args, '--database', path.join(dir, `mailpit-${Date.now()}.db`)], { stdio: ['ignore', 'inherit', 'inherit'] });
      const deadline = Date.now() + 30_000;
      for (;;) {
        try {
          if ((await fetch(api('info'))).ok) return;
        } catch {
          // not listening yet
        }
        if (child.exitCode !== null) throw new Error(`mailpit exited with ${child.exitCode}`);
        if (Date.now() > deadline) throw new Error('mailpit did not start within 30 s');
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
  await server.start();
  return server;
}
