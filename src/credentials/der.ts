// DER, by hand, for the structures the operator encodes itself: the CRL (whose entries are
// encoded once and re-signed by concatenation), the PKCS#12 bundle and the TBSCertificate of
// a client certificate (tbs.ts). Writing is a few tag-length-value helpers over Buffers;
// reading (to open a bundle in `inspect`, to copy a CA's name) walks the same TLVs and refuses
// anything truncated or indefinite-length, which DER never produces. The CA certificate and
// serving certificates stay with @peculiar/x509: this is not a general ASN.1 library.

export function tlv(tag: number, ...content: Buffer[]): Buffer {
  return tlvOf(tag, content);
}

/** tlv() for a list too long to spread as arguments (100,000 CRL entries). */
export function tlvOf(tag: number, content: readonly Buffer[]): Buffer {
  let length = 0;
  for (const c of content) length += c.length;
  let header: Buffer;
  if (length < 0x80) header = Buffer.from([tag, length]);
  else {
    const bytes: number[] = [];
    for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
    header = Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([header, ...content], header.length + length);
}

export const sequence = (...content: Buffer[]) => tlv(0x30, ...content);
/** A DER SET OF: its elements in ascending order of their encodings (X.690 11.6). */
export const setOf = (...content: Buffer[]) => tlvOf(0x31, [...content].sort(Buffer.compare));
export const octets = (b: Buffer | Uint8Array) => tlv(0x04, Buffer.from(b));
export const explicit = (n: number, ...content: Buffer[]) => tlv(0xa0 | n, ...content);
export const derNull = Buffer.from([0x05, 0x00]);

/** A non-negative INTEGER from hex: minimal, with a leading zero when the top bit is set. */
export function integerFromHex(hex: string): Buffer {
  let bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  bytes = bytes.subarray(start);
  return tlv(0x02, ...((bytes[0] ?? 0) & 0x80 ? [Buffer.from([0]), bytes] : [bytes]));
}

export const integer = (n: number) => integerFromHex(n.toString(16));

/** A BMPString (UTF-16BE), as PKCS#12 friendly names are. */
export const bmpString = (s: string) => tlv(0x1e, Buffer.from(s, 'utf16le').swap16());

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5), to the second (milliseconds dropped). */
export function time(d: Date): Buffer {
  const digits = d.toISOString().slice(0, 19).replace(/[-T:]/g, '');
  const year = d.getUTCFullYear();
  return year >= 1950 && year < 2050 ? tlv(0x17, Buffer.from(`${digits.slice(2)}Z`, 'ascii')) : tlv(0x18, Buffer.from(`${digits}Z`, 'ascii'));
}

export function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  if (a === undefined || b === undefined) throw new Error(`OID ${dotted}: needs at least two arcs`);
  const out = [a * 40 + b];
  for (const n of rest) {
    const groups = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) groups.unshift((v & 0x7f) | 0x80);
    out.push(...groups);
  }
  return tlv(0x06, Buffer.from(out));
}

// --- reading ---------------------------------------------------------------------------------

/** One element: its tag, its content, and the whole encoding. */
export interface Element {
  tag: number;
  content: Buffer;
  der: Buffer;
}

/** The element at `offset` of `buf`. Throws on anything truncated or not DER-shaped. */
export function readElement(buf: Buffer, offset = 0): Element {
  const at = (i: number) => {
    const byte = buf[i];
    if (byte === undefined) throw new Error('DER truncated');
    return byte;
  };
  const tag = at(offset);
  if ((tag & 0x1f) === 0x1f) throw new Error('DER: multi-byte tags are not used here');
  let length = at(offset + 1);
  let start = offset + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 4) throw new Error('DER: indefinite or oversized length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + at(start + i);
    start += n;
  }
  if (start + length > buf.length) throw new Error('DER truncated');
  return { tag, content: buf.subarray(start, start + length), der: buf.subarray(offset, start + length) };
}

/** The elements inside a constructed element's content. */
export function children(content: Buffer): Element[] {
  const out: Element[] = [];
  for (let offset = 0; offset < content.length; ) {
    const e = readElement(content, offset);
    out.push(e);
    offset += e.der.length;
  }
  return out;
}

/** The element of `e` at index `i`, which must carry tag `tag`; `what` names it in the error. */
export function child(e: Element, i: number, tag: number, what: string): Element {
  const c = children(e.content)[i];
  if (!c || c.tag !== tag) throw new Error(`${what}: expected tag 0x${tag.toString(16)}, found ${c ? `0x${c.tag.toString(16)}` : 'nothing'}`);
  return c;
}

export function oidString(e: Element): string {
  if (e.tag !== 0x06) throw new Error('DER: expected an OBJECT IDENTIFIER');
  const parts: number[] = [];
  let v = 0;
  for (const byte of e.content) {
    v = v * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      if (!parts.length) parts.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

export function integerValue(e: Element): number {
  if (e.tag !== 0x02 || e.content.length === 0 || e.content.length > 6) throw new Error('DER: expected a small INTEGER');
  return e.content.readUIntBE(0, e.content.length);
}
