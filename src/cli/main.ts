// kubectl service-user: the entry point bin/kubectl-service_user runs from a checkout, and
// the release's one-file bundle (plugins/release.ts) calls main() of. It parses kubectl's
// flags, then loads only the command asked for (the certificate libraries cost a few hundred
// milliseconds and most commands never need them). Exit codes: 0, 1 (error, with what to do
// on stderr), 2 (inspect or whoami found a credential that does not verify).
import { parseArgs } from 'node:util';
import { CheckFailed, exitCodes, messageOf, UsageError, withoutTokens } from './errors.ts';
import { text } from 'node:stream/consumers';
import { isOutputFormat, type OutputFormat } from './format.ts';

export const usage = `kubectl service-user: service users, their credentials and who a token is.

Commands:
  list [-A]                          service users: friendly name, phase, end date, tokens, accounts
  status NAME                        conditions, tokens, certificate, permissions, restart targets, events
  inspect secret NAME                what a credentials Secret holds, checked: token checksum, certificate
                                     chain, CRL, PKCS#12 password (NAME: the Secret or its ServiceUser)
  rotate NAME [--token] [--certificate]
                                     rotate the token and/or renew the certificate now (both by default)
  revoke NAME TOKEN-ID               revoke one token (adds it to spec.credentials.token.revokedTokenIds);
                                     TOKEN-ID is the id status shows, never the token
  disable NAME | enable NAME         suspend or resume: verification refuses while disabled
  extend NAME --until DATE | --by DURATION
                                     move spec.endDate (DATE: 2027-01-12 or RFC 3339; DURATION: 30d, 720h)
  whoami [--token-file FILE]         who a token (stdin or FILE) is, asked of the verification service

Spec changes are server-side applies under the field manager "kubectl-service-user"; each
prints the change (commit it too if the ServiceUser lives in Git). --dry-run[=client|server]
shows it without making it. A field another manager declares (Argo CD, Flux, kubectl apply,
npm run dev) is a conflict: change it where it is declared, or take it over with
--force-conflicts (the owner's next apply sets it back unless its manifest changes too).

Flags (as kubectl's):
  -n, --namespace NS     namespace (default: the context's, else "default")
  -A, --all-namespaces   list across namespaces
  -o, --output FORMAT    json | yaml (| name for list); default: a table or report
      --kubeconfig FILE  kubeconfig (default: $KUBECONFIG, ~/.kube/config)
      --context NAME     kubeconfig context
      --as USER, --as-group GROUP   impersonate
  -h, --help             this text
  inspect:  --show-token (prints the token; a warning goes to stderr), --verify-url URL,
            --verify-ca FILE, --operator-namespace NS (where the CRL ConfigMap lives)
  whoami:   --verify-url URL (or $SERVICE_USER_VERIFY_URL), --verify-ca FILE (or
            $SERVICE_USER_VERIFY_CA), --cert FILE --key FILE (a caller certificate; default:
            the token authenticates itself and needs verification:introspect, else the
            plugin finds the ServiceUser that records the token, through the kubeconfig)

Exit codes: 0 ok, 1 error, 2 a checked credential does not verify (inspect, whoami).
Docs: docs/cli.md
`;

export const options = {
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  namespace: { type: 'string', short: 'n' },
  'all-namespaces': { type: 'boolean', short: 'A' },
  output: { type: 'string', short: 'o' },
  as: { type: 'string' },
  'as-group': { type: 'string', multiple: true },
  help: { type: 'boolean', short: 'h' },
  token: { type: 'boolean' },
  certificate: { type: 'boolean' },
  until: { type: 'string' },
  by: { type: 'string' },
  'dry-run': { type: 'string' },
  'force-conflicts': { type: 'boolean' },
  'show-token': { type: 'boolean' },
  'verify-url': { type: 'string' },
  'verify-ca': { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  'token-file': { type: 'string' },
  'operator-namespace': { type: 'string' },
} as const;

export type Flags = ReturnType<typeof parse>['values'];

function parse(args: string[]) {
  // kubectl accepts a bare --dry-run (meaning client); parseArgs wants a value.
  const normalized = args.map((a) => (a === '--dry-run' ? '--dry-run=client' : a));
  try {
    return parseArgs({ args: normalized, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${messageOf(err).replace(/\. To specify.*$/s, '')}; see kubectl service-user --help`);
  }
}

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  stdin: () => Promise<string>;
  stdinIsTty: boolean;
  now: () => number;
}

export interface Invocation {
  command: string;
  flags: Flags;
  args: string[];
  format: OutputFormat;
  io: Io;
}

export const commands: Record<string, (inv: Invocation) => Promise<void>> = {
  list: async (inv) => (await import('./read.ts')).list(inv),
  status: async (inv) => (await import('./read.ts')).status(inv),
  inspect: async (inv) => (await import('./inspect.ts')).inspect(inv),
  rotate: async (inv) => (await import('./change.ts')).rotate(inv),
  revoke: async (inv) => (await import('./change.ts')).revoke(inv),
  disable: async (inv) => (await import('./change.ts')).setDisabled(inv, true),
  enable: async (inv) => (await import('./change.ts')).setDisabled(inv, false),
  extend: async (inv) => (await import('./change.ts')).extend(inv),
  whoami: async (inv) => (await import('./whoami.ts')).whoami(inv),
};

export async function run(argv: string[], io: Io): Promise<number> {
  try {
    const { values: flags, positionals } = parse(argv);
    const [command, ...args] = positionals;
    if (flags.help || !command || command === 'help') {
      io.out(usage);
      return command || flags.help ? exitCodes.ok : exitCodes.error;
    }
    const handler = commands[command];
    if (!handler) throw new UsageError(`unknown command "${command}" for "kubectl service-user"; commands: ${Object.keys(commands).join(', ')} (kubectl service-user --help)`);
    const output = flags.output ?? 'table';
    if (!isOutputFormat(output)) throw new UsageError(`--output ${output}: must be json or yaml${command === 'list' ? ' or name' : ''}`);
    if (output === 'name' && command !== 'list') throw new UsageError('-o name is for list only; use -o json or -o yaml');
    if (flags['dry-run'] !== undefined && !['client', 'server'].includes(flags['dry-run'])) throw new UsageError(`--dry-run=${flags['dry-run']}: must be client or server`);
    await handler({ command, flags, args, format: output, io });
    return exitCodes.ok;
  } catch (err) {
    // Messages may quote arguments back: a token among them is cut to its id.
    if (err instanceof CheckFailed) {
      io.err(`error: ${withoutTokens(err.message)}\n`);
      return exitCodes.checkFailed;
    }
    io.err(`error: ${withoutTokens(err instanceof Error ? err.message : String(err))}\n`);
    return exitCodes.error;
  }
}

/** The process's plugin: argv, stdio and the exit code (the bundle's entry calls it too). */
export async function main(): Promise<void> {
  const io: Io = {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    stdin: () => text(process.stdin),
    stdinIsTty: process.stdin.isTTY === true,
    now: Date.now,
  };
  const code = await run(process.argv.slice(2), io);
  // Let stdout drain (a pipe to jq) before leaving.
  process.exitCode = code;
}

if (import.meta.main) await main();
