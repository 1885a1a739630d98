/** Turn an image as the API receives it into a loadable Image that fits the guest. */
import { isZero, PAGE_SIZE } from "../guest/memory.ts";
import { assemble } from "./assembler.ts";
import { loadElf } from "./elf.ts";
import { flatImage, imageEnd, ImageError, type Image, type Segment } from "./image.ts";

export type ImageSource = { asm: string } | { elf: string } | { flat: string };

export function decodeBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function encodeBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** Build the image; throws ImageError (with line/column or offset) if it is bad or does not fit. */
export function buildImage(source: ImageSource, memoryBytes: number): Image {
  const image =
    "asm" in source ? assemble(source.asm)
    : "elf" in source ? loadElf(decodeBase64(source.elf), memoryBytes)
    : flatImage(decodeBase64(source.flat));
  const end = imageEnd(image);
  if (end > memoryBytes) {
    throw new ImageError(`the image needs ${end} bytes of memory but the guest has ${memoryBytes}; raise memoryPages`);
  }
  if (image.entry % 4 !== 0 || image.entry >= memoryBytes) {
    throw new ImageError(`entry point 0x${image.entry.toString(16)} is misaligned or outside memory`);
  }
  // Zeros cost nothing: guest memory starts zeroed (a large .space travels as a gap, or as the last piece's size).
  const sparse = { ...image, segments: image.segments.flatMap(sparseSegment) };
  const bytes = sparse.segments.reduce((n, seg) => n + seg.data.length, 0);
  if (bytes > MAX_IMAGE_DATA_BYTES) {
    throw new ImageError(`the image holds ${bytes} bytes of data once decoded (all-zero 4 KiB chunks aside); at most ${MAX_IMAGE_DATA_BYTES} (16 MiB) go to a new guest`);
  }
  return sparse;
}

/**
 * What a decoded image may carry to its guest's objects: well under the
 * platform's 32 MiB per RPC message (an ELF whose 40 program headers reuse one
 * 1 MiB of file decoded to 40 MiB and failed with a bare 500).
 */
export const MAX_IMAGE_DATA_BYTES = 16 << 20;

/** A segment's data is looked at in chunks of this many bytes (a page's worth): an all-zero chunk is left out. */
export const ZERO_GAP_BYTES = PAGE_SIZE;

/**
 * A segment as the pieces of it that are not zero: its data cut into chunks
 * of ZERO_GAP_BYTES, runs of all-zero chunks left out, each piece's leading
 * and trailing zeros trimmed. Each piece's data is a copy, not a view (a message carries a
 * view's whole buffer). The last piece keeps the segment's end, so the image
 * still claims the memory it did; an all-zero segment is one piece with no
 * data.
 */
export function sparseSegment(seg: Segment): Segment[] {
  const d = seg.data;
  const end = seg.addr + seg.size;
  const pieces: Segment[] = [];
  let start = -1;
  for (let at = 0; at < d.length; at += ZERO_GAP_BYTES) {
    const to = Math.min(d.length, at + ZERO_GAP_BYTES);
    const zero = isZero(d.subarray(at, to));
    if (!zero && start < 0) start = at;
    if (zero && start >= 0) {
      pieces.push(piece(seg, start, at));
      start = -1;
    }
  }
  if (start >= 0) pieces.push(piece(seg, start, d.length));
  const last = pieces.at(-1);
  if (!last) return [{ addr: seg.addr, data: new Uint8Array(0), size: seg.size }];
  last.size = end - last.addr;
  return pieces;
}

/** Bytes [from, to) of the segment's data, leading and trailing zeros trimmed, as a piece of its own. */
function piece(seg: Segment, from: number, to: number): Segment {
  while (to > from && seg.data[to - 1] === 0) to--;
  while (from < to && seg.data[from] === 0) from++;
  return { addr: seg.addr + from, data: seg.data.slice(from, to), size: to - from };
}

