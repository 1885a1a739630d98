/**
 * A loadable guest image: what the assembler, the ELF loader and the flat
 * loader all produce, and what the machine loads into its memory at reset.
 */
export interface Segment {
  /** Guest physical address of the first byte. */
  addr: number;
  /** Bytes to copy; memory beyond them (e.g. an ELF .bss) stays zero. */
  data: Uint8Array;
  /** Total bytes the segment occupies in memory (≥ data.length), for bounds checks. */
  size: number;
}

export interface Image {
  segments: Segment[];
  /** Address of the first instruction. */
  entry: number;
  /** Symbols known to the producer (assembler labels, ELF symbols if any). */
  symbols: Record<string, number>;
}

/**
 * A problem with an image: the assembler fills `line`/`column` (1-based) and
 * `expected`; the ELF loader fills `offset` (byte offset in the file).
 */
export class ImageError extends Error {
  constructor(
    message: string,
    readonly detail: { line?: number; column?: number; expected?: string; offset?: number } = {},
  ) {
    super(message);
    this.name = "ImageError";
  }
}

/** The highest address an image occupies, exclusive. */
export function imageEnd(image: Image): number {
  let end = 0;
  for (const s of image.segments) end = Math.max(end, s.addr + s.size);
  return end;
}

/** A flat binary: loaded at address 0, entry 0. */
export function flatImage(bytes: Uint8Array): Image {
  return { segments: [{ addr: 0, data: bytes, size: bytes.length }], entry: 0, symbols: {} };
}
