/**
 * A GNU-`as`-syntax RV32IM assembler: `assemble(source)` turns assembly text into one
 * loadable `Image` (see docs/guest-abi.md, "Images").
 *
 * Layout: `.text` from address 0, then `.data` (also `.rodata`, `.bss`, ...) starting exactly
 * at the end of .text. Alignment directives align ABSOLUTE addresses. The result is one
 * segment at address 0 holding text then data; the entry is `_start` if defined, else 0.
 *
 * Pipeline (each a section below):
 *   1. lexer        – one line at a time into tokens (comments `#` and `//` dropped);
 *   2. parser       – statements split at `;`: labels, a mnemonic/directive, operand groups
 *                     (split at top-level commas, parsed lazily by what each operand must be);
 *   3. expressions  – a small recursive-descent parser and an evaluator over 64-bit BigInts;
 *   4. layout       – two walks that fix every statement's address and size:
 *                       walk A lays out .text (addresses are absolute from 0),
 *                       walk B lays out .data from the now-known end of .text;
 *                     sizes may only depend on values known at that point (constants and
 *                     symbols defined earlier), so every size is fixed before anything is emitted;
 *   5. emission     – evaluates every operand with all symbols known and writes the bytes.
 *
 * Behaviour worth knowing (mostly as GNU `as` does it):
 *   - Branch and jump targets are ADDRESSES (labels, `1b`/`1f`, `.`, or any expression);
 *     the pc-relative offset is computed. So `j .` loops forever and `beq a0, a1, 8` at
 *     address 0 branches to address 8.
 *   - Numbers: decimal, 0x hex, 0b binary, and a leading 0 means octal (`010` == 8).
 *   - Operator precedence is C's (unary, * / %, + -, << >>, &, ^, |), not GNU as's own order.
 *   - `li` is one `addi` when the value fits in 12 bits, one `lui` when its low 12 bits are 0,
 *     else `lui`+`addi`; a value not known in the layout walk (a forward reference) always
 *     takes `lui`+`addi`.
 *   - `.align`/`.p2align`/`.balign` padding in .text is zero bytes up to a 4-byte boundary
 *     then NOPs (`addi x0, x0, 0`); in .data it is zero bytes; an explicit fill byte wins.
 *   - Ignored (accepted, no effect): .globl .global .local .weak .hidden .type .size .file
 *     .ident .option .attribute .cfi_*.
 *
 * Every problem is an `ImageError` whose message reads `line L, column C: ...` and whose
 * `detail` carries `line`, `column` (1-based, the offending token) and `expected`.
 */
import { ImageError, type Image } from "./image";
import {
  BRANCHES,
  CSR,
  I_ARITH,
  LOADS,
  NOP,
  R_TYPE,
  SHIFT_IMM,
  STORES,
  enc,
  hi20,
  lo12,
  regNumber,
} from "./encode";

/** The machine's largest memory; an image beyond it could never load. */
const MAX_IMAGE_BYTES = 64 * 1024 * 1024;
/** Bounds on expression nesting and size, so hostile input cannot overflow the stack. */
const MAX_NESTING = 64;
const MAX_EXPR_NODES = 1000;

const ZERO = 0;
const RA = 1;
const T1 = 6;

// ═══════════════════════════════ errors ═══════════════════════════════

function fail(line: number, column: number, expected: string, message: string): never {
  throw new ImageError(`line ${line}, column ${column}: ${message}`, { line, column, expected });
}

/** The common shape: `line 3, column 9: expected a register, found "x32"`. */
function expected(line: number, column: number, what: string, found: string): never {
  return fail(line, column, what, `expected ${what}, found ${found}`);
}

/** Quote source text for a message (shortened so a huge operand cannot flood it). */
function q(s: string): string {
  const short = s.length > 40 ? `${s.slice(0, 37)}...` : s;
  // Shown as written (a backslash stays one backslash); only control characters are escaped.
  let out = "";
  for (const c of short) {
    const n = c.charCodeAt(0);
    out += n < 0x20 || n === 0x7f ? `\\x${n.toString(16).padStart(2, "0")}` : c;
  }
  return `"${out}"`;
}

// ═══════════════════════════════ 1. lexer ═══════════════════════════════

interface TokBase {
  text: string;
  /** 1-based column of the first character, and of the character after the last. */
  col: number;
  end: number;
}
type Tok =
  | (TokBase & { kind: "id" | "punct" })
  | (TokBase & { kind: "num"; value: bigint })
  | (TokBase & { kind: "local"; label: number; dir: "b" | "f" })
  | (TokBase & { kind: "str"; bytes: number[] });
type LocalTok = Extract<Tok, { kind: "local" }>;

const isDigit = (c: string): boolean => c >= "0" && c <= "9";
const isAlpha = (c: string): boolean => (c >= "a" && c <= "z") || (c >= "A" && c <= "Z");
const isWordChar = (c: string): boolean => isAlpha(c) || isDigit(c) || c === "_";
const isIdStart = (c: string): boolean => isAlpha(c) || c === "_" || c === "." || c === "$";
const isIdChar = (c: string): boolean => isWordChar(c) || c === "." || c === "$";
const isHex = (c: string): boolean => isDigit(c) || (c >= "a" && c <= "f") || (c >= "A" && c <= "F");

function lexLine(src: string, line: number): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (c === " " || c === "\t" || c === "\v" || c === "\f") {
      i++;
      continue;
    }
    // Comments run to the end of the line; strings and char literals are lexed first, so a
    // `#` inside them is not a comment.
    if (c === "#" || (c === "/" && src[i + 1] === "/")) break;
    const col = i + 1;
    if (c === '"') {
      const r = lexString(src, i, line);
      toks.push({ kind: "str", text: src.slice(i, r.next), col, end: r.next + 1, bytes: r.bytes });
      i = r.next;
    } else if (c === "'") {
      const r = lexChar(src, i, line);
      toks.push({ kind: "num", text: src.slice(i, r.next), col, end: r.next + 1, value: BigInt(r.value) });
      i = r.next;
    } else if (isDigit(c)) {
      let j = i + 1;
      while (j < src.length && isWordChar(src[j])) j++;
      toks.push(lexNumber(src.slice(i, j), line, col));
      i = j;
    } else if (isIdStart(c)) {
      let j = i + 1;
      while (j < src.length && isIdChar(src[j])) j++;
      toks.push({ kind: "id", text: src.slice(i, j), col, end: j + 1 });
      i = j;
    } else if ((c === "<" || c === ">") && src[i + 1] === c) {
      toks.push({ kind: "punct", text: c + c, col, end: col + 2 });
      i += 2;
    } else {
      // Any other character is punctuation; whether it is allowed is the parser's business.
      const w = (src.codePointAt(i) ?? 0) > 0xffff ? 2 : 1;
      toks.push({ kind: "punct", text: src.slice(i, i + w), col, end: col + w });
      i += w;
    }
  }
  return toks;
}

const TWO_64 = 1n << 64n;
const DECIMAL = /^[1-9][0-9]*$/;
const HEX_OR_BINARY = /^0(?:[xX][0-9a-fA-F]+|[bB][01]+)$/;
const LOCAL_REF = /^([0-9]+)([bf])$/;
const OCTAL = /^0[0-7]*$/;

function lexNumber(text: string, line: number, col: number): Tok {
  const end = col + text.length;
  let value: bigint;
  let local: RegExpExecArray | null;
  if (DECIMAL.test(text)) {
    // Short decimals (the common case) skip BigInt parsing of a string.
    value = text.length < 16 ? BigInt(Number(text)) : BigInt(text);
  } else if (HEX_OR_BINARY.test(text)) {
    value = BigInt(text);
  } else if ((local = LOCAL_REF.exec(text))) {
    // `1b` / `1f`: a reference to numeric local label 1, backward or forward. (Checked after
    // binary, so `0b1` is a number and `0b` alone a reference to label 0.)
    if (local[1].length > 9) expected(line, col, "a local label of at most 9 digits", q(text));
    return { kind: "local", text, col, end, label: Number(local[1]), dir: local[2] as "b" | "f" };
  } else if (OCTAL.test(text)) {
    value = BigInt(`0o${text.slice(1) || "0"}`);
  } else {
    return expected(line, col, "a number", q(text));
  }
  if (value >= TWO_64) expected(line, col, "a number below 2^64", q(text));
  return { kind: "num", text, col, end, value };
}

const SIMPLE_ESCAPES: Readonly<Record<string, number>> = {
  n: 10, t: 9, r: 13, "\\": 92, '"': 34, "'": 39, a: 7, b: 8, f: 12, v: 11,
};

/** One escape sequence starting at the backslash src[j]. */
function readEscape(src: string, j: number, line: number): { value: number; next: number } {
  const e = src[j + 1];
  const what = "an escape sequence (\\n \\t \\r \\0 \\\\ \\\" \\' \\xNN or octal \\NNN)";
  if (e === undefined) return expected(line, j + 1, what, "end of line");
  if (Object.hasOwn(SIMPLE_ESCAPES, e)) return { value: SIMPLE_ESCAPES[e], next: j + 2 };
  if (e >= "0" && e <= "7") {
    let k = j + 1;
    let v = 0;
    while (k < j + 4 && src[k] >= "0" && src[k] <= "7") v = v * 8 + (src.charCodeAt(k++) - 48);
    if (v > 255) expected(line, j + 1, "an octal escape in \\0..\\377", q(src.slice(j, k)));
    return { value: v, next: k };
  }
  if (e === "x" || e === "X") {
    let k = j + 2;
    while (k < j + 4 && k < src.length && isHex(src[k])) k++;
    if (k === j + 2) expected(line, j + 1, "hex digits after \\x", q(src.slice(j, j + 3)));
    return { value: parseInt(src.slice(j + 2, k), 16), next: k };
  }
  return expected(line, j + 1, what, q(src.slice(j, j + 2)));
}

function pushUtf8(out: number[], cp: number): void {
  if (cp < 0x80) out.push(cp);
  else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 63));
  else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
  else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 63), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
}

/** A "..." string starting at src[i]: its bytes (UTF-8 for non-ASCII) and the index after it. */
function lexString(src: string, i: number, line: number): { bytes: number[]; next: number } {
  const bytes: number[] = [];
  let j = i + 1;
  for (;;) {
    if (j >= src.length) expected(line, i + 1, 'a closing " to end the string', "end of line");
    const c = src[j];
    if (c === '"') return { bytes, next: j + 1 };
    if (c === "\\") {
      if (j + 1 >= src.length) expected(line, i + 1, 'a closing " to end the string', "end of line");
      const e = readEscape(src, j, line);
      bytes.push(e.value);
      j = e.next;
    } else {
      const cp = src.codePointAt(j) ?? 0;
      pushUtf8(bytes, cp);
      j += cp > 0xffff ? 2 : 1;
    }
  }
}

/** A character literal 'a' / '\n' / '\'' starting at src[i]: its value and the index after it. */
function lexChar(src: string, i: number, line: number): { value: number; next: number } {
  const what = "a character literal like 'a' or '\\n'";
  const bad = (): never => {
    const close = src.indexOf("'", i + 2);
    return expected(line, i + 1, what, q(close < 0 ? src.slice(i) : src.slice(i, close + 1)));
  };
  let j = i + 1;
  let value: number;
  if (j >= src.length || src[j] === "'") return bad();
  if (src[j] === "\\") {
    const e = readEscape(src, j, line);
    value = e.value;
    j = e.next;
  } else {
    value = src.codePointAt(j) ?? 0;
    j += value > 0xffff ? 2 : 1;
  }
  if (src[j] !== "'") return bad();
  return { value, next: j + 1 };
}

// ═══════════════════════════════ 2. parser ═══════════════════════════════

/** One comma-separated operand: its tokens, where it is, and what follows it (for messages). */
interface Group {
  toks: Tok[];
  col: number;
  end: number;
  after: string;
}

interface LabelDef {
  name: string;
  col: number;
  /** Set for a numeric local label `N:`. */
  local?: number;
}

type Section = "text" | "data";

interface Stmt {
  line: number;
  src: string;
  labels: LabelDef[];
  /** The mnemonic or directive; `name` is lower-cased, `text` as written. */
  op?: { name: string; text: string; col: number };
  groups: Group[];
  /** The column just after the statement's last token ("missing operand" errors point here). */
  endCol: number;
  /** How many numeric local labels are defined up to and including this statement. */
  localSeq: number;
  /** Set by layout: address (undefined while unknown), size in bytes, section. */
  addr: number | undefined;
  size: number;
  section: Section;
}

const isPunct = (t: Tok | undefined, text: string): boolean => t !== undefined && t.kind === "punct" && t.text === text;

function splitStatements(toks: Tok[]): Tok[][] {
  const out: Tok[][] = [[]];
  for (const t of toks) {
    if (isPunct(t, ";")) out.push([]);
    else out[out.length - 1].push(t);
  }
  return out.filter((s) => s.length > 0);
}

/** Split operand tokens at commas that are not inside parentheses. */
function splitGroups(toks: Tok[], endCol: number): Group[] {
  if (toks.length === 0) return [];
  const groups: Group[] = [];
  const make = (ts: Tok[], fallbackCol: number, after: string): Group => ({
    toks: ts,
    col: ts.length ? ts[0].col : fallbackCol,
    end: ts.length ? ts[ts.length - 1].end : fallbackCol,
    after,
  });
  let cur: Tok[] = [];
  let depth = 0;
  for (const t of toks) {
    if (isPunct(t, "(")) depth++;
    else if (isPunct(t, ")")) depth = Math.max(0, depth - 1);
    else if (isPunct(t, ",") && depth === 0) {
      groups.push(make(cur, t.col, '","'));
      cur = [];
      continue;
    }
    cur.push(t);
  }
  groups.push(make(cur, endCol, "end of line"));
  return groups;
}

function parseStatement(toks: Tok[], line: number, src: string): Stmt {
  const endCol = toks[toks.length - 1].end;
  const labels: LabelDef[] = [];
  let i = 0;
  // Any number of `name:` / `N:` label definitions come first.
  while (i + 1 < toks.length && isPunct(toks[i + 1], ":")) {
    const t = toks[i];
    if (t.kind === "id" && t.text !== ".") labels.push({ name: t.text, col: t.col });
    else if (t.kind === "num" && /^[0-9]+$/.test(t.text)) {
      if (t.text.length > 9) expected(line, t.col, "a local label of at most 9 digits", q(t.text));
      labels.push({ name: t.text, col: t.col, local: Number(t.text) });
    } else break;
    i += 2;
  }
  const stmt: Stmt = { line, src, labels, groups: [], endCol, localSeq: 0, addr: undefined, size: 0, section: "text" };
  if (i < toks.length) {
    const t = toks[i];
    if (t.kind === "id" && isPunct(toks[i + 1], "=")) {
      // `NAME = expr` is `.set NAME, expr`.
      stmt.op = { name: ".set", text: "=", col: toks[i + 1].col };
      const nameGroup: Group = { toks: [t], col: t.col, end: t.end, after: '"="' };
      stmt.groups = [nameGroup, ...splitGroups(toks.slice(i + 2), endCol)];
      if (stmt.groups.length === 1) stmt.groups.push({ toks: [], col: endCol, end: endCol, after: "end of line" });
    } else if (t.kind !== "id") {
      expected(line, t.col, "a label, instruction or directive", q(t.text));
    } else {
      stmt.op = { name: t.text.toLowerCase(), text: t.text, col: t.col };
      stmt.groups = splitGroups(toks.slice(i + 1), endCol);
    }
  }
  return stmt;
}

const isEqu = (s: Stmt): boolean => s.op !== undefined && (s.op.name === ".equ" || s.op.name === ".set");

// ═══════════════════════════════ 3. expressions ═══════════════════════════════

type Expr =
  | { k: "num"; v: bigint }
  | { k: "sym"; t: Tok }
  | { k: "local"; t: LocalTok }
  | { k: "dot" }
  | { k: "un"; op: string; a: Expr }
  | { k: "bin"; op: string; a: Expr; b: Expr; t: Tok }
  | { k: "rel"; fn: "hi" | "lo"; a: Expr };

/** Binary operators, loosest first (C precedence). */
const LEVELS: readonly (readonly string[])[] = [["|"], ["^"], ["&"], ["<<", ">>"], ["+", "-"], ["*", "/", "%"]];

class ExprParser {
  i = 0;
  private nodes = 0;
  constructor(
    private readonly toks: Tok[],
    private readonly line: number,
    /** What follows these tokens, for "found end of ..." messages. */
    private readonly after: string,
    private readonly endCol: number,
  ) {}

  /** Parse the whole token list as one expression. */
  parseAll(): Expr {
    const e = this.binary(0, 0);
    const t = this.toks[this.i];
    if (t) expected(this.line, t.col, "an operator or the end of the operand", q(t.text));
    return e;
  }

  private count(t: Tok | undefined): void {
    if (++this.nodes > MAX_EXPR_NODES) {
      expected(this.line, t?.col ?? this.endCol, `an expression of at most ${MAX_EXPR_NODES} terms`, "a longer one");
    }
  }

  private binary(level: number, depth: number): Expr {
    if (level === LEVELS.length) return this.unary(depth);
    let a = this.binary(level + 1, depth);
    for (;;) {
      const t = this.toks[this.i];
      if (!t || t.kind !== "punct" || !LEVELS[level].includes(t.text)) return a;
      this.i++;
      this.count(t);
      a = { k: "bin", op: t.text, a, b: this.binary(level + 1, depth), t };
    }
  }

  private nest(depth: number, t: Tok): number {
    if (depth >= MAX_NESTING) {
      expected(this.line, t.col, `at most ${MAX_NESTING} nested parentheses or unary operators`, "more");
    }
    return depth + 1;
  }

  private unary(depth: number): Expr {
    const t = this.toks[this.i];
    if (t && t.kind === "punct" && (t.text === "-" || t.text === "+" || t.text === "~")) {
      this.i++;
      this.count(t);
      return { k: "un", op: t.text, a: this.unary(this.nest(depth, t)) };
    }
    return this.primary(depth);
  }

  private primary(depth: number): Expr {
    const t = this.toks[this.i];
    if (!t) return expected(this.line, this.endCol, "an expression", this.after);
    this.count(t);
    this.i++;
    switch (t.kind) {
      case "num":
        return { k: "num", v: BigInt.asIntN(64, t.value) };
      case "local":
        return { k: "local", t };
      case "id":
        return t.text === "." ? { k: "dot" } : { k: "sym", t };
      case "punct":
        if (t.text === "(") {
          const e = this.binary(0, this.nest(depth, t));
          this.close();
          return e;
        }
        if (t.text === "%") {
          // %hi(expr) / %lo(expr)
          const f = this.toks[this.i];
          const fn = f?.kind === "id" ? f.text.toLowerCase() : "";
          if (fn !== "hi" && fn !== "lo") {
            return expected(this.line, f?.col ?? t.end, "%hi or %lo", f ? q(`%${f.text}`) : '"%"');
          }
          this.i++;
          if (!isPunct(this.toks[this.i], "(")) {
            const n = this.toks[this.i];
            return expected(this.line, n?.col ?? this.endCol, `"(" after %${fn}`, n ? q(n.text) : this.after);
          }
          this.i++;
          const a = this.binary(0, this.nest(depth, t));
          this.close();
          return { k: "rel", fn, a };
        }
        break;
      case "str":
        return expected(this.line, t.col, "an expression", `the string ${t.text.length > 40 ? q(t.text) : t.text}`);
    }
    return expected(this.line, t.col, "an expression", q(t.text));
  }

  private close(): void {
    const t = this.toks[this.i];
    if (!isPunct(t, ")")) expected(this.line, t?.col ?? this.endCol, '")"', t ? q(t.text) : this.after);
    this.i++;
  }
}

const wrap = (v: bigint): bigint => BigInt.asIntN(64, v);

// ═══════════════════════════════ 4+5. the assembler ═══════════════════════════════

interface Sym {
  kind: "label" | "equ";
  /** Undefined while not (yet) known in the current walk. */
  value: bigint | undefined;
  line: number;
}

class Writer {
  constructor(
    private readonly buf: Uint8Array,
    public pos: number,
  ) {}
  int(v: bigint | number, width: number): void {
    let x = BigInt.asUintN(64, BigInt(v));
    for (let k = 0; k < width; k++) {
      this.buf[this.pos++] = Number(x & 0xffn);
      x >>= 8n;
    }
  }
  fill(byte: number, n: number): void {
    this.buf.fill(byte & 0xff, this.pos, this.pos + n);
    this.pos += n;
  }
}

class Assembler {
  readonly stmts: Stmt[] = [];
  readonly syms = new Map<string, Sym>();
  /** Numeric local label definitions in source order, and their indices by label number. */
  readonly locals: { value: bigint | undefined }[] = [];
  readonly localIndex = new Map<number, number[]>();
  /** During emission every value must be known: an unknown symbol is an error, not "later". */
  strict = false;

  constructor(source: string) {
    const lines = source.split(/\r\n|\r|\n/);
    for (let n = 0; n < lines.length; n++) {
      for (const toks of splitStatements(lexLine(lines[n], n + 1))) {
        const s = parseStatement(toks, n + 1, lines[n]);
        this.register(s);
        this.stmts.push(s);
      }
    }
  }

  /** Record label and .equ names up front, so duplicates are caught and forward references resolve. */
  private register(s: Stmt): void {
    for (const l of s.labels) {
      if (l.local !== undefined) {
        const list = this.localIndex.get(l.local) ?? [];
        list.push(this.locals.length);
        this.localIndex.set(l.local, list);
        this.locals.push({ value: undefined });
        continue;
      }
      const prev = this.syms.get(l.name);
      if (prev) {
        fail(s.line, l.col, "a label name not defined before", `duplicate label ${q(l.name)} (first defined on line ${prev.line})`);
      }
      this.syms.set(l.name, { kind: "label", value: undefined, line: s.line });
    }
    s.localSeq = this.locals.length;
    const g = s.groups[0];
    if (isEqu(s) && g && g.toks.length === 1 && g.toks[0].kind === "id") {
      const name = g.toks[0].text;
      const prev = this.syms.get(name);
      if (prev?.kind === "label") {
        fail(s.line, g.col, "a symbol name not defined before", `duplicate symbol ${q(name)} (a label on line ${prev.line})`);
      }
      if (!prev) this.syms.set(name, { kind: "equ", value: undefined, line: s.line });
    }
  }

  run(): Image {
    const textEnd = this.layout("A", 0);
    const end = this.layout("B", textEnd);
    this.resolveForwardEqus();
    const bytes = this.emit(end);
    const symbols: Record<string, number> = {};
    for (const [name, sym] of this.syms) {
      if (sym.value === undefined) continue;
      // defineProperty: a symbol named "__proto__" must become a plain key.
      Object.defineProperty(symbols, name, { value: Number(sym.value), enumerable: true, writable: true, configurable: true });
    }
    const start = this.syms.get("_start")?.value;
    return {
      segments: [{ addr: 0, data: bytes, size: bytes.length }],
      entry: start === undefined ? 0 : Number(BigInt.asUintN(32, start)),
      symbols,
    };
  }

  // ─────────────── layout ───────────────

  /**
   * Walk A (dataBase unused) gives every .text statement its address and size and returns
   * the end of .text; walk B gives every .data statement its absolute address and size,
   * starting at `dataBase`, and returns the end of the image. Symbol values are forgotten
   * at the start of each walk and set as the walk reaches their definitions, so a size can
   * only depend on what is defined earlier (in walk A, .data labels are not known at all).
   */
  private layout(phase: "A" | "B", dataBase: number): number {
    for (const sym of this.syms.values()) sym.value = undefined;
    for (const l of this.locals) l.value = undefined;
    let section: Section = "text";
    let textPc = 0;
    let dataPc = dataBase;
    let localIdx = 0;
    for (const s of this.stmts) {
      const inText = section === "text";
      s.addr = inText ? textPc : phase === "B" ? dataPc : undefined;
      const here = s.addr === undefined ? undefined : BigInt(s.addr);
      for (const l of s.labels) {
        if (l.local !== undefined) this.locals[localIdx++].value = here;
        else this.syms.get(l.name)!.value = here;
      }
      if (!s.op) continue;
      const switchTo = this.sectionSwitch(s);
      if (switchTo) {
        section = switchTo;
        continue;
      }
      if (isEqu(s)) {
        this.defineEqu(s);
        continue;
      }
      if (inText) {
        if (phase === "A") {
          s.section = "text";
          s.size = this.sizeOf(s);
          this.checkLimit(s, textPc + s.size);
        }
        textPc += s.size;
      } else if (phase === "B") {
        s.section = "data";
        s.size = this.sizeOf(s);
        this.checkLimit(s, dataPc + s.size);
        dataPc += s.size;
      }
    }
    return phase === "A" ? textPc : dataPc;
  }

  private checkLimit(s: Stmt, end: number): void {
    if (end > MAX_IMAGE_BYTES) {
      fail(s.line, s.op!.col, "an image of at most 64 MiB", `image too large: it would reach ${end} bytes, more than 64 MiB`);
    }
  }

  /** The section a `.text`/`.data`/`.bss`/`.section` statement switches to, else undefined. */
  private sectionSwitch(s: Stmt): Section | undefined {
    switch (s.op!.name) {
      case ".text":
        return "text";
      case ".data":
      case ".bss":
        return "data";
      case ".section": {
        const o = new Ops(this, s);
        if (o.n === 0) o.count([1], "name[, flags...]");
        const t = s.groups[0].toks[0];
        const name = t && s.groups[0].toks.length === 1 && (t.kind === "id" || t.kind === "str") ? t.text.replace(/"/g, "") : "";
        const n = name.toLowerCase();
        if (n === ".text" || n.startsWith(".text.")) return "text";
        for (const p of [".data", ".rodata", ".bss", ".sdata", ".srodata", ".sbss"]) {
          if (n === p || n.startsWith(`${p}.`)) return "data";
        }
        return expected(s.line, s.groups[0].col, "a section name (.text, .data, .rodata or .bss)", o.found(0));
      }
      default:
        return undefined;
    }
  }

  private defineEqu(s: Stmt): void {
    const o = new Ops(this, s);
    o.count([2], "name, value");
    const t = s.groups[0].toks[0];
    if (s.groups[0].toks.length !== 1 || t.kind !== "id" || t.text === ".") {
      expected(s.line, s.groups[0].col, "a symbol name", o.found(0));
    }
    this.syms.get(t.text)!.value = o.value(1);
  }

  /**
   * After layout every label is known; give .equ symbols that were defined by
   * forward references their values — each once, after the symbols it names
   * (a depth-first order, kept on an explicit stack: a chain of 24,000
   * `.equ`s, each defined by the next, took 22 s when resolved by repeated
   * passes, and would overflow a recursive walk). A circular one stays
   * without a value, and its use is reported as before.
   */
  private resolveForwardEqus(): void {
    const last = new Map<string, Stmt>();
    for (const s of this.stmts) if (isEqu(s)) last.set(s.groups[0].toks[0].text, s);
    const unresolved = (name: string) => last.has(name) && this.syms.get(name)!.value === undefined;
    const deps = (name: string) => (last.get(name)!.groups[1]?.toks ?? []).filter((t) => t.kind === "id" && unresolved(t.text)).map((t) => t.text);
    const seen = new Set<string>();
    for (const root of last.keys()) {
      if (seen.has(root) || !unresolved(root)) continue;
      seen.add(root);
      const stack: { name: string; deps: string[]; next: number }[] = [{ name: root, deps: deps(root), next: 0 }];
      while (stack.length > 0) {
        const top = stack[stack.length - 1];
        if (top.next < top.deps.length) {
          const d = top.deps[top.next++];
          if (!seen.has(d)) {
            seen.add(d);
            stack.push({ name: d, deps: deps(d), next: 0 });
          }
          continue;
        }
        stack.pop();
        const sym = this.syms.get(top.name)!;
        if (sym.value === undefined) sym.value = new Ops(this, last.get(top.name)!).value(1);
      }
    }
  }

  private sizeOf(s: Stmt): number {
    const op = s.op!;
    const o = new Ops(this, s);
    if (op.name.startsWith(".")) {
      const d = directive(op.name);
      if (!d) return expected(s.line, op.col, "a directive", q(op.text));
      return d.size(o);
    }
    const insn = INSNS.get(op.name);
    if (!insn) return expected(s.line, op.col, "an instruction mnemonic", q(op.text));
    return typeof insn.size === "number" ? insn.size : insn.size(o);
  }

  // ─────────────── emission ───────────────

  private emit(total: number): Uint8Array {
    this.strict = true;
    const out = new Uint8Array(total);
    for (const s of this.stmts) {
      if (!s.op || this.sectionSwitch(s)) continue;
      if (isEqu(s)) {
        this.defineEqu(s); // in order again, so a symbol redefined with .set has its value at each point
        continue;
      }
      const w = new Writer(out, s.addr!);
      const o = new Ops(this, s);
      if (s.op.name.startsWith(".")) directive(s.op.name)!.emit(o, w);
      else for (const word of INSNS.get(s.op.name)!.emit(o)) w.int(word, 4);
      if (w.pos !== s.addr! + s.size) {
        throw new Error(`line ${s.line}: emitted ${w.pos - s.addr!} bytes, laid out ${s.size}`);
      }
    }
    return out;
  }

  // ─────────────── evaluation ───────────────

  eval(e: Expr, s: Stmt): bigint | undefined {
    switch (e.k) {
      case "num":
        return e.v;
      case "sym":
        return this.symbol(e.t, s);
      case "local":
        return this.local(e.t, s);
      case "dot":
        return s.addr === undefined ? undefined : BigInt(s.addr);
      case "un": {
        const a = this.eval(e.a, s);
        if (a === undefined) return undefined;
        return e.op === "-" ? wrap(-a) : e.op === "~" ? wrap(~a) : a;
      }
      case "rel": {
        const a = this.eval(e.a, s);
        if (a === undefined) return undefined;
        const v = Number(BigInt.asUintN(32, a));
        return BigInt(e.fn === "hi" ? hi20(v) : lo12(v));
      }
      case "bin": {
        const a = this.eval(e.a, s);
        const b = this.eval(e.b, s);
        if (a === undefined || b === undefined) return undefined;
        switch (e.op) {
          case "+": return wrap(a + b);
          case "-": return wrap(a - b);
          case "*": return wrap(a * b);
          case "&": return a & b;
          case "|": return a | b;
          case "^": return a ^ b;
          case "/":
          case "%":
            if (b === 0n) fail(s.line, e.t.col, "a non-zero divisor", "division by zero");
            return wrap(e.op === "/" ? a / b : a % b);
          default: // << >>
            if (b < 0n || b > 63n) expected(s.line, e.t.col, "a shift count in 0..63", `${b}`);
            return e.op === "<<" ? wrap(a << b) : a >> b;
        }
      }
    }
  }

  private symbol(t: Tok, s: Stmt): bigint | undefined {
    const sym = this.syms.get(t.text);
    if (sym?.value !== undefined) return sym.value;
    if (!this.strict) return undefined; // perhaps defined later; layout treats it as unknown
    if (!sym && regNumber(t.text) !== undefined) expected(s.line, t.col, "an expression", `register ${q(t.text)}`);
    if (!sym) fail(s.line, t.col, "a defined symbol", `undefined symbol ${q(t.text)}`);
    return fail(
      s.line,
      t.col,
      "a symbol with a computable value",
      `cannot compute the value of ${q(t.text)} (its .equ is circular or uses an undefined symbol)`,
    );
  }

  /** `Nb` is the nearest `N:` defined before this statement's operands, `Nf` the nearest after. */
  private local(t: LocalTok, s: Stmt): bigint | undefined {
    const list = this.localIndex.get(t.label) ?? [];
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid] < s.localSeq) lo = mid + 1;
      else hi = mid;
    }
    const idx: number | undefined = t.dir === "b" ? list[lo - 1] : list[lo];
    if (idx === undefined) {
      const where = t.dir === "b" ? "before" : "after";
      fail(s.line, t.col, `a "${t.label}:" label ${where} this point`, `no "${t.label}:" label ${where} this point for ${q(t.text)}`);
    }
    return this.locals[idx].value;
  }
}

// ─────────────── operand access ───────────────

const I12: readonly [bigint, bigint] = [-2048n, 2047n];
const FENCE_BITS: Readonly<Record<string, number>> = { i: 8, o: 4, r: 2, w: 1 };

/** One statement's operands, read according to what the instruction or directive needs. */
class Ops {
  constructor(
    private readonly asm: Assembler,
    readonly s: Stmt,
  ) {}

  get n(): number {
    return this.s.groups.length;
  }

  private get line(): number {
    return this.s.line;
  }

  text(i: number): string {
    const g = this.s.groups[i];
    return this.s.src.slice(g.col - 1, g.end - 1);
  }

  /** How to show operand i in a message: quoted source, or what stands where it is missing. */
  found(i: number): string {
    const g = this.s.groups[i];
    return g.toks.length ? q(this.text(i)) : g.after;
  }

  present(i: number): boolean {
    return i < this.n && this.s.groups[i].toks.length > 0;
  }

  /** Check the operand count against the allowed counts; `syntax` is shown in the message. */
  count(allowed: readonly number[], syntax: string): void {
    const n = this.n;
    if (allowed.includes(n)) return;
    const max = Math.max(...allowed);
    const min = Math.min(...allowed);
    const plural = (k: number): string => (k === 0 ? "no operands" : k === 1 ? "1 operand" : `${k} operands`);
    const desc =
      allowed.length === 1
        ? plural(min)
        : max - min + 1 === allowed.length
          ? `${min} to ${max} operands`
          : `${allowed.slice(0, -1).join(", ")} or ${plural(max)}`;
    const col = n > max ? this.s.groups[max].col : this.s.endCol;
    fail(this.line, col, desc, `expected ${desc}${syntax ? ` (${syntax})` : ""}, found ${n}`);
  }

  isReg(i: number): boolean {
    const t = this.s.groups[i].toks;
    return t.length === 1 && t[0].kind === "id" && regNumber(t[0].text) !== undefined;
  }

  reg(i: number): number {
    const t = this.s.groups[i].toks;
    const r = t.length === 1 && t[0].kind === "id" ? regNumber(t[0].text) : undefined;
    if (r === undefined) return expected(this.line, this.s.groups[i].col, "a register", this.found(i));
    return r;
  }

  private parse(toks: Tok[], after: string, endCol: number): Expr {
    return new ExprParser(toks, this.line, after, endCol).parseAll();
  }

  /** The value of operand i, or undefined while it depends on something not yet known (layout only). */
  value(i: number): bigint | undefined {
    const g = this.s.groups[i];
    return this.asm.eval(this.parse(g.toks, g.after, g.end), this.s);
  }

  /** A value that must be known now: during layout only constants and earlier symbols qualify. */
  known(i: number, what: string): bigint {
    const g = this.s.groups[i];
    // A lone register where a value belongs reads better as that than as "undefined symbol".
    if (this.isReg(i) && !this.asm.syms.has(g.toks[0].text)) expected(this.line, g.col, what, `register ${this.found(i)}`);
    const v = this.value(i);
    if (v === undefined) {
      return expected(
        this.line,
        g.col,
        `${what} known at this point (constants and symbols defined earlier)`,
        this.found(i),
      );
    }
    return v;
  }

  private rangeError(col: number, what: string, text: string, v: bigint): never {
    const shown = text.trim() === v.toString() ? q(text) : `${q(text)} (= ${v})`;
    return expected(this.line, col, what, shown);
  }

  /** A known value in lo..hi; `what` names it in messages. */
  int(i: number, lo: bigint, hi: bigint, what = "an immediate"): number {
    const full = `${what} in ${lo}..${hi}`;
    const v = this.known(i, full);
    if (v < lo || v > hi) this.rangeError(this.s.groups[i].col, full, this.text(i), v);
    return Number(v);
  }

  /** `offset(reg)`, `(reg)` or `%lo(sym)(reg)`: the base register and a 12-bit signed offset. */
  mem(i: number): { base: number; offset: number } {
    const g = this.s.groups[i];
    const t = g.toks;
    const what = "a memory operand like 8(sp) or (sp)";
    const last = t[t.length - 1];
    if (!isPunct(last, ")")) return expected(this.line, g.col, what, this.found(i));
    let depth = 0;
    let open = -1;
    for (let k = t.length - 1; k >= 0; k--) {
      if (isPunct(t[k], ")")) depth++;
      else if (isPunct(t[k], "(") && --depth === 0) {
        open = k;
        break;
      }
    }
    if (open < 0) return expected(this.line, last.col, 'a matching "("', '")"');
    const inside = t.slice(open + 1, t.length - 1);
    const base = inside.length === 1 && inside[0].kind === "id" ? regNumber(inside[0].text) : undefined;
    if (base === undefined) {
      const found = inside.length ? q(this.s.src.slice(inside[0].col - 1, inside[inside.length - 1].end - 1)) : '")"';
      return expected(this.line, inside[0]?.col ?? last.col, "a register", found);
    }
    if (open === 0) return { base, offset: 0 };
    const before = t.slice(0, open);
    const v = this.asm.eval(this.parse(before, '"("', t[open].col), this.s);
    const text = this.s.src.slice(before[0].col - 1, before[before.length - 1].end - 1);
    const range = `an offset in ${I12[0]}..${I12[1]}`;
    if (v === undefined) return expected(this.line, g.col, `${range} known at this point`, q(text));
    if (v < I12[0] || v > I12[1]) this.rangeError(g.col, range, text, v);
    return { base, offset: Number(v) };
  }

  /** A branch or jump target address as an offset from this statement, checked for range and alignment. */
  pcRel(i: number, kind: "branch" | "jump", lo: bigint, hi: bigint): number {
    const off = this.known(i, `a ${kind} target`) - BigInt(this.s.addr!);
    const g = this.s.groups[i];
    const text = q(this.text(i));
    if (off < lo || off > hi) {
      fail(this.line, g.col, `a ${kind} target within ${lo}..${hi} bytes`, `${kind} target ${text} out of range: offset ${off} is not in ${lo}..${hi}`);
    }
    if (off % 2n !== 0n) {
      fail(this.line, g.col, `a 2-byte aligned ${kind} target`, `${kind} target ${text} is misaligned: offset ${off} is odd`);
    }
    return Number(off);
  }

  branch(i: number): number {
    return this.pcRel(i, "branch", -4096n, 4094n);
  }

  jump(i: number): number {
    return this.pcRel(i, "jump", -1048576n, 1048574n);
  }

  /** A target for auipc-based pairs (la, call, tail): any 32-bit pc-relative distance. */
  far(i: number): number {
    const v = this.known(i, "a symbol or address");
    return Number(BigInt.asIntN(32, v - BigInt(this.s.addr!)));
  }

  /** A double-quoted string operand. */
  bytes(i: number): number[] {
    const t = this.s.groups[i].toks;
    if (t.length !== 1 || t[0].kind !== "str") return expected(this.line, this.s.groups[i].col, "a string in double quotes", this.found(i));
    return t[0].bytes;
  }

  /** A CSR: cycle/time/instret(+h) by name, or a number 0..4095. */
  csr(i: number): number {
    const t = this.s.groups[i].toks;
    if (t.length === 1 && t[0].kind === "id") {
      const name = t[0].text.toLowerCase();
      if (Object.hasOwn(CSR, name)) return CSR[name as keyof typeof CSR];
    }
    return this.int(i, 0n, 4095n, "a CSR (cycle, time, instret, cycleh, timeh, instreth) or a number");
  }

  /** A fence set such as `rw` or `iorw`: bits i=8 o=4 r=2 w=1. */
  fenceSet(i: number): number {
    const t = this.s.groups[i].toks;
    const word = t.length === 1 && t[0].kind === "id" ? t[0].text.toLowerCase() : "";
    let bits = 0;
    for (const c of word) {
      const b: number | undefined = FENCE_BITS[c];
      if (b === undefined || bits & b) {
        bits = -1;
        break;
      }
      bits |= b;
    }
    if (bits <= 0) expected(this.line, this.s.groups[i].col, "a fence set of the letters i, o, r, w (e.g. rw)", this.found(i));
    return bits;
  }
}

// ═══════════════════════════════ instruction table ═══════════════════════════════

interface InsnDef {
  /** Size in bytes, fixed or (for li) decided from the operands during layout. */
  size: number | ((o: Ops) => number);
  emit: (o: Ops) => number[];
}

const INSNS = new Map<string, InsnDef>();
const def = (names: string | string[], size: InsnDef["size"], emit: InsnDef["emit"]): void => {
  for (const n of Array.isArray(names) ? names : [names]) INSNS.set(n, { size, emit });
};
const keys = <T extends object>(t: T): (keyof T & string)[] => Object.keys(t) as (keyof T & string)[];

for (const m of keys(R_TYPE)) {
  def(m, 4, (o) => (o.count([3], "rd, rs1, rs2"), [enc[m](o.reg(0), o.reg(1), o.reg(2))]));
}
for (const m of keys(I_ARITH)) {
  def(m, 4, (o) => (o.count([3], "rd, rs1, imm"), [enc[m](o.reg(0), o.reg(1), o.int(2, ...I12))]));
}
for (const m of keys(SHIFT_IMM)) {
  def(m, 4, (o) => (o.count([3], "rd, rs1, shamt"), [enc[m](o.reg(0), o.reg(1), o.int(2, 0n, 31n, "a shift amount"))]));
}
for (const m of keys(LOADS)) {
  def(m, 4, (o) => {
    o.count([2], "rd, offset(rs1)");
    const { base, offset } = o.mem(1);
    return [enc[m](o.reg(0), base, offset)];
  });
}
for (const m of keys(STORES)) {
  def(m, 4, (o) => {
    o.count([2], "rs2, offset(rs1)");
    const { base, offset } = o.mem(1);
    return [enc[m](o.reg(0), base, offset)];
  });
}
for (const m of keys(BRANCHES)) {
  def(m, 4, (o) => (o.count([3], "rs1, rs2, label"), [enc[m](o.reg(0), o.reg(1), o.branch(2))]));
}
def("lui", 4, (o) => (o.count([2], "rd, imm"), [enc.lui(o.reg(0), o.int(1, 0n, 0xfffffn))]));
def("auipc", 4, (o) => (o.count([2], "rd, imm"), [enc.auipc(o.reg(0), o.int(1, 0n, 0xfffffn))]));
def("jal", 4, (o) => {
  o.count([1, 2], "[rd,] label");
  return o.n === 1 ? [enc.jal(RA, o.jump(0))] : [enc.jal(o.reg(0), o.jump(1))];
});
/** `jalr rs` / `jalr offset(rs)` (rd = ra), `jalr rd, rs`, `jalr rd, offset(rs)`, `jalr rd, rs, offset`. */
def("jalr", 4, (o) => {
  o.count([1, 2, 3], "rd, offset(rs1)");
  const target = (i: number): [number, number] => {
    if (o.isReg(i)) return [o.reg(i), 0];
    const m = o.mem(i);
    return [m.base, m.offset];
  };
  if (o.n === 3) return [enc.jalr(o.reg(0), o.reg(1), o.int(2, ...I12))];
  if (o.n === 2) return [enc.jalr(o.reg(0), ...target(1))];
  return [enc.jalr(RA, ...target(0))];
});
def("fence", 4, (o) => {
  o.count([0, 2], "pred, succ");
  return [o.n === 0 ? enc.fence() : enc.fence(o.fenceSet(0), o.fenceSet(1))];
});
def("ecall", 4, (o) => (o.count([0], ""), [enc.ecall()]));
def("ebreak", 4, (o) => (o.count([0], ""), [enc.ebreak()]));

// Counter reads (Zicntr): all are csrrs rd, csr, x0.
def("csrr", 4, (o) => (o.count([2], "rd, csr"), [enc.csrrs(o.reg(0), o.csr(1), ZERO)]));
for (const c of keys(CSR)) def(`rd${c}`, 4, (o) => (o.count([1], "rd"), [enc.csrrs(o.reg(0), CSR[c], ZERO)]));

// ─────────────── pseudo-instructions ───────────────

def("nop", 4, (o) => (o.count([0], ""), [NOP]));
def("mv", 4, (o) => (o.count([2], "rd, rs"), [enc.addi(o.reg(0), o.reg(1), 0)]));
def("not", 4, (o) => (o.count([2], "rd, rs"), [enc.xori(o.reg(0), o.reg(1), -1)]));
def("neg", 4, (o) => (o.count([2], "rd, rs"), [enc.sub(o.reg(0), ZERO, o.reg(1))]));
def("seqz", 4, (o) => (o.count([2], "rd, rs"), [enc.sltiu(o.reg(0), o.reg(1), 1)]));
def("snez", 4, (o) => (o.count([2], "rd, rs"), [enc.sltu(o.reg(0), ZERO, o.reg(1))]));
def("sltz", 4, (o) => (o.count([2], "rd, rs"), [enc.slt(o.reg(0), o.reg(1), ZERO)]));
def("sgtz", 4, (o) => (o.count([2], "rd, rs"), [enc.slt(o.reg(0), ZERO, o.reg(1))]));

def("j", 4, (o) => (o.count([1], "label"), [enc.jal(ZERO, o.jump(0))]));
def("jr", 4, (o) => {
  o.count([1], "rs");
  if (o.isReg(0)) return [enc.jalr(ZERO, o.reg(0), 0)];
  const m = o.mem(0);
  return [enc.jalr(ZERO, m.base, m.offset)];
});
def("ret", 4, (o) => (o.count([0], ""), [enc.jalr(ZERO, RA, 0)]));

// Branches against zero, and the swapped-operand comparisons.
const vsZero: Record<string, [keyof typeof BRANCHES, boolean]> = {
  beqz: ["beq", false], bnez: ["bne", false], bltz: ["blt", false], bgez: ["bge", false],
  blez: ["bge", true], bgtz: ["blt", true], // true: x0 is the first operand
};
for (const [name, [base, zeroFirst]] of Object.entries(vsZero)) {
  def(name, 4, (o) => {
    o.count([2], "rs, label");
    const r = o.reg(0);
    return [zeroFirst ? enc[base](ZERO, r, o.branch(1)) : enc[base](r, ZERO, o.branch(1))];
  });
}
const swapped: Record<string, keyof typeof BRANCHES> = { bgt: "blt", ble: "bge", bgtu: "bltu", bleu: "bgeu" };
for (const [name, base] of Object.entries(swapped)) {
  def(name, 4, (o) => (o.count([3], "rs, rt, label"), [enc[base](o.reg(1), o.reg(0), o.branch(2))]));
}

const LI_RANGE: readonly [bigint, bigint] = [-(1n << 31n), (1n << 32n) - 1n];
const fits12 = (v: number): boolean => v >= -2048 && v <= 2047;

/** li's size: decided once, in layout, from the value if it is already known. */
function liSize(o: Ops): number {
  if (o.n !== 2 || !o.present(1)) return 8; // emission reports the operand problem
  const v = o.value(1);
  if (v === undefined || v < LI_RANGE[0] || v > LI_RANGE[1]) return 8;
  const v32 = Number(BigInt.asIntN(32, v));
  return fits12(v32) || lo12(v32) === 0 ? 4 : 8;
}
def("li", liSize, (o) => {
  o.count([2], "rd, imm");
  const rd = o.reg(0);
  const v = Number(BigInt.asIntN(32, BigInt(o.int(1, ...LI_RANGE))));
  if (o.s.size === 8) return [enc.lui(rd, hi20(v)), enc.addi(rd, rd, lo12(v))];
  if (fits12(v)) return [enc.addi(rd, ZERO, v)];
  if (lo12(v) === 0) return [enc.lui(rd, hi20(v))];
  // Only reachable if a value known in layout changed by emission (cannot happen by design).
  return expected(o.s.line, o.s.groups[1].col, "a value already known when li was laid out", q(o.text(1)));
});
def("la", 8, (o) => {
  o.count([2], "rd, symbol");
  const rd = o.reg(0);
  const d = o.far(1);
  return [enc.auipc(rd, hi20(d)), enc.addi(rd, rd, lo12(d))];
});
def("call", 8, (o) => {
  o.count([1, 2], "[rd,] symbol");
  const rd = o.n === 2 ? o.reg(0) : RA;
  const d = o.far(o.n - 1);
  return [enc.auipc(rd, hi20(d)), enc.jalr(rd, rd, lo12(d))];
});
def("tail", 8, (o) => {
  o.count([1], "symbol");
  const d = o.far(0);
  return [enc.auipc(T1, hi20(d)), enc.jalr(ZERO, T1, lo12(d))];
});

// ═══════════════════════════════ directive table ═══════════════════════════════

interface Directive {
  size: (o: Ops) => number;
  emit: (o: Ops, w: Writer) => void;
}
const DIRECTIVES = new Map<string, Directive>();

// Data lists: .byte 1, 2, 'a' / .word label+4, ...
const WIDTHS: [string[], number][] = [
  [[".byte"], 1],
  [[".half", ".short", ".2byte"], 2],
  [[".word", ".long", ".4byte"], 4],
  [[".dword", ".quad", ".8byte"], 8],
];
for (const [names, width] of WIDTHS) {
  const bits = BigInt(width * 8);
  // Signed or unsigned values both fit (.byte -1 and .byte 255 are the same byte).
  const lo = width === 8 ? -(1n << 63n) : -(1n << (bits - 1n));
  const hi = width === 8 ? (1n << 63n) - 1n : (1n << bits) - 1n;
  for (const n of names) {
    DIRECTIVES.set(n, {
      size: (o) => o.n * width,
      emit: (o, w) => {
        for (let i = 0; i < o.n; i++) w.int(BigInt(o.int(i, lo, hi, "a value")), width);
      },
    });
  }
}

// Strings.
for (const [n, nul] of [[".ascii", 0], [".asciz", 1], [".string", 1]] as const) {
  const all = (o: Ops): number[] => {
    const out: number[] = [];
    // A loop, not push(...bytes): a 250,000-character string overflowed the stack as spread arguments.
    for (let i = 0; i < o.n; i++) {
      for (const b of o.bytes(i)) out.push(b);
      if (nul) out.push(0);
    }
    return out;
  };
  DIRECTIVES.set(n, {
    size: (o) => all(o).length,
    emit: (o, w) => {
      for (const b of all(o)) w.int(b, 1);
    },
  });
}

// .space n[, fill]
for (const n of [".space", ".zero", ".skip"]) {
  DIRECTIVES.set(n, {
    size: (o) => {
      o.count([1, 2], "size[, fill]");
      return o.int(0, 0n, BigInt(MAX_IMAGE_BYTES), "a size");
    },
    emit: (o, w) => w.fill(o.n > 1 ? o.int(1, -128n, 255n, "a fill byte") : 0, o.s.size),
  });
}

/**
 * Alignment: `.align n` / `.p2align n` to 2^n, `.balign n` to n bytes; optional fill byte and
 * maximum padding (`.p2align 4,,15`). The size is the padding to the next multiple, from
 * the statement's absolute address.
 */
function alignDirective(byBytes: boolean): Directive {
  const pad = (o: Ops): number => {
    o.count([1, 2, 3], byBytes ? "bytes[, fill[, max]]" : "exponent[, fill[, max]]");
    let a: number;
    if (byBytes) {
      a = o.int(0, 1n, 1n << 31n, "an alignment");
      if ((a & (a - 1)) !== 0) expected(o.s.line, o.s.groups[0].col, "an alignment that is a power of two", q(o.text(0)));
    } else {
      a = 2 ** o.int(0, 0n, 31n, "an alignment exponent");
    }
    const addr = o.s.addr!;
    const p = (a - (addr % a)) % a;
    const max = o.present(2) ? o.int(2, 0n, BigInt(MAX_IMAGE_BYTES), "a maximum padding") : Infinity;
    return p > max ? 0 : p;
  };
  return {
    size: pad,
    emit: (o, w) => {
      const n = o.s.size;
      if (o.present(1)) return w.fill(o.int(1, -128n, 255n, "a fill byte"), n);
      if (o.s.section === "data") return w.fill(0, n);
      // In code, pad with zeros to a word boundary and then with NOPs, so falling through works.
      const end = w.pos + n;
      while (w.pos < end && w.pos % 4 !== 0) w.int(0, 1);
      while (end - w.pos >= 4) w.int(NOP, 4);
      w.fill(0, end - w.pos);
    },
  };
}
DIRECTIVES.set(".align", alignDirective(false));
DIRECTIVES.set(".p2align", alignDirective(false));
DIRECTIVES.set(".balign", alignDirective(true));

// Accepted for compatibility with compiler output; they do not affect a flat image.
const IGNORED = [".globl", ".global", ".local", ".weak", ".hidden", ".type", ".size", ".file", ".ident", ".option", ".attribute"];
const NO_EFFECT: Directive = { size: () => 0, emit: () => {} };
for (const n of IGNORED) DIRECTIVES.set(n, NO_EFFECT);

function directive(name: string): Directive | undefined {
  return DIRECTIVES.get(name) ?? (name.startsWith(".cfi_") ? NO_EFFECT : undefined);
}

// ═══════════════════════════════ entry point ═══════════════════════════════

/**
 * Assemble GNU-`as`-syntax RV32IM source into one image (text at 0, data right after it).
 * Throws ImageError, with `detail.line`, `detail.column` and `detail.expected`, for any problem.
 */
export function assemble(source: string): Image {
  try {
    return new Assembler(String(source)).run();
  } catch (e) {
    if (e instanceof ImageError) throw e;
    // A bug in the assembler must still surface as an ImageError, never as anything else.
    throw new ImageError(`internal assembler error: ${e instanceof Error ? e.message : String(e)}`);
  }
}
