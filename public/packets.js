// Packets as bytes: parsing what the user types, and showing what went by.

export function base64ToBytes(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** "hex: 01 00 …" or "0x0100…" is hex; anything else is sent as UTF-8 text. */
export function parsePacketInput(input) {
  const m = /^\s*(?:hex:|0x)\s*([0-9a-fA-F\s]*)$/.exec(input);
  let bytes;
  if (m) {
    const hex = m[1].replace(/\s+/g, "");
    if (hex.length % 2) throw new Error("hex packet: an odd number of digits");
    bytes = new Uint8Array(hex.length / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  } else if (/^\s*(?:hex:|0x)/.test(input)) {
    throw new Error("hex packet: only hex digits and spaces may follow 'hex:'");
  } else {
    bytes = new TextEncoder().encode(input);
  }
  if (bytes.length < 1 || bytes.length > 4096) throw new Error("a packet is 1 to 4096 bytes");
  return bytes;
}

/** The counter example's request: u32 client, u32 seq (little-endian). */
export function counterRequest(client, seq) {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint32(0, client, true);
  v.setUint32(4, seq, true);
  return b;
}

/** The counter example's reply, or null: u32 client, u32 seq, u32 counter. */
export function counterReply(bytes) {
  if (bytes.length !== 12) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, 12);
  const client = v.getUint32(0, true);
  if (client >= 64) return null;
  return { client, seq: v.getUint32(4, true), counter: v.getUint32(8, true) };
}

function printable(bytes) {
  for (const b of bytes) if ((b < 0x20 || b > 0x7e) && b !== 10 && b !== 13 && b !== 9) return false;
  return bytes.length > 0;
}

export function hex(bytes, max = 16) {
  const parts = [];
  for (let i = 0; i < Math.min(bytes.length, max); i++) parts.push(bytes[i].toString(16).padStart(2, "0"));
  return parts.join(" ") + (bytes.length > max ? " …" : "");
}

export function describePacket(bytes, dir) {
  if (printable(bytes)) {
    const text = new TextDecoder().decode(bytes.subarray(0, 120));
    return `"${text.replace(/\n/g, "⏎")}"${bytes.length > 120 ? " …" : ""}`;
  }
  if (dir === "out") {
    const r = counterReply(bytes);
    if (r) return `client ${r.client} · seq ${r.seq} → counter ${r.counter}`;
  } else if (bytes.length === 8) {
    const v = new DataView(bytes.buffer, bytes.byteOffset, 8);
    const client = v.getUint32(0, true);
    if (client < 64) return `client ${client} · seq ${v.getUint32(4, true)}`;
  }
  return `${bytes.length} B: ${hex(bytes)}`;
}
