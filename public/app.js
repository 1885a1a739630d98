// The Kemari dashboard: plain ES modules, no framework. Events and polled
// status update a model; one requestAnimationFrame loop draws what changed.
import { makeApi } from "./api.js";
import { GuestFeed } from "./feed.js";
import { GuestModel, short } from "./model.js";
import { describeLink, drawMemory, drawRing, drawTimeline, formatBytes, formatMs, TIMELINE_MS } from "./views.js";
import { setupCreateForm } from "./create-form.js";
import { Demo } from "./demo.js";
import { base64ToBytes, describePacket, parsePacketInput } from "./packets.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "kemari.token";
const REGION_NAMES = {
  wnam: "Western North America", enam: "Eastern North America", sam: "South America", weur: "Western Europe",
  eeur: "Eastern Europe", apac: "Asia-Pacific", oc: "Oceania", afr: "Africa", me: "Middle East",
};
const PROTECTION_TEXT = {
  protected: "protected", unprotected: "unprotected", "failing-over": "failing over", reprotecting: "re-protecting",
};

// ---- token (kept in localStorage, never in a URL) ----

const tokenInput = $("token");
tokenInput.value = localStorage.getItem(TOKEN_KEY) ?? "dev";
const api = makeApi(() => tokenInput.value.trim());

/** ?transport=poll forces the polling fallback (for testing it). */
const streamWanted = new window.URLSearchParams(window.location.search).get("transport") !== "poll";

const app = {
  api,
  model: null,
  feed: null,
  packetListeners: new Set(),
  select,
  refreshGuests,
  showError,
};

// ---- errors ----

let errorTimer = null;
function showError(err) {
  const el = $("error");
  el.textContent = err instanceof Error ? err.message : String(err);
  el.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => (el.hidden = true), 7000);
}

async function act(fn) {
  try {
    return await fn();
  } catch (err) {
    showError(err);
    return undefined;
  }
}

// ---- examples and creating guests ----

let examples = [];
async function loadExamples() {
  const sel = $("example");
  try {
    examples = (await api.examples()).examples;
  } catch (err) {
    showError(err);
    return;
  }
  sel.replaceChildren(new window.Option("— paste your own —", ""));
  for (const ex of examples) sel.append(new window.Option(`${ex.name} — ${ex.title}`, ex.name));
  if (!$("asm").value) {
    sel.value = "counter";
    pickExample();
  }
}

function pickExample() {
  const ex = examples.find((e) => e.name === $("example").value);
  if (ex) {
    $("asm").value = ex.source;
    $("name").placeholder = ex.name;
  }
}

const createForm = setupCreateForm($, REGION_NAMES);
$("example").addEventListener("change", pickExample);
$("create").addEventListener("submit", async (e) => {
  e.preventDefault();
  const asm = $("asm").value;
  if (!asm.trim()) return showError("paste some assembly or pick an example");
  const mode = $("mode").value;
  const spec = { image: { asm }, mode, paused: $("paused").checked, ...createForm.options(mode) };
  const name = $("name").value.trim() || $("example").value;
  if (name) spec.name = name;
  $("create-btn").disabled = true;
  createForm.clearProblem();
  const s = await act(async () => {
    try {
      return await api.create(spec);
    } catch (err) {
      createForm.markProblem(err);
      throw err;
    }
  });
  $("create-btn").disabled = false;
  if (s) {
    $("error").hidden = true; // a refusal the form has since put right
    select(s.id);
    void refreshGuests();
  }
});

// ---- the guest list ----

let guestList = [];
/** The cursor of the list's next page (null: all shown). The list pages through the directory, 50 at a time. */
let guestsNext = null;
async function refreshGuests() {
  try {
    const page = await api.guests();
    guestList = page.guests;
    guestsNext = page.next;
  } catch (err) {
    showError(err);
    return;
  }
  renderGuestList();
}

async function moreGuests() {
  if (!guestsNext) return;
  try {
    const page = await api.guests(guestsNext);
    guestList = guestList.concat(page.guests);
    guestsNext = page.next;
  } catch (err) {
    showError(err);
    return;
  }
  renderGuestList();
}

function renderGuestList() {
  const ul = $("guests");
  const items = guestList; // newest first, as the API pages them
  ul.replaceChildren(
    ...items.map((g) => {
      const li = document.createElement("li");
      li.dataset.id = g.id;
      if (app.model && g.id === app.model.id) li.classList.add("selected");
      const name = document.createElement("b");
      name.textContent = g.name;
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = `${g.mode ?? "?"} · ${g.state ?? "?"}${g.generation ? ` · gen ${g.generation}` : ""}`;
      li.append(name, meta);
      li.addEventListener("click", () => select(g.id));
      return li;
    }),
  );
  if (items.length === 0) {
    const li = document.createElement("li");
    li.className = "none";
    li.textContent = "no guests yet";
    ul.append(li);
  }
  if (guestsNext) {
    const li = document.createElement("li");
    const more = document.createElement("button");
    more.id = "guests-more";
    more.className = "small";
    more.textContent = "more…";
    more.addEventListener("click", () => void moreGuests());
    li.append(more);
    ul.append(li);
  }
}
$("refresh").addEventListener("click", () => void refreshGuests());

// ---- selecting a guest ----

function select(id) {
  if (app.feed) app.feed.stop();
  app.model = null;
  app.feed = null;
  lastGeneration = -1;
  clearTimeout(bannerTimer);
  $("banner").hidden = true; // another guest's takeover is not this one's
  ringCanvases.clear();
  $("rings").replaceChildren();
  if (!id) {
    $("guest").hidden = true;
    $("controls").hidden = true;
    $("empty").hidden = false;
    setTransport("idle", "no guest");
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
    renderGuestList();
    return;
  }
  const model = new GuestModel(id);
  app.model = model;
  $("guest").hidden = false;
  $("controls").hidden = false;
  $("empty").hidden = true;
  $("console").textContent = "";
  $("packets").replaceChildren();
  window.history.replaceState(null, "", `#${id}`);
  const feed = new GuestFeed({
    id,
    api,
    getToken: () => tokenInput.value.trim(),
    handlers: {
      message: (m) => model.applyMessage(m),
      status: (s, o) => model.applyStatus(s, o),
      console: (c) => model.addConsole(c.text),
      packets: (p) => {
        for (const pk of p.packets) {
          const bytes = base64ToBytes(pk.data);
          model.addPacket({ dir: "out", index: pk.index, bytes, t: Date.now() });
          for (const l of app.packetListeners) l(id, bytes, pk.index);
        }
      },
      transport: (kind, detail) => setTransport(kind, detail),
      error: (err) => {
        if (err && err.status === 404) {
          showError(`guest ${id} is gone`);
          select(null);
          void refreshGuests();
        } else showError(err);
      },
    },
  });
  app.feed = feed;
  feed.start({ stream: streamWanted });
  renderGuestList();
}

function setTransport(kind, detail) {
  const el = $("transport");
  el.dataset.kind = kind;
  el.textContent = kind === "live" ? "● live stream" : kind === "polling" ? `◌ polling — ${detail}` : detail;
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  tokenInput.blur();
});
tokenInput.addEventListener("change", () => {
  localStorage.setItem(TOKEN_KEY, tokenInput.value.trim());
  $("error").hidden = true;
  void loadExamples();
  void refreshGuests();
  if (app.model) select(app.model.id);
});

// ---- controls ----

const needGuest = (fn) => () => {
  if (app.model) void act(() => fn(app.model.id));
};
$("resume").addEventListener("click", needGuest((id) => api.resume(id)));
$("pause").addEventListener("click", needGuest((id) => api.pause(id)));
$("step").addEventListener("click", needGuest((id) => api.step(id, Math.max(1, Number($("step-n").value) || 1))));
$("delete").addEventListener(
  "click",
  needGuest(async (id) => {
    await api.remove(id);
    select(null);
    await refreshGuests();
  }),
);

$("send").addEventListener("submit", (e) => {
  e.preventDefault();
  if (!app.model) return;
  let bytes;
  try {
    bytes = parsePacketInput($("packet").value);
  } catch (err) {
    showError(err);
    return;
  }
  void sendPacket(app.model.id, bytes);
});

async function sendPacket(id, bytes) {
  await act(async () => {
    await api.inbound(id, bytes);
    if (app.model && app.model.id === id) app.model.addPacket({ dir: "in", index: null, bytes, t: Date.now() });
  });
}
app.sendPacket = sendPacket;

async function fault(target, kind, at = "now") {
  const model = app.model;
  if (!model) return;
  const r = await act(() => api.fault(model.id, { target, kind, at }));
  // With the stream up, the switch's own fault event draws the marker.
  if (r && !(app.feed && app.feed.live)) {
    const where = at !== "now" ? ` @ ${at}` : "";
    const label = kind === "heal" ? "heal" : `${kind === "partition" ? "cut" : "crash"} ${target}${where}`;
    model.addMarker(`local-fault:${Date.now()}:${Math.random()}`, Date.now(), "fault", label);
  }
}
app.fault = fault;
$("crash-primary").addEventListener("click", () => void fault("primary", "crash"));
$("crash-secondary").addEventListener("click", () => void fault("secondary", "crash"));
$("crash-at").addEventListener("click", () => void fault($("fault-target").value, "crash", $("fault-step").value));
$("partition").addEventListener("click", () => void fault($("fault-target").value, "partition"));
$("heal").addEventListener("click", () => void fault($("fault-target").value, "heal"));

// ---- the takeover banner ----

let lastGeneration = -1;
let bannerTimer = null;
function showTakeover(n) {
  const el = $("banner");
  const to = n.to ? short(n.to) : "the secondary";
  const took = n.takeoverMs !== null && n.takeoverMs >= 0 ? ` in ${n.takeoverMs} ms` : "";
  const big = document.createElement("strong");
  big.textContent = "TAKEOVER";
  const gen = document.createElement("span");
  gen.className = "gens";
  gen.textContent = `generation ${n.generation - 1} → ${n.generation}`;
  const small = document.createElement("span");
  small.textContent = `${to} runs the guest now${took}, from the last acknowledged checkpoint`;
  el.replaceChildren(big, gen, small);
  el.hidden = false;
  for (const e of [el, $("card-primary")]) {
    e.classList.remove("flash");
    void e.offsetWidth; // restart the animation
    e.classList.add("flash");
  }
  clearTimeout(bannerTimer);
  bannerTimer = setTimeout(() => (el.hidden = true), 8000);
}

// ---- rendering, at most once per animation frame ----

const ringCanvases = new Map();
let memoryFading = false;
let lastTimelineDraw = 0;

const ms = formatMs;

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function renderHosts(m) {
  const s = m.status;
  if (!s) return;
  setText($("guest-name"), s.name);
  setText($("guest-id"), s.id);
  setText($("generation"), String(s.generation));
  const prot = $("protection");
  prot.dataset.state = s.mode === "none" ? "unprotected" : s.protection;
  setText(prot, s.mode === "none" ? "mode none · unprotected" : PROTECTION_TEXT[s.protection] ?? s.protection);
  const links = Array.isArray(s.links) ? s.links : [];
  fillCard(
    $("card-primary"),
    s.hosts.primary,
    [
      `guest ${s.state}${s.exitCode !== null && s.exitCode !== undefined ? ` (exit ${s.exitCode})` : ""}`,
      `pc 0x${(s.pc >>> 0).toString(16).padStart(4, "0")} · ${Number(s.instructions).toLocaleString("en")} instructions`,
      s.sync ? lastSyncText(s.sync) : `${s.counters?.events ?? 0} device events`,
      outputsText(s),
      s.mode === "remus" && s.sync ? `epoch ${s.epochMs} ms · ${s.sync.heldOutputs ?? 0} outputs held for their epoch's ack` : "",
      s.idleSaved ? "idle, saved in its host's storage: an eviction costs nothing" : "",
    ],
    links.filter((l) => l.from === "primary"),
  );
  const sec = $("card-secondary");
  sec.classList.toggle("absent", !s.hosts.secondary);
  if (s.hosts.secondary) {
    fillCard(
      sec,
      s.hosts.secondary,
      [
        s.protection === "reprotecting" ? "receiving a full checkpoint…" : s.sync ? `holds checkpoint #${s.sync.seq} (acknowledged)` : "",
        "applies each checkpoint whole, or not at all",
      ],
      links.filter((l) => l.from === "secondary"),
    );
  } else {
    fillCard(
      sec,
      null,
      [s.mode === "none" ? "mode none: no copy is kept" : s.protection === "failing-over" ? "taking over as primary…" : "being chosen…"],
      [],
    );
  }
  const sync = s.sync;
  setText(
    $("sync-facts"),
    [
      sync ? `${sync.syncs.toLocaleString("en")} syncs · ${formatBytes(sync.bytesSent)} sent · delta saved ${formatBytes(sync.deltaSaved)}` : "",
      tapText(s),
      s.latency !== undefined ? `link model: ${latencyText(s.latency)}` : "",
    ]
      .filter(Boolean)
      .join("\n"),
  );
  const fenced = (s.failovers || [])
    .slice(-3)
    .map((f) => `✖ ${short(f.from)} failed → fenced since generation ${f.generation}: ${f.reason}${f.takeoverMs >= 0 ? ` (takeover ${f.takeoverMs} ms)` : ""}`);
  setText($("fenced"), fenced.join("\n"));
  const st = $("guest-state");
  st.dataset.state = s.state;
  setText(st, s.state);
  const f = $("memory-facts");
  const dirtyCount = s.dirtyPages ?? 0;
  setText(
    f,
    `${m.pages} pages of 4 KiB · ${dirtyCount} dirtied since the last sync${m.dirtyKnown ? "" : " (page numbers come with the live stream)"}` +
      (sync?.last ? ` · last sync: ${sync.last.pages} pages${sync.last.full ? " (full)" : ""}, ${formatBytes(sync.last.sentBytes)} on the wire` : ""),
  );
}

/** The primary's last checkpoint: how long the guest paused for it, and how long it was in flight. */
function lastSyncText(sync) {
  const pause = Number(sync.lastPauseMs) || 0;
  if (typeof sync.lastFlightMs !== "number") return `sent checkpoint #${sync.seq} · paused ${ms(pause)} at the last`;
  return `sent checkpoint #${sync.seq} · at the last: paused ${ms(pause)}, in flight ${ms(sync.lastFlightMs)}`;
}

const count = (n, what) => `${n.toLocaleString("en")} ${what}${n === 1 ? "" : "s"}`;

/** Outputs the switch has released, and those still on their way to it. */
function outputsText(s) {
  const done = s.counters?.outputs;
  const flying = s.outputsInFlight;
  const head = typeof done === "number" ? `${count(done, "output")} out` : "";
  if (typeof flying !== "number") return head;
  return `${head ? `${head} · ` : "outputs: "}${flying} in flight to the switch`;
}

function tapText(s) {
  const k = s.mode === "kemari" ? s.kemari : null;
  if (!k) return "";
  return `event tap: sync on ${k.syncOn === "every-event" ? "every event" : "outputs"} · ${k.pipeline === false ? "stop-and-wait" : "pipelined"}`;
}

function latencyText(latency) {
  if (latency === "none" || latency === null) return "none";
  if (latency === "by-region") return "by region";
  if (typeof latency === "object" && typeof latency.rttMs === "number") {
    return `${ms(latency.rttMs)} round trip${typeof latency.mbps === "number" ? ` · ${latency.mbps} Mbps` : ""}`;
  }
  return String(latency);
}

/** The checkpoint crossing to the secondary while the guest runs on; else how long the last one took. */
function renderInFlight(m, now) {
  const box = $("in-flight");
  const sync = m.status?.sync;
  const f = m.inFlightNow(now);
  // An older server says nothing of flights: then neither does the page.
  const show = !!sync && m.status.mode !== "none" && (!!f || (typeof sync.lastFlightMs === "number" && sync.seq > 0));
  if (box.hidden === show) box.hidden = !show;
  if (!show) return;
  box.classList.toggle("flying", !!f);
  const what = box.querySelector(".what");
  if (f) {
    setText(what, `checkpoint #${f.seq} in flight · ${formatBytes(f.bytes)}, ${f.pages} pages · ${Math.round(f.ms)} ms so far — the guest runs on`);
  } else {
    setText(what, `checkpoint #${sync.seq} landed after ${ms(sync.lastFlightMs)} in flight (guest paused ${ms(Number(sync.lastPauseMs) || 0)})`);
  }
}

function fillCard(card, place, lines, links) {
  const f = (k) => card.querySelector(`[data-f="${k}"]`);
  const region = f("region");
  const code = place ? place.region ?? "?" : "—";
  const long = place ? REGION_NAMES[place.region] ?? "" : "";
  if (region.dataset.code !== code) {
    const b = document.createElement("b");
    b.textContent = code;
    const span = document.createElement("span");
    span.textContent = long;
    region.replaceChildren(b, " ", span);
    region.dataset.code = code;
  }
  setText(f("name"), place ? place.name : "no host");
  setText(f("facts"), lines.filter(Boolean).join("\n"));
  const list = f("links");
  const shown = links.map(describeLink);
  const key = JSON.stringify(shown);
  if (list.dataset.key !== key) {
    list.replaceChildren(
      ...shown.map((l) => {
        const li = document.createElement("li");
        li.classList.toggle("far", l.far);
        const b = document.createElement("b");
        b.textContent = l.ends;
        li.append(b, ` · ${l.cost}`);
        return li;
      }),
    );
    list.dataset.key = key;
  }
}

function renderRings(m) {
  const devices = m.status?.devices || [];
  const box = $("rings");
  const seen = new Set();
  for (const d of devices) {
    seen.add(d.port);
    let c = ringCanvases.get(d.port);
    if (!c) {
      const fig = document.createElement("figure");
      c = document.createElement("canvas");
      c.className = "ring";
      const cursors = document.createElement("div");
      cursors.className = "cursors";
      for (const k of ["req", "cons", "rsp"]) {
        const span = document.createElement("span");
        span.className = `c-${k}`;
        cursors.append(span);
      }
      const cap = document.createElement("figcaption");
      fig.append(c, cursors, cap);
      box.append(fig);
      ringCanvases.set(d.port, c);
    }
    drawRing(c, d);
    const [req, cons, rsp] = c.nextSibling.children;
    setText(req, `req ${d.reqProd}`);
    setText(cons, `cons ${d.reqCons}`);
    setText(rsp, `rsp ${d.rspProd}`);
    setText(c.nextSibling.nextSibling, `port ${d.port} · ring page ${d.ring / 4096} · ${d.requests} served by this host`);
  }
  for (const [port, c] of ringCanvases) {
    if (!seen.has(port)) {
      c.parentElement.remove();
      ringCanvases.delete(port);
    }
  }
  if (devices.length === 0 && !box.firstChild) box.textContent = "no devices bound yet";
  else if (devices.length > 0 && box.firstChild && box.firstChild.nodeType === 3) box.firstChild.remove();
}

function renderConsole(m) {
  const pre = $("console");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  setText(pre, m.consoleText);
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function renderPackets(m) {
  const ol = $("packets");
  const rows = m.packets.slice(-80).reverse();
  ol.replaceChildren(
    ...rows.map((p) => {
      const li = document.createElement("li");
      li.className = p.dir;
      const dir = document.createElement("span");
      dir.className = "dir";
      dir.textContent = p.dir === "out" ? `← #${p.index}` : "→ in";
      const body = document.createElement("span");
      body.className = "body";
      body.textContent = describePacket(p.bytes, p.dir);
      li.append(dir, body);
      return li;
    }),
  );
  setText($("packet-count"), `${m.packetsSeen} sent by the guest`);
}

function timelineText(m, w) {
  if (m.status?.mode === "none") return "mode none: no checkpoints";
  if (!w.syncs) return "no syncs in the last 30 s";
  const k = m.status?.mode === "kemari" ? m.status.kemari : null;
  const why = m.status?.mode === "remus" || (k && k.pipeline !== false)
    ? "the guest runs on while a checkpoint is in flight"
    : "stop-and-wait: the guest is paused while its checkpoint is in flight";
  return `last 30 s: ${count(w.syncs, "sync")} · on average the guest paused ${ms(w.pauseMs)}, the checkpoint was in flight ${ms(w.flightMs)} (${why})`;
}

function frame(now) {
  const m = app.model;
  if (m) {
    const ch = m.changed;
    const all = ch.has("all");
    for (const n of m.notices.splice(0)) {
      if (n.generation > lastGeneration) showTakeover(n);
    }
    lastGeneration = Math.max(lastGeneration, m.generation);
    if (all || ch.has("hosts") || ch.has("state")) renderHosts(m);
    renderInFlight(m, Date.now());
    if (all || ch.has("memory") || memoryFading) memoryFading = drawMemory($("memory-map"), m, Date.now());
    if (all || ch.has("rings")) renderRings(m);
    if (all || ch.has("timeline") || now - lastTimelineDraw > 100) {
      setText($("timeline-facts"), timelineText(m, drawTimeline($("timeline"), m, Date.now())));
      lastTimelineDraw = now;
    }
    if (all || ch.has("console")) renderConsole(m);
    if (all || ch.has("packets")) renderPackets(m);
    ch.clear();
  }
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
window.addEventListener("resize", () => app.model && app.model.touch("all"));

// ---- the guided demo ----

const demo = new Demo(app, {
  steps: $("demo-steps"),
  caption: $("demo-caption"),
  panel: $("demo"),
  start: $("demo-start"),
  stop: $("demo-stop"),
});
$("demo-start").addEventListener("click", () => void demo.run());
$("demo-stop").addEventListener("click", () => demo.stop("stopped"));

// ---- start ----

void loadExamples();
void refreshGuests();
window.setInterval(() => {
  if (document.visibilityState === "visible") void refreshGuests();
}, 5000);
const initial = window.location.hash.slice(1);
if (/^g-[0-9a-f]{12}$/.test(initial)) select(initial);

// For the browser tests and the curious: the page's state, read-only use.
window.kemari = { app, TIMELINE_MS };
