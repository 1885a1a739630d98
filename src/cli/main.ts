/**
 * The `kemari` command line: every API call from a terminal, through the
 * typed client (src/client.ts). Run it in a checkout as `npx kemari …`
 * (bin/kemari.mjs bundles this file for Node and runs it).
 *
 * Exit codes: 0 ok; 1 `kemari check` found a difference (or a guest that
 * differs from itself without failures); 2 usage (a wrong command, flag or
 * value); 3 the API refused (its problem's detail and field are printed) or
 * could not be reached.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { ApiError, DEFAULT_TOKEN, DEFAULT_URL, KemariClient, type CreateGuestInput } from "../client.ts";
import type { GuestStatus } from "../client.ts";
import type { StreamMessage } from "../events/messages.ts";
import { check, parseInputs, RUN_TIMEOUT_MS, type Mode } from "./check.ts";

export { parseInputs };
/** The typed client, for scripts that import this bundle (the e2e test). */
export { KemariClient };

export const EXIT = { ok: 0, difference: 1, usage: 2, refused: 3 } as const;

/** Where output goes (tests capture it). */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

const consoleIo: Io = { out: (l) => process.stdout.write(l + "\n"), err: (l) => process.stderr.write(l + "\n") };

const MODES = ["kemari", "remus", "none"] as const;
const TARGETS = ["primary", "secondary"] as const;
const STEPS = ["now", "before-transfer", "mid-transfer", "after-ack", "after-release"] as const;
const PAGE = 4096;

/** `--memory`: pages ("256") or a size ("4MiB", "64 KiB", "1m"), in whole 4 KiB pages. */
export function parseMemory(v: string): number {
  const m = /^\s*(\d+)\s*(k|kb|kib|m|mb|mib)?\s*$/i.exec(v);
  if (!m) throw new InvalidArgumentError("give pages (256) or a size (4MiB, 512KiB)");
  const n = Number(m[1]);
  if (!m[2]) return n;
  const bytes = n * (m[2].toLowerCase().startsWith("k") ? 1024 : 1024 * 1024);
  if (bytes % PAGE !== 0) throw new InvalidArgumentError(`${v} is not a whole number of 4 KiB pages`);
  return bytes / PAGE;
}

/** `--regions weur,enam[,witness]`: the primary's, the secondary's and (optionally) the witness's location hints. */
export function parseRegions(v: string): { primary: string; secondary: string; witness?: string } {
  const parts = v.split(",").map((s) => s.trim()).filter(Boolean);
  if (parts.length < 2 || parts.length > 3) throw new InvalidArgumentError("give primary,secondary[,witness], e.g. weur,enam");
  return parts.length === 3 ? { primary: parts[0], secondary: parts[1], witness: parts[2] } : { primary: parts[0], secondary: parts[1] };
}

/** `--latency none | by-region | RTT[:MBPS]` (milliseconds of round trip, megabits per second). */
export function parseLatency(v: string): "none" | "by-region" | { rttMs: number; mbps?: number } {
  if (v === "none" || v === "by-region") return v;
  const m = /^(\d+(?:\.\d+)?)(?:ms)?(?::(\d+(?:\.\d+)?))?$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError("give none, by-region, or a round trip in ms with an optional bandwidth: 80 or 80:1000");
  return m[2] === undefined ? { rttMs: Number(m[1]) } : { rttMs: Number(m[1]), mbps: Number(m[2]) };
}

/** `--heartbeat INTERVAL:TIMEOUT` (milliseconds): how often the witness pings the primary, and after how long a silent one is failed over. */
export function parseHeartbeat(v: string): { intervalMs: number; timeoutMs: number } {
  const m = /^(\d+)(?:ms)?:(\d+)(?:ms)?$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError("give INTERVAL:TIMEOUT in milliseconds, e.g. 200:2000");
  return { intervalMs: Number(m[1]), timeoutMs: Number(m[2]) };
}

function parseCount(v: string): number {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError("give a whole number");
  return Number(v);
}

function parsePositive(v: string): number {
  const n = parseCount(v);
  if (n < 1) throw new InvalidArgumentError("give at least 1");
  return n;
}

function parseUrl(v: string): string {
  try {
    const u = new URL(v);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error();
  } catch {
    throw new InvalidArgumentError("give an http(s) URL, e.g. http://127.0.0.1:8787");
  }
  return v;
}

/** The image in a file, by its content: an ELF (magic), assembly (text), or a flat binary (anything else). */
export function imageOf(bytes: Uint8Array): CreateGuestInput["image"] {
  if (bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46) return { elf: toBase64(bytes) };
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  // Text: valid UTF-8 with no control characters but tab, newline and carriage return.
  const printable = !text.includes("\uFFFD") && ![...text].some((ch) => ch.charCodeAt(0) < 32 && !"\t\n\r".includes(ch));
  return printable ? { asm: text } : { flat: toBase64(bytes) };
}

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64");
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

/** A short, readable line for a guest's status. */
function statusLine(s: GuestStatus): string {
  const sync = s.sync ? `, checkpoint ${s.sync.seq} (${s.sync.syncs} syncs)` : "";
  const exit = s.state === "halted" && s.exitCode !== null ? ` (exit ${s.exitCode})` : "";
  const crash = s.crash ? ` — ${s.crash.reason}` : "";
  return `${s.id}  ${s.name}  ${s.mode}  ${s.state}${exit}${crash}  generation ${s.generation}, ${s.protection}${sync}, ${s.instructions} instructions`;
}

/** One stream event, readable at a glance. */
export function eventLine(m: StreamMessage): string {
  const at = new Date(m.t).toISOString().slice(11, 23);
  switch (m.type) {
    case "sync":
      return `${at} sync      #${m.seq}${m.full ? " full" : ""}: ${m.pages} pages, ${m.bytes} bytes, pause ${m.pauseMs.toFixed(1)} ms, flight ${m.flightMs.toFixed(1)} ms`;
    case "output":
      return `${at} output    ${m.device}#${m.index}: ${m.text !== undefined ? JSON.stringify(m.text) : `${m.bytes} bytes`}`;
    case "fault":
      return `${at} fault     ${m.kind} ${m.target}${m.at !== "now" ? ` at ${m.at}` : ""}`;
    case "failure":
      return `${at} failure   ${m.host.name} (${m.host.region}): ${m.reason}`;
    case "takeover":
      return `${at} takeover  generation ${m.generation}: ${m.to.name} (${m.to.region}) took over from ${m.from.name} in ${m.takeoverMs} ms`;
    case "protected":
      return `${at} protected generation ${m.generation}: ${m.secondary.name} (${m.secondary.region}) holds a whole copy`;
    case "guest":
      return `${at} guest     ${m.state}, pc 0x${(m.pc >>> 0).toString(16)}, ${m.instructions} instructions, ${m.dirty.length} dirty pages`;
    case "snapshot":
      return `${at} snapshot  ${statusLine(m.status as GuestStatus)}`;
    default:
      return `${at} ${(m as { type: string }).type}`;
  }
}

/**
 * Read a paged stream (console bytes, packets) from `from`: `page` prints one
 * page and says where the next starts. Without `follow`, until a page adds
 * nothing; with it, on until the guest has halted or crashed.
 */
async function pages(c: KemariClient, id: string, from: number, follow: boolean, page: (from: number) => Promise<number>): Promise<void> {
  for (;;) {
    const next = await page(from);
    const moved = next !== from;
    from = next;
    if (moved) continue; // more may be there already
    if (!follow) return;
    const s = await c.status(id);
    if (s.state === "halted" || s.state === "crashed") return;
    await sleep(250);
  }
}

interface Globals {
  url: string;
  token: string;
  json: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Build the program; `io` receives its output. */
export function program(io: Io = consoleIo, env: Record<string, string | undefined> = process.env): Command {
  const cli = new Command("kemari")
    .description("Drive Kemari guests: create, watch, inject failures; check that a guest survives them")
    .addOption(new Option("--url <url>", "the API's origin (env KEMARI_URL)").argParser(parseUrl).default(env.KEMARI_URL ?? DEFAULT_URL))
    .option("--token <token>", "the API token (env KEMARI_TOKEN)", env.KEMARI_TOKEN ?? DEFAULT_TOKEN)
    .option("--json", "print JSON (for machines)", false)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .showHelpAfterError(false);

  const client = (): { c: KemariClient; g: Globals } => {
    const g = cli.opts<Globals>();
    return { c: new KemariClient({ url: g.url, token: g.token }), g };
  };
  const print = (g: Globals, value: unknown, text: () => string) => io.out(g.json ? JSON.stringify(value) : text());

  cli
    .command("create")
    .description("create a guest from a file: assembly, ELF or flat binary (told apart by content)")
    .argument("<file>", "the guest's image")
    .addOption(new Option("--mode <mode>", "protection").choices(MODES).default("kemari"))
    .option("--regions <list>", "primary,secondary[,witness] location hints, e.g. weur,enam", parseRegions)
    .option("--latency <model>", "link model: none, by-region, or RTT[:MBPS] (e.g. 80:1000)", parseLatency)
    .option("--memory <pages|size>", "guest memory: pages, or a size like 4MiB", parseMemory)
    .option("--disk <sectors>", "virtual disk in 512-byte sectors", parseCount)
    .option("--name <name>", "a name for the guest")
    .option("--epoch-ms <ms>", "mode remus: milliseconds between checkpoints", parseCount)
    .option("--heartbeat <interval:timeout>", "protected modes: the witness's ping interval and failover timeout, ms (e.g. 200:2000)", parseHeartbeat)
    .addOption(new Option("--sync-on <events>", "mode kemari: which events need a checkpoint").choices(["outputs", "every-event"]))
    .option("--no-pipeline", "mode kemari: stop-and-wait (Kemari v1.0)")
    .option("--paused", "create it paused (resume it later)", false)
    .action(async (file: string, o: Record<string, unknown>) => {
      const { c, g } = client();
      const body: CreateGuestInput = { image: imageOf(readFileSync(file)), mode: o.mode as (typeof MODES)[number], paused: o.paused as boolean };
      if (o.regions) body.regions = o.regions as CreateGuestInput["regions"];
      if (o.latency) body.latency = o.latency as CreateGuestInput["latency"];
      if (o.memory !== undefined) body.memoryPages = o.memory as number;
      if (o.disk !== undefined) body.diskSectors = o.disk as number;
      if (o.name) body.name = o.name as string;
      if (o.epochMs !== undefined) body.epochMs = o.epochMs as number;
      if (o.heartbeat !== undefined) body.heartbeat = o.heartbeat as CreateGuestInput["heartbeat"];
      if (o.syncOn !== undefined || o.pipeline === false) {
        body.kemari = { ...(o.syncOn ? { syncOn: o.syncOn as "outputs" | "every-event" } : {}), ...(o.pipeline === false ? { pipeline: false } : {}) };
      }
      const s = await c.create(body);
      print(g, s, () => statusLine(s));
    });

  cli
    .command("ls")
    .description("list the guests, newest first, a page at a time")
    .option("--limit <n>", "guests per page (at most 500)", parseCount, 50)
    .option("--cursor <cursor>", "go on from a page's next")
    .option("--all", "follow the pages to the end", false)
    .action(async (o: { limit: number; cursor?: string; all: boolean }) => {
      const { c, g } = client();
      let cursor = o.cursor;
      for (;;) {
        const { guests, next } = await c.list({ limit: o.limit, cursor });
        if (g.json) io.out(JSON.stringify({ guests, next }));
        else if (guests.length === 0 && !cursor) io.out("no guests");
        else for (const x of guests) io.out(`${x.id}  ${x.name}  ${x.mode ?? "?"}  ${x.state ?? "?"}${x.generation ? `  generation ${x.generation}` : ""}`);
        if (!next) break;
        if (!o.all) {
          if (!g.json) io.out(`more: kemari ls --cursor ${next}`);
          break;
        }
        cursor = next;
      }
    });

  cli
    .command("status")
    .argument("<id>")
    .description("a guest's status")
    .action(async (id: string) => {
      const { c, g } = client();
      const s = await c.status(id);
      print(g, s, () => statusLine(s));
    });

  for (const [name, what] of [["pause", "pause a guest"], ["resume", "resume a paused guest"]] as const) {
    cli
      .command(name)
      .argument("<id>")
      .description(what)
      .action(async (id: string) => {
        const { c, g } = client();
        const s = name === "pause" ? await c.pause(id) : await c.resume(id);
        print(g, s, () => statusLine(s));
      });
  }

  cli
    .command("step")
    .argument("<id>")
    .argument("[instructions]", "how many (a slice's worth at most per request)", parseCount, 1)
    .description("run a paused guest for some instructions")
    .action(async (id: string, n: number) => {
      const { c, g } = client();
      const r = await c.step(id, n);
      print(g, r, () => `executed ${r.executed} instructions; ${statusLine(r as GuestStatus)}`);
    });

  cli
    .command("rm")
    .argument("<id>")
    .description("delete a guest")
    .action(async (id: string) => {
      const { c, g } = client();
      await c.remove(id);
      print(g, { deleted: id }, () => `deleted ${id}`);
    });

  cli
    .command("console")
    .argument("<id>")
    .option("--follow", "keep printing as the guest writes", false)
    .description("the guest's console output")
    .action(async (id: string, o: { follow: boolean }) => {
      const { c, g } = client();
      await pages(c, id, 0, o.follow, async (from) => {
        const page = await c.console(id, from);
        if (page.text) {
          if (g.json) io.out(JSON.stringify(page));
          else process.stdout.write(page.text);
        }
        return page.next;
      });
    });

  cli
    .command("send")
    .argument("<id>")
    .argument("[text]", "the packet as text")
    .option("--hex <hex>", "the packet in hex")
    .option("--file <file>", "the packet is this file")
    .description("send the guest a packet (its net-rx device)")
    .action(async (id: string, text: string | undefined, o: { hex?: string; file?: string }) => {
      const given = [text !== undefined, o.hex !== undefined, o.file !== undefined].filter(Boolean).length;
      if (given !== 1) throw new CommanderError(EXIT.usage, "kemari.usage", "give the packet one way: TEXT, --hex HEX or --file FILE");
      let packet: Uint8Array;
      if (o.hex !== undefined) {
        if (!/^([0-9a-fA-F]{2})+$/.test(o.hex)) throw new CommanderError(EXIT.usage, "kemari.usage", "--hex: an even number of hex digits");
        packet = Uint8Array.from(Buffer.from(o.hex, "hex"));
      } else if (o.file !== undefined) packet = readFileSync(o.file);
      else packet = new TextEncoder().encode(text);
      const { c, g } = client();
      const r = await c.send(id, packet);
      print(g, r, () => `sent ${r.accepted} bytes`);
    });

  cli
    .command("recv")
    .argument("<id>")
    .option("--follow", "keep printing packets as the guest sends them", false)
    .option("--from <index>", "from this net-tx index", parseCount, 0)
    .description("packets the guest sent (index, then hex)")
    .action(async (id: string, o: { follow: boolean; from: number }) => {
      const { c, g } = client();
      await pages(c, id, o.from, o.follow, async (from) => {
        const r = await c.outbound(id, from);
        for (const p of r.packets) print(g, { index: p.index, hex: hex(p.data) }, () => `${p.index}  ${hex(p.data)}`);
        return r.next;
      });
    });

  cli
    .command("crash")
    .argument("<id>")
    .addArgument(new Argument("<target>", "primary or secondary").choices(TARGETS))
    .addOption(new Option("--at <step>", "at a protocol step of the next sync").choices(STEPS).default("now"))
    .addOption(new Option("--at-instruction <n>", "once the guest has run n instructions (the secondary: once it holds a checkpoint at or past n)").argParser(parseCount).conflicts("at"))
    .description("crash a host of the guest (now, at a protocol step, or at an instruction count)")
    .action(async (id: string, target: (typeof TARGETS)[number], o: { at: (typeof STEPS)[number]; atInstruction?: number }) => {
      const { c, g } = client();
      const at = o.atInstruction !== undefined ? { instruction: o.atInstruction } : o.at;
      const r = await c.fault(id, { target, kind: "crash", at });
      const when = typeof at === "object" ? ` at instruction ${at.instruction}` : at === "now" ? "" : ` at ${at}`;
      print(g, r, () => `crash of the ${target}${when}: accepted`);
    });

  cli
    .command("partition")
    .argument("<id>")
    .addArgument(new Argument("<target>", "primary or secondary").choices(TARGETS))
    .description("cut a host of the guest off from the network")
    .action(async (id: string, target: (typeof TARGETS)[number]) => {
      const { c, g } = client();
      const r = await c.fault(id, { target, kind: "partition" });
      print(g, r, () => `partition of the ${target}: accepted`);
    });

  cli
    .command("heal")
    .argument("<id>")
    .addArgument(new Argument("[target]", "primary or secondary (default: both)").choices(TARGETS))
    .description("end a partition")
    .action(async (id: string, target: (typeof TARGETS)[number] | undefined) => {
      const { c, g } = client();
      const targets = target ? [target] : TARGETS;
      const replies = [];
      for (const t of targets) replies.push(await c.fault(id, { target: t, kind: "heal" }));
      print(g, replies, () => `healed ${targets.join(" and ")}`);
    });

  cli
    .command("watch")
    .argument("<id>")
    .description("the guest's live event stream: syncs, outputs, faults, takeovers, re-protection")
    .action(async (id: string) => {
      const { c, g } = client();
      await c.status(id); // a clear problem for an unknown guest, before the socket
      await new Promise<void>((resolve, reject) => {
        const ws = new WebSocket(c.eventsUrl(id));
        ws.addEventListener("open", () => ws.send(c.authMessage));
        ws.addEventListener("message", (e) => {
          const m = JSON.parse(String(e.data)) as StreamMessage;
          io.out(g.json ? String(e.data) : eventLine(m));
        });
        ws.addEventListener("close", (e) => {
          if (e.code === 4401) reject(new ApiError({ title: "Unauthorized", status: 401, detail: "the event stream refused the token" }));
          else resolve();
        });
        ws.addEventListener("error", () => reject(new Error(`cannot reach ${c.eventsUrl(id)}`)));
      });
    });

  cli
    .command("check")
    .description("does the guest survive its hosts dying? Runs it without failures, then with crashes, and compares what came out")
    .argument("<file>", "the guest's image: assembly, ELF or flat binary")
    .addOption(new Option("--mode <mode>", "protection").choices(MODES).default("kemari"))
    .option("--runs <n>", "runs with a crash at a random instruction count (then one at each protocol step, of each host)", parsePositive, 5)
    .option("--seed <s>", "the seed of the crashes (printed; give it to replay)", parseCount)
    .option("--input <file>", "inbound packets, one per line: text, or hex:0102…")
    .option("--memory <pages|size>", "guest memory: pages, or a size like 4MiB", parseMemory)
    .option("--timeout <seconds>", "how long one run may take to halt or settle", parseCount, RUN_TIMEOUT_MS / 1000)
    .action(async (file: string, o: { mode: Mode; runs: number; seed?: number; input?: string; memory?: number; timeout: number }) => {
      const g = cli.opts<Globals>();
      const image = imageOf(readFileSync(file));
      let inputs: Uint8Array[];
      try {
        inputs = o.input ? parseInputs(readFileSync(o.input, "utf8")) : [];
      } catch (e) {
        throw new CommanderError(EXIT.usage, "kemari.usage", (e as Error).message);
      }
      const seed = o.seed ?? Math.floor(Math.random() * 0x7fffffff);
      // A server the user named (--url or KEMARI_URL) is used; otherwise a local runtime of our own, started here.
      const own = env.KEMARI_URL === undefined && cli.getOptionValueSource("url") === "default";
      const runtime = own ? await startRuntime(g.token, io) : null;
      try {
        const c = new KemariClient({ url: runtime?.url ?? g.url, token: g.token });
        const tty = !g.json && process.stderr.isTTY;
        if (!g.json) io.out(`kemari check ${file}`);
        const r = await check(c, image, {
          mode: o.mode,
          runs: o.runs,
          seed,
          inputs,
          create: o.memory !== undefined ? { memoryPages: o.memory } : {},
          timeoutMs: o.timeout * 1000,
          out: (line) => {
            if (tty) process.stderr.write("\r\x1b[K");
            if (!g.json) io.out(line);
          },
          progress: tty ? (line) => process.stderr.write(`\r${line}`) : null,
        });
        if (tty) process.stderr.write("\r\x1b[K");
        if (g.json) io.out(JSON.stringify({ file, mode: o.mode, runs: o.runs, seed, ...r }));
        if (r.verdict !== "survives") throw new CommanderError(EXIT.difference, "kemari.difference", r.verdict);
      } finally {
        await runtime?.stop();
      }
    });

  return cli;
}

/** A local runtime of our own (workerd through wrangler, on a free port of 127.0.0.1), for `check`. */
async function startRuntime(token: string, io: Io): Promise<{ url: string; stop: () => Promise<void> }> {
  const { unstable_dev } = await import("wrangler");
  const root = fileURLToPath(new URL("../..", import.meta.url));
  io.err("starting a local runtime…");
  const worker = await unstable_dev(join(root, "src/index.ts"), {
    config: join(root, "wrangler.toml"),
    vars: { API_TOKEN: token },
    ip: "127.0.0.1",
    logLevel: "none",
    experimental: { disableExperimentalWarning: true },
  });
  return { url: `http://${worker.address}:${worker.port}`, stop: () => worker.stop() };
}

/** Run the CLI on `argv` (user arguments only); resolves to the exit code. */
export async function main(argv: string[], io: Io = consoleIo, env: Record<string, string | undefined> = process.env): Promise<number> {
  const cli = program(io, env);
  try {
    await cli.parseAsync(argv, { from: "user" });
    return EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version") return EXIT.ok;
      // `kemari` with no command prints the help, and is a usage error.
      if (e.code === "commander.help") return EXIT.usage;
      if (e.code === "kemari.difference") return EXIT.difference;
      if (e.code === "kemari.usage") io.err(`kemari: ${e.message}`);
      return EXIT.usage;
    }
    if (e instanceof ApiError) {
      const p = e.problem;
      io.err(`kemari: ${p.title} (${p.status})${p.detail ? `: ${p.detail}` : ""}${p.field ? ` [field: ${p.field}]` : ""}`);
      if (cli.opts<Globals>().json) io.out(JSON.stringify(p));
      return EXIT.refused;
    }
    if (e instanceof Error && /fetch failed|ECONNREFUSED|cannot reach/.test(`${e.message} ${String((e as { cause?: unknown }).cause ?? "")}`)) {
      io.err(`kemari: cannot reach the API at ${cli.opts<Globals>().url} (start it with npm start, or give --url)`);
      return EXIT.refused;
    }
    // A file that cannot be read (missing, a directory, not allowed): the command line named it.
    if (e instanceof Error && ["ENOENT", "EISDIR", "EACCES", "ENOTDIR"].includes((e as NodeJS.ErrnoException).code ?? "")) {
      io.err(`kemari: ${e.message}`);
      return EXIT.usage;
    }
    throw e;
  }
}
