/**
 * CRC-32 (IEEE 802.3, the zlib polynomial). It guards every checkpoint frame
 * against a torn or corrupted transfer: a frame whose checksum does not match
 * is refused whole. Slicing-by-8 (eight tables, eight bytes per step): the
 * checksum runs over every byte a sync sends, on both sides, so it is on the
 * hot path.
 */
const TABLES = (() => {
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 8; k++) t[k * 256 + n] = t[(k - 1) * 256 + n] >>> 8 ^ t[t[(k - 1) * 256 + n] & 0xff];
  }
  return t;
})();

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  const T = TABLES;
  let c = -1;
  let i = start;
  // Whole words at a time where the bytes are 4-aligned in their buffer.
  if (LITTLE_ENDIAN && end - start >= 64) {
    while (i < end && ((bytes.byteOffset + i) & 3) !== 0) c = T[(c ^ bytes[i++]) & 0xff] ^ (c >>> 8);
    const words = new Int32Array(bytes.buffer, bytes.byteOffset + i, (end - i) >> 2);
    const pairs = words.length >> 1;
    for (let j = 0; j < pairs; j++) {
      const a = c ^ words[2 * j];
      const b = words[2 * j + 1];
      c =
        T[1792 + (a & 0xff)] ^ T[1536 + ((a >>> 8) & 0xff)] ^ T[1280 + ((a >>> 16) & 0xff)] ^ T[1024 + (a >>> 24)] ^
        T[768 + (b & 0xff)] ^ T[512 + ((b >>> 8) & 0xff)] ^ T[256 + ((b >>> 16) & 0xff)] ^ T[b >>> 24];
    }
    i += pairs * 8;
  }
  for (const stop = end - 7; i < stop; i += 8) {
    const a = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    c =
      T[1792 + (a & 0xff)] ^ T[1536 + ((a >>> 8) & 0xff)] ^ T[1280 + ((a >>> 16) & 0xff)] ^ T[1024 + (a >>> 24)] ^
      T[768 + bytes[i + 4]] ^ T[512 + bytes[i + 5]] ^ T[256 + bytes[i + 6]] ^ T[bytes[i + 7]];
  }
  for (; i < end; i++) c = T[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
