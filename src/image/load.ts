/** Turn an image as the API receives it into a loadable Image that fits the guest. */
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
  // Zeros at a segment's end cost nothing: guest memory starts zeroed (a large trailing .space travels as its size).
  const sparse = { ...image, segments: image.segments.map(withoutTrailingZeros) };
  const bytes = sparse.segments.reduce((n, seg) => n + seg.data.length, 0);
  if (bytes > MAX_IMAGE_DATA_BYTES) {
    throw new ImageError(`the image holds ${bytes} bytes of data once decoded (zeros at the end of a segment aside); at most ${MAX_IMAGE_DATA_BYTES} (16 MiB) go to a new guest`);
  }
  return sparse;
}

/**
 * What a decoded image may carry to its guest's objects: well under the
 * platform's 32 MiB per RPC message (an ELF whose 40 program headers reuse one
 * 1 MiB of file decoded to 40 MiB and failed with a bare 500).
 */
export const MAX_IMAGE_DATA_BYTES = 16 << 20;

function withoutTrailingZeros(seg: Segment): Segment {
  let end = seg.data.length;
  while (end > 0 && seg.data[end - 1] === 0) end--;
  // A copy, not a view: a message carries a view's whole buffer.
  return end === seg.data.length ? seg : { ...seg, data: seg.data.slice(0, end) };
}
