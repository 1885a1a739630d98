// The guided demo: the counter service under client traffic, a crash of the
// primary in the middle of a checkpoint transfer, the takeover, and a check
// that every request was counted exactly once.
import { counterReply, counterRequest } from "./packets.js";

const CLIENTS = 4;
const PACE_MS = 200;
const RETRY_MS = 700;

const STEPS = [
  {
    key: "boot",
    title: "Boot & first checkpoint",
    text: "The counter service boots on the primary host. Before it runs, the primary sends the secondary, in another region, a full checkpoint of its memory: the guest is protected.",
  },
  {
    key: "tap",
    title: "Event tap",
    text: "Four clients send requests (client, seq) and retry until answered. Each time the guest NOTIFYs a device — take a packet, log to disk, send a reply — Kemari's event tap intercepts the event; one that leaves the guest (a reply, a console line) must wait for a checkpoint.",
  },
  {
    key: "checkpoint",
    title: "Checkpoint & acknowledgement",
    text: "The primary takes a checkpoint — only the pages dirtied since the last sync (amber on the map, blue as they go), with the CPU and ring state — and sends it to the secondary. Pipelined, the guest pauses just to take it and runs on while it is in flight; the event waits for the acknowledgement. On the timeline, solid bars are pauses, hatched bars flights.",
  },
  {
    key: "commit",
    title: "Output commit",
    text: "Only after the acknowledgement does the event reach its backend: a reply leaves only once the secondary could reproduce it. The outside world never sees a state that the secondary does not hold.",
  },
  {
    key: "crash",
    title: "Crash mid-transfer",
    text: "Now the primary crashes in the middle of its next checkpoint transfer. The secondary holds half a checkpoint: it throws it away — a checkpoint applies whole or not at all — and keeps the last acknowledged one.",
  },
  {
    key: "failover",
    title: "Failover & fencing",
    text: "The witness (the guest's switch) moves the guest to the secondary under a new generation. Anything the old primary might still release is refused: fencing. The backends rebuild their private req_cons from the rings in guest memory, so outstanding requests are simply processed again; clients retry what was not answered.",
  },
  {
    key: "reprotect",
    title: "Re-protection",
    text: "The new primary picks a fresh secondary in a third region, sends it a full checkpoint, and goes on incrementally: protected again.",
  },
  {
    key: "verify",
    title: "Nothing lost",
    text: "Checking every reply…",
  },
];

class Stopped extends Error {}

/** ?demo-speed=4 shortens the pauses left for reading (the browser tests use it). */
const SPEED = Math.min(10, Math.max(0.25, Number(new window.URLSearchParams(window.location.search).get("demo-speed")) || 1));

export class Demo {
  constructor(app, ui) {
    this.app = app;
    this.ui = ui;
    this.running = false;
    this.result = null;
  }

  get model() {
    return this.app.model && this.app.model.id === this.guestId ? this.app.model : null;
  }

  show(key, text) {
    const i = STEPS.findIndex((s) => s.key === key);
    this.ui.steps.replaceChildren(
      ...STEPS.map((s, j) => {
        const li = document.createElement("li");
        li.textContent = s.title;
        li.className = j < i ? "done" : j === i ? "current" : "todo";
        return li;
      }),
    );
    this.ui.caption.textContent = text ?? STEPS[i].text;
    this.ui.panel.dataset.step = key;
  }

  stop(why) {
    if (!this.running) return;
    this.running = false;
    this.traffic = false;
    this.draining = false;
    this.why = why;
  }

  sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  /** A pause for the audience to read a caption. */
  read(ms) {
    return this.sleep(ms / SPEED);
  }

  /** Wait until pred() holds; Stopped when the demo is stopped, Error on timeout. */
  async until(pred, ms, what) {
    const end = Date.now() + ms;
    for (;;) {
      if (!this.running) throw new Stopped(this.why || "stopped");
      if (pred()) return;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await this.sleep(50);
    }
  }

  async run() {
    if (this.running) return;
    const { app, ui } = this;
    this.running = true;
    this.why = "";
    this.result = null;
    this.replies = new Map();
    this.violations = [];
    this.sends = 0;
    this.retries = 0;
    ui.panel.hidden = false;
    ui.start.hidden = true;
    ui.stop.hidden = false;
    ui.panel.dataset.result = "";
    const onPacket = (id, bytes) => {
      if (id !== this.guestId) return;
      const r = counterReply(bytes);
      if (!r) return;
      const key = `${r.client}:${r.seq}`;
      const before = this.replies.get(key);
      if (before !== undefined && before !== r.counter) this.violations.push(`${key} answered ${before} and then ${r.counter}`);
      if (before === undefined) this.replies.set(key, r.counter);
    };
    app.packetListeners.add(onPacket);
    const clients = [];
    try {
      this.show("boot");
      const ex = (await app.api.examples()).examples.find((e) => e.name === "counter");
      if (!ex) throw new Error("the server has no counter example");
      const status = await app.api.create({ name: "demo-counter", mode: "kemari", image: { asm: ex.source } });
      this.guestId = status.id;
      app.select(status.id);
      void app.refreshGuests();
      await this.until(() => this.model?.consoleText.includes("ready") && this.model.status?.protection === "protected", 15000, "the guest to boot");
      await this.read(1500);

      this.show("tap");
      this.traffic = true;
      this.draining = true;
      for (let c = 0; c < CLIENTS; c++) clients.push(this.client(c));
      await this.until(() => this.replies.size >= 4, 10000, "the first replies");
      await this.read(2500);
      this.show("checkpoint");
      await this.read(3500);
      this.show("commit");
      await this.read(3500);

      this.show("crash");
      const generation = this.model?.generation ?? 0;
      await app.api.fault(this.guestId, { target: "primary", kind: "crash", at: "mid-transfer" });
      if (!(app.feed && app.feed.live)) this.model?.addMarker(`demo-fault:${Date.now()}`, Date.now(), "fault", "crash primary @ mid-transfer");
      await this.until(() => (this.model?.generation ?? 0) > generation, 20000, "the takeover");
      await this.read(1500);

      this.show("failover");
      await this.read(4500);

      this.show("reprotect");
      await this.until(() => this.model?.status?.protection === "protected", 20000, "re-protection");
      await this.read(3000);

      this.show("verify");
      this.traffic = false;
      await this.until(() => clients.every((c) => c.idle), 15000, "the last replies");
      this.draining = false;
      this.result = this.verify();
      ui.panel.dataset.result = this.result.ok ? "ok" : "fail";
      this.show("verify", this.result.text);
    } catch (err) {
      this.traffic = false;
      this.draining = false;
      const stopped = err instanceof Stopped;
      this.result = { ok: false, text: stopped ? `Demo ${err.message}.` : `The demo failed: ${err.message}` };
      ui.panel.dataset.result = stopped ? "" : "fail";
      ui.caption.textContent = this.result.text;
    } finally {
      this.running = false;
      this.traffic = false;
      this.draining = false;
      app.packetListeners.delete(onPacket);
      ui.start.hidden = false;
      ui.stop.hidden = true;
    }
  }

  /** One client: requests seq 1, 2, 3, …, each retried until answered. */
  client(n) {
    const state = { idle: false, n, seq: 0 };
    const loop = async () => {
      while (this.traffic) {
        state.seq += 1;
        const key = `${n}:${state.seq}`;
        let tries = 0;
        while (this.draining && !this.replies.has(key)) {
          if (tries++ > 0) this.retries++;
          this.sends++;
          await this.app.api.inbound(this.guestId, counterRequest(n, state.seq)).catch(() => undefined);
          const end = Date.now() + RETRY_MS;
          while (this.draining && !this.replies.has(key) && Date.now() < end) await this.sleep(40);
        }
        await this.sleep(PACE_MS * (0.75 + Math.random() * 0.5));
      }
      state.idle = true;
    };
    state.done = loop();
    return state;
  }

  verify() {
    const values = [...this.replies.values()].sort((a, b) => a - b);
    const n = values.length;
    const problems = [...this.violations];
    for (let i = 0; i < n; i++) {
      if (values[i] !== i + 1) {
        problems.push(`counter values are not exactly 1..${n} (value ${values[i]} at position ${i + 1})`);
        break;
      }
    }
    const top = this.model?.generation ?? 0;
    if (problems.length === 0) {
      return {
        ok: true,
        n,
        text: `✔ ${n} requests from ${CLIENTS} clients, ${this.retries} ${this.retries === 1 ? "retry" : "retries"}, generation ${top}: the counter went 1…${n}, every value exactly once. Nothing lost and nothing counted twice across the failover — the clients only noticed a short delay.`,
      };
    }
    return { ok: false, n, text: `✘ ${problems.join("; ")}` };
  }
}
