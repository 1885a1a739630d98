#!/usr/bin/env node
// `kemari check`'s own test (`npm run test:check`, in CI): every example
// guest — the assembly ones and the C ones (guests/c/*.elf) — survives crashes in both protected modes (2 runs with a crash each,
// fixed seeds; echo and counter fed packets, the long guests tuned short);
// the same check fails — exit 1, the first difference shown — in mode none;
// a guest that reads RANDOM is reported non-deterministic, not judged; and
// one check starts its own runtime (no --url), as a user's would. The rest
// share one `wrangler dev` on 127.0.0.1:8795, to keep CI short.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { apiAnswers, killServer, nodeBinary, startWranglerDev, stopAfter } from "./wrangler-dev.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const PORT = Number(process.env.CHECK_PORT || 8795);
const URL_ = `http://127.0.0.1:${PORT}`;
const dir = mkdtempSync(join(tmpdir(), "kemari-check-"));
const failures = [];
let server = null;
let serverLog = "";

function check(what, ok, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}${ok ? "" : `: ${detail}`}`);
  if (!ok) failures.push(what);
}

function kemari(args, env = { KEMARI_URL: URL_ }) {
  const r = spawnSync(nodeBinary(root), [join(root, "bin/kemari.mjs"), ...args], { cwd: root, env: { ...process.env, ...env }, encoding: "utf8", timeout: 240_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** A copy of a guest with some `.equ` values changed. */
function tuned(name, values) {
  let src = readFileSync(join(root, "guests", name), "utf8");
  for (const [k, v] of Object.entries(values)) src = src.replace(new RegExp(`^\\.equ ${k},\\s*\\S+`, "m"), `.equ ${k}, ${v}`);
  const file = join(dir, name);
  writeFileSync(file, src);
  return file;
}

async function cleanup() {
  killServer(server);
  rmSync(dir, { recursive: true, force: true });
}

const serving = () => apiAnswers(`${URL_}/api`, "dev");

const timer = stopAfter({ name: "check", limitMs: 900_000, cleanup, onTimeout: () => console.log(serverLog.slice(-4000)) });
const t0 = Date.now();
try {
  // With its own runtime: no --url, no KEMARI_URL.
  const own = kemari(["check", "guests/hello.s", "--runs", "2", "--seed", "1"], {});
  // Two runs at random instruction counts, then one at each protocol step of each host: 10 in all.
  check("kemari check starts its own runtime and passes hello.s", own.code === 0 && /survives: 10 of 10/.test(own.out), JSON.stringify(own).slice(0, 1500));

  server = await startWranglerDev({
    root, port: PORT, vars: { API_TOKEN: "dev" }, persistTo: join(dir, "state"), timeoutMs: 60_000, what: "the API", serving,
    onOutput: (chunk) => (serverLog = (serverLog + chunk.toString()).slice(-100_000)),
  });
  const echoIn = join(dir, "echo.txt");
  writeFileSync(echoIn, "hello\nhex:0102ff\nworld\n");
  const counterIn = join(dir, "counter.txt");
  writeFileSync(counterIn, ["0100000001000000", "0100000002000000", "0200000001000000", "0100000003000000"].map((h) => `hex:${h}\n`).join(""));
  const kvIn = join(dir, "kv.txt");
  writeFileSync(kvIn, "SET colour blue\nGET colour\nSET size large\nDEL colour\nGET colour\nGET size\n");
  const guests = [
    ["hello.s", "guests/hello.s", []],
    ["echo.s", "guests/echo.s", ["--input", echoIn]],
    ["counter.s", "guests/counter.s", ["--input", counterIn]],
    ["journal.s", "guests/journal.s", []],
    ["stress.s", tuned("stress.s", { PAGES: 4, ROUNDS: 20, REGION: 16 }), []],
    ["streamer.s", tuned("streamer.s", { PACKETS: 200 }), []],
    ["workload.s", tuned("workload.s", { ROUNDS: 12 }), []],
    ["counter.elf (C)", "guests/c/counter.elf", ["--input", counterIn]],
    ["kv.elf (C)", "guests/c/kv.elf", ["--input", kvIn]],
  ];
  for (const mode of ["kemari", "remus"]) {
    for (const [name, file, more] of guests) {
      const r = kemari(["check", file, "--mode", mode, "--runs", "2", "--seed", "42", ...more]);
      check(`${name} survives crashes in mode ${mode}`, r.code === 0 && /survives: 10 of 10 /.test(r.out) && !/not exercised/.test(r.out), (r.out + r.err).slice(-1500));
    }
  }
  const none = kemari(["check", "guests/journal.s", "--mode", "none", "--runs", "2", "--seed", "42"]);
  check("in mode none the check fails (exit 1) and shows the first difference", none.code === 1 && /DIFFERS: the guest ended crashed/.test(none.out) && /differs: 2 of 2 runs; the first: crash primary at instruction \d+/.test(none.out), (none.out + none.err).slice(-1500));
  const random = join(dir, "random.s");
  // Its exit code is 32 random bits: two runs agree once in 2³².
  writeFileSync(random, "_start:\n    li a7, 6\n    ecall\n    li a7, 0\n    ecall\n");
  const nd = kemari(["check", random, "--runs", "1"]);
  check("a guest that reads RANDOM is non-deterministic: reported with what differed, not judged (exit 1)", nd.code === 1 && /non-deterministic: two failure-free runs differ — the guest ended halted \(exit -?\d+\)/.test(nd.out), (nd.out + nd.err).slice(-1500));
  const json = kemari(["check", "guests/hello.s", "--runs", "1", "--seed", "9", "--json"]);
  const parsed = json.code === 0 ? JSON.parse(json.out) : null; // stdout is the JSON alone
  check("--json prints the verdict as JSON", parsed?.verdict === "survives" && parsed?.seed === 9, JSON.stringify(json).slice(0, 800));
} catch (e) {
  failures.push(String(e?.stack ?? e));
  console.log(String(e?.stack ?? e));
} finally {
  clearTimeout(timer);
  await cleanup();
}
console.log(`check: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
if (failures.length > 0) {
  console.log(`check: FAILED (${failures.length}): ${failures.join("; ")}`);
  process.exit(1);
}
console.log("check: passed");
