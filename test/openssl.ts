// CAs made with the openssl CLI, as platform teams make the CAs they bring: OpenSSL 3's
// defaults (UTF8String), PrintableString (string_mask=default, OpenSSL 1.x's habit),
// multi-valued RDNs, and any key type `openssl req -newkey` takes.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { run } from './kube.ts';

/** How to ask for string_mask=default (PrintableString where the value allows it) in `subject`. */
export const printable = 'PRINTABLE';

/**
 * A CA as `openssl req -x509` makes it with these subject options (`printable` in them stands
 * for a config file with string_mask=default), its key made by `key` (default EC P-256), in `dir`.
 */
export async function opensslCa(dir: string, slug: string, subject: string[], key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']): Promise<{ certPem: string; keyPem: string; certFile: string }> {
  const keyFile = path.join(dir, `${slug}.key`);
  const certFile = path.join(dir, `${slug}.crt`);
  const config = path.join(dir, `${slug}.cnf`);
  writeFileSync(config, '[req]\ndistinguished_name=dn\nstring_mask=default\nprompt=no\n[dn]\n');
  const made = await run('openssl', ['req', '-x509', ...key, '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '30', ...subject.map((a) => (a === printable ? config : a)),
    '-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  if (!made.ok) throw new Error(made.err);
  return { certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8'), certFile };
}
