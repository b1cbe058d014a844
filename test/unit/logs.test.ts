// The run-wide log scan finds what it must: real tokens and private keys, not their ids or hashes.
import { expect, it } from 'vitest';
import { issueToken } from '../../src/credentials/token.ts';
import { createCa } from '../../src/credentials/ca.ts';
import { findSecrets } from '../logs.ts';

it('finds a token and a private key, and not a token id or hash', async () => {
  const token = issueToken();
  const { keyPem } = await createCa();
  const log = [
    JSON.stringify({ msg: 'Secret applied', tokenId: token.id, sha256: token.sha256 }),
    JSON.stringify({ msg: 'oops', value: token.token }),
    keyPem.split('\n')[0],
  ].join('\n');
  expect(findSecrets(log)).toEqual(['line 2: API token', 'line 3: private key']);
});
