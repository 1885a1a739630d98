#!/usr/bin/env node
// The `kemari` CLI's test (`npm run test:cli`): runs `bin/kemari.mjs` as a
// user would, against `wrangler dev` on 127.0.0.1:8796, and checks its
// output and exit codes (0 ok, 2 usage, 3 the API refused or is unreachable):
// create an echo guest in mode kemari, send it packets, read them back, crash
// its primary and see the guest go on, then usage errors, problems, `watch`,
// and `rm`; then the README's failover walkthrough, its curl version and its
// CLI twin, run by bash as written (only the port differs; the token is the
// local default, dev). The parsers (sizes, link models, image kinds) are
// checked on the bundle first, without a server.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { apiAnswers, killServer, nodeBinary, startWranglerDev, stopAfter } from "./wrangler-dev.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const PORT = Number(process.env.CLI_PORT || 8796);
const TOKEN = "dev";
const URL_ = `http://127.0.0.1:${PORT}`;
const stateDir = mkdtempSync(join(tmpdir(), "kemari-cli-"));
const node = nodeBinary(root);
const env = { ...process.env, KEMARI_URL: URL_, KEMARI_TOKEN: TOKEN };
const failures = [];
let server = null;
let serverLog = "";
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function check(what, ok, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}${ok ? "" : `: ${detail}`}`);
  if (!ok) failures.push(what);
}

/** Run the CLI; its exit code, stdout and stderr. */
function kemari(args, extraEnv = {}) {
  const r = spawnSync(node, [join(root, "bin/kemari.mjs"), ...args], { cwd: root, env: { ...env, ...extraEnv }, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

async function cleanup() {
  killServer(server);
  rmSync(stateDir, { recursive: true, force: true });
}

const serving = () => apiAnswers(`${URL_}/api`, TOKEN);

/** The parsers, on the bundle bin/kemari.mjs builds. */
async function parsers() {
  kemari(["--help"]); // builds .wrangler/cli/kemari.mjs
  const cli = await import(pathToFileURL(join(root, ".wrangler/cli/kemari.mjs")).href);
  check("--memory takes pages or a size", cli.parseMemory("256") === 256 && cli.parseMemory("4MiB") === 1024 && cli.parseMemory("64 KiB") === 16);
  let refused = false;
  try {
    cli.parseMemory("3KiB");
  } catch {
    refused = true;
  }
  check("--memory refuses a size that is not whole pages", refused);
  check("--latency takes none, by-region, RTT and RTT:MBPS", JSON.stringify([cli.parseLatency("none"), cli.parseLatency("by-region"), cli.parseLatency("80"), cli.parseLatency("80:1000")]) === JSON.stringify(["none", "by-region", { rttMs: 80 }, { rttMs: 80, mbps: 1000 }]));
  check("--heartbeat takes INTERVAL:TIMEOUT", JSON.stringify(cli.parseHeartbeat("20:300")) === JSON.stringify({ intervalMs: 20, timeoutMs: 300 }));
  check("--regions takes primary,secondary[,witness]", JSON.stringify(cli.parseRegions("weur,enam,apac")) === JSON.stringify({ primary: "weur", secondary: "enam", witness: "apac" }));
  const elf = new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1, 0]);
  let emptyRefused = false;
  try {
    cli.parseInputs("a\n\nb\n");
  } catch (e) {
    emptyRefused = /line 2/.test(e.message);
  }
  check("--input: CRLF lines, hex:, and an empty line refused naming it", emptyRefused && JSON.stringify(cli.parseInputs("ab\r\nhex:0102\r\n").map((p) => [...p])) === JSON.stringify([[97, 98], [1, 2]]));
  check("an image is told apart by content", "elf" in cli.imageOf(elf) && "asm" in cli.imageOf(new TextEncoder().encode("_start:\n\tj _start\n")) && "flat" in cli.imageOf(new Uint8Array([0x13, 0, 0, 0, 0xff, 0x01])));
}

/** The sh block after `marker` in the README. */
function readmeBlock(marker) {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const at = readme.indexOf(marker);
  if (at < 0) throw new Error(`README: no "${marker}"`);
  const m = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  return m[1];
}

/** The README's failover walkthrough, with curl and with the CLI: both end with the replies 1 1 1, 1 2 2, 1 3 3. */
function walkthroughs() {
  const run = (script) => spawnSync("bash", ["-e", "-c", script.replaceAll("127.0.0.1:8787", `127.0.0.1:${PORT}`)], { cwd: root, env, encoding: "utf8", timeout: 90_000 });
  const curl = run(readmeBlock("### Try a failover with curl"));
  const replies = curl.stdout.split("\n").map((l) => l.trim().split(/\s+/).join(" ")).filter((l) => /^\d+ \d+ \d+$/.test(l));
  check("the README's curl walkthrough: a failover mid-transfer, replies 1 1 1, 1 2 2, 1 3 3", curl.status === 0 && JSON.stringify(replies.slice(0, 3)) === JSON.stringify(["1 1 1", "1 2 2", "1 3 3"]) && /"generation": 1/.test(curl.stdout), `${curl.status} ${curl.stdout.slice(-1500)} ${curl.stderr.slice(-800)}`);
  const cli = run(readmeBlock("The same with the CLI"));
  const hex = (a, b, c) => [a, b, c].map((n) => n.toString(16).padStart(2, "0") + "000000").join("");
  const want = [1, 2, 3].map((n) => hex(1, n, n));
  const lines = cli.stdout.split("\n").filter((l) => /^\d+ {2}[0-9a-f]+$/.test(l)).map((l) => l.split("  ")[1]);
  check("the README's CLI twin: the same failover, the same replies", cli.status === 0 && JSON.stringify(lines.slice(0, 3)) === JSON.stringify(want) && /generation 1/.test(cli.stdout), `${cli.status} ${cli.stdout.slice(-1500)} ${cli.stderr.slice(-800)}`);
}

const timer = stopAfter({ name: "cli", limitMs: 300_000, cleanup, onTimeout: () => console.log(serverLog.slice(-4000)) });
try {
  await parsers();
  const down = kemari(["ls"], { KEMARI_URL: "http://127.0.0.1:1" });
  check("no server: exit 3, and says so", down.code === 3 && /cannot reach/.test(down.err), JSON.stringify(down));

  server = await startWranglerDev({
    root, port: PORT, vars: { API_TOKEN: TOKEN }, persistTo: stateDir, timeoutMs: 60_000, what: "the API", serving,
    onOutput: (chunk) => (serverLog = (serverLog + chunk.toString()).slice(-100_000)),
  });

  const made = kemari(["create", "guests/echo.s", "--mode", "kemari", "--regions", "weur,enam", "--memory", "1MiB", "--name", "cli echo", "--heartbeat", "100:1000", "--json"]);
  const g = made.code === 0 ? JSON.parse(made.out) : null;
  check("create an echo guest (exit 0, its status as JSON; the flags taken)", g?.mode === "kemari" && g?.memoryPages === 256 && g?.name === "cli echo" && g?.heartbeat?.timeoutMs === 1000 && g?.hosts?.primary?.region === "weur", JSON.stringify(made));
  const id = g.id;

  check("send a text packet", kemari(["send", id, "hello"]).out.trim() === "sent 5 bytes");
  check("send a hex packet", kemari(["send", id, "--hex", "0102ff"]).code === 0);
  let recv = "";
  for (let i = 0; i < 50 && recv.split("\n").filter(Boolean).length < 2; i++) {
    await sleep(100);
    recv = kemari(["recv", id]).out;
  }
  check("recv prints the echoed packets (index, hex)", recv === `0  ${Buffer.from("hello").toString("hex")}\n1  0102ff\n`, JSON.stringify(recv));

  const crash = kemari(["crash", id, "primary"]);
  check("crash the primary", crash.code === 0 && /accepted/.test(crash.out), JSON.stringify(crash));
  let s = null;
  for (let i = 0; i < 100; i++) {
    await sleep(100);
    const r = kemari(["status", id, "--json"]);
    s = r.code === 0 ? JSON.parse(r.out) : null;
    if (s && s.generation >= 1 && s.failovers.length >= 1 && s.protection === "protected") break;
  }
  check("the guest went on: a takeover (generation 1), protected again", s?.generation >= 1 && s?.failovers.length >= 1 && s?.protection === "protected", JSON.stringify(s));
  kemari(["send", id, "again"]);
  for (let i = 0; i < 50 && !recv.includes("2  "); i++) {
    await sleep(100);
    recv = kemari(["recv", id, "--from", "2"]).out;
  }
  check("after the takeover it still echoes (net-tx index 2)", recv === `2  ${Buffer.from("again").toString("hex")}\n`, JSON.stringify(recv));

  // watch: the stream starts with a snapshot.
  const watch = spawn(node, [join(root, "bin/kemari.mjs"), "watch", id], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
  let watched = "";
  watch.stdout.on("data", (c) => (watched += c));
  for (let i = 0; i < 100 && !/snapshot/.test(watched); i++) await sleep(100);
  kemari(["send", id, "seen"]);
  for (let i = 0; i < 50 && !/output +net#3/.test(watched); i++) await sleep(100);
  watch.kill("SIGKILL");
  check("watch prints the snapshot, then live events (the next output)", /snapshot/.test(watched) && /output +net#3/.test(watched), watched.slice(0, 600));

  const usage = kemari(["send", id]);
  check("usage error: exit 2 and what to give", usage.code === 2 && /TEXT, --hex HEX or --file FILE/.test(usage.err), JSON.stringify(usage));
  const badMode = kemari(["create", "guests/echo.s", "--mode", "lockstep"]);
  check("usage error: an unknown mode is exit 2", badMode.code === 2 && /Allowed choices/.test(badMode.err), JSON.stringify(badMode));
  const bad = join(stateDir, "bad.s");
  writeFileSync(bad, "_start:\n  addi x1, x1\n");
  const refused = kemari(["create", bad]);
  check("the API refuses bad assembly: exit 3, detail and field printed", refused.code === 3 && /line 2/.test(refused.err) && /field: image\.asm/.test(refused.err), JSON.stringify(refused));
  const missing = kemari(["status", "g-000000000000"]);
  check("an unknown guest: exit 3 (not found)", missing.code === 3 && /404/.test(missing.err), JSON.stringify(missing));
  const token = kemari(["ls", "--token", "wrong"]);
  check("a wrong token: exit 3 (401)", token.code === 3 && /401/.test(token.err), JSON.stringify(token));

  const armed = kemari(["crash", id, "secondary", "--at-instruction", "10"]);
  check("crash --at-instruction arms a crash at an instruction count", armed.code === 0 && /at instruction 10: accepted/.test(armed.out), JSON.stringify(armed));
  const both = kemari(["crash", id, "primary", "--at", "after-ack", "--at-instruction", "5"]);
  check("--at and --at-instruction together: usage error", both.code === 2, JSON.stringify(both));

  walkthroughs();

  check("rm deletes it", kemari(["rm", id]).code === 0);
  const listed = kemari(["ls", "--json"]);
  check("ls no longer lists it", listed.code === 0 && !JSON.parse(listed.out).guests.some((x) => x.id === id), listed.out.slice(0, 300));
} catch (e) {
  failures.push(String(e?.stack ?? e));
  console.log(String(e?.stack ?? e));
} finally {
  clearTimeout(timer);
  await cleanup();
}
if (failures.length > 0) {
  console.log(`cli: FAILED (${failures.length}): ${failures.join("; ")}`);
  process.exit(1);
}
console.log("cli: passed");
