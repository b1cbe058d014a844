// X-Forwarded-For read with Envoy's xff_num_trusted_hops semantics: the entry the trusted
// proxies appended, never one the client wrote.
import { describe, expect, it } from 'vitest';
import { forwardedClient, parseTrustedHops } from '../../src/verify/forwarded.ts';

describe('forwardedClient', () => {
  it('takes the rightmost entry (the one the gateway appended) with no trusted hops', () => {
    expect(forwardedClient('192.0.2.5', 0)).toBe('192.0.2.5');
    // The client wrote 10.1.1.1; the gateway appended the address it saw.
    expect(forwardedClient('10.1.1.1, 192.0.2.5', 0)).toBe('192.0.2.5');
    expect(forwardedClient('10.1.1.1,192.0.2.5', 0)).toBe('192.0.2.5');
  });

  it('takes the entry N+1 from the right with N trusted hops', () => {
    // client, then a load balancer in front of the gateway appended 10.9.9.9 (the client's
    // address as it saw it), then the gateway appended the load balancer's 172.16.0.2.
    expect(forwardedClient('1.2.3.4, 10.9.9.9, 172.16.0.2', 1)).toBe('10.9.9.9');
    expect(forwardedClient('1.2.3.4, 10.9.9.9, 172.16.0.2', 2)).toBe('1.2.3.4');
  });

  it('is unknown when the header has fewer entries than the hops need', () => {
    expect(forwardedClient('192.0.2.5', 1)).toBeUndefined();
    expect(forwardedClient('10.1.1.1, 192.0.2.5', 2)).toBeUndefined();
    expect(forwardedClient(undefined, 0)).toBeUndefined();
    expect(forwardedClient('', 0)).toBeUndefined();
  });

  it('is unknown when the chosen entry is not a bare IP address', () => {
    for (const bad of ['unknown', '10.1.1.1:8080', '[2001:db8::1]:443', '10.0.0.300', 'evil.example', '_hidden', '10.1.1.1, ']) {
      expect(forwardedClient(bad, 0), bad).toBeUndefined();
    }
    // …and a bad entry to the left of the chosen one does not matter.
    expect(forwardedClient('garbage, 192.0.2.5', 0)).toBe('192.0.2.5');
  });

  it('reads repeated headers as one list, in order', () => {
    expect(forwardedClient(['10.1.1.1', '192.0.2.5'], 0)).toBe('192.0.2.5');
    expect(forwardedClient(['10.1.1.1', '192.0.2.5'], 1)).toBe('10.1.1.1');
  });

  it('takes IPv6 entries', () => {
    expect(forwardedClient('10.1.1.1, 2001:db8::5', 0)).toBe('2001:db8::5');
  });

  it('refuses a hop count that is not a non-negative integer', () => {
    expect(() => forwardedClient('192.0.2.5', -1)).toThrow(/trustedHops/);
    expect(() => forwardedClient('192.0.2.5', 1.5)).toThrow(/trustedHops/);
  });
});

describe('parseTrustedHops', () => {
  it('takes a small whole number and names the flag otherwise', () => {
    expect(parseTrustedHops('0')).toBe(0);
    expect(parseTrustedHops('2')).toBe(2);
    for (const bad of ['', '-1', '1.5', 'two', '100', ' 1']) expect(() => parseTrustedHops(bad), bad).toThrow(/--trusted-proxy-hops/);
  });
});
