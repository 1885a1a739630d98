/** Turn an image as the API receives it into a loadable Image that fits the guest. */
import { assemble } from "./assembler.ts";
import { loadElf } from "./elf.ts";
import { flatImage, imageEnd, ImageError, type Image } from "./image.ts";

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
  return image;
}
