// The picture of one guest that the page draws: fed by stream messages and
// by polled status, console and packets. It only records what changed (in
// `changed`); the render loop draws at most once per animation frame.

const MAX_SYNCS = 20000;
const KEEP_MS = 120_000;
const MAX_MARKERS = 300;
const MAX_PACKETS = 400;
const MAX_CONSOLE = 100_000;

export class GuestModel {
  constructor(id) {
    this.id = id;
    this.status = null;
    this.generation = -1;
    this.pages = 0;
    this.dirty = new Uint8Array(0);
    this.sentAt = new Float64Array(0);
    /** The stream lists dirty pages; polled status only counts them. */
    this.dirtyKnown = false;
    this.syncs = [];
    this.markers = [];
    this.markerKeys = new Set();
    this.consoleText = "";
    this.packets = [];
    this.packetsSeen = 0;
    this.notices = [];
    this.changed = new Set(["all"]);
    /** Client clock minus server clock (plus the least latency seen). */
    this.skew = null;
    this.polledSync = null;
    this.lastProtection = null;
    /** The newest checkpoint the stream saw acknowledged ({generation, seq}). */
    this.acked = null;
    /** When the status's sync.inFlight was read (this page's clock). */
    this.inFlightAt = 0;
  }

  touch(...parts) {
    for (const p of parts) this.changed.add(p);
  }

  /** Server time → this page's clock. */
  local(t) {
    return t + (this.skew ?? 0);
  }

  ensurePages(n) {
    if (n === this.pages) return;
    this.pages = n;
    this.dirty = new Uint8Array(n);
    this.sentAt = new Float64Array(n);
    this.touch("memory");
  }

  // ---- polled status ----

  applyStatus(s, { live = false } = {}) {
    // A poll answered before a takeover the stream has already shown: stale.
    if (s.generation < this.generation) return;
    const prev = this.status;
    this.status = s;
    if (!Array.isArray(s.links)) s.links = [];
    if (s.sync) {
      // A status from before these fields: nothing known in flight.
      const f = s.sync.inFlight;
      const acked = this.acked && this.acked.generation === s.generation ? this.acked.seq : -1;
      s.sync.inFlight = f && typeof f.seq === "number" && f.seq > acked ? f : null;
      if (s.sync.inFlight) this.inFlightAt = Date.now();
    }
    this.ensurePages(s.memoryPages || 0);
    this.noteGeneration(s.generation, s.failovers?.[s.failovers.length - 1] ?? null);
    for (const f of s.failovers || []) {
      this.addMarker(`failure:${f.from.name}`, this.local(f.at), "failure", `✖ ${short(f.from)}`);
      if (f.takeoverMs >= 0) this.addMarker(`takeover:${f.generation}`, this.local(f.at + f.takeoverMs), "takeover", `takeover → gen ${f.generation}`);
    }
    if (s.protection === "protected" && this.lastProtection && this.lastProtection !== "protected" && s.hosts.secondary) {
      this.addMarker(`protected:${s.generation}:${s.hosts.secondary.name}`, Date.now(), "protected", `protected: ${short(s.hosts.secondary)}`);
    }
    this.lastProtection = s.protection;
    if (s.sync) {
      const key = `${s.generation}:${s.sync.seq}`;
      if (!live && this.polledSync && key !== this.polledSync.key && s.sync.last) {
        // Polling sees only the last sync of those since the previous poll.
        const last = s.sync.last;
        const count = Math.max(1, s.sync.syncs - (this.polledSync.generation === s.generation ? this.polledSync.syncs : 0));
        const flightMs = s.sync.lastFlightMs ?? s.sync.lastPauseMs;
        this.addSync({ t: Date.now(), generation: s.generation, seq: s.sync.seq, pauseMs: s.sync.lastPauseMs, flightMs, bytes: last.sentBytes, pages: last.pages, full: last.full, count });
        this.markSent(last.sentPages || [], last.full, Date.now());
        this.dirty.fill(0);
      }
      this.polledSync = { key, syncs: s.sync.syncs, generation: s.generation };
    }
    if (!this.dirtyKnown && s.dirtyPages === 0) this.dirty.fill(0);
    if (!prev || prev.state !== s.state) this.touch("state");
    this.touch("hosts", "rings", "memory");
  }

  noteGeneration(generation, record) {
    if (generation === undefined || generation <= this.generation) return;
    const first = this.generation < 0;
    this.generation = generation;
    if (!first) {
      this.notices.push({ generation, from: record?.from ?? null, to: record?.to ?? null, takeoverMs: record?.takeoverMs ?? null, reason: record?.reason ?? "" });
      this.sentAt.fill(0);
      this.dirty.fill(0);
    }
    this.touch("hosts", "state");
  }

  // ---- the live stream ----

  applyMessage(m, replay = false) {
    if (!replay) {
      const d = Date.now() - m.t;
      if (this.skew === null || d < this.skew) this.skew = d;
    }
    switch (m.type) {
      case "snapshot": {
        this.applyStatus(m.status, { live: true });
        this.ensurePages(m.memory.pages);
        this.dirty.fill(0);
        for (const p of m.memory.dirty) if (p < this.pages) this.dirty[p] = 1;
        this.dirtyKnown = true;
        for (const e of m.timeline) this.applyMessage(e, true);
        this.markSent(m.memory.sent, false, Date.now());
        this.touch("all");
        return;
      }
      case "sync": {
        if (m.generation < this.generation) return;
        const t = this.local(m.t);
        // Older servers send no flightMs: stop-and-wait, the flight was the pause.
        const flightMs = typeof m.flightMs === "number" ? m.flightMs : m.pauseMs;
        this.addSync({ t, generation: m.generation, seq: m.seq, pauseMs: m.pauseMs, flightMs, bytes: m.bytes, pages: m.pages, full: m.full, count: 1 });
        if (replay) return;
        this.dirty.fill(0);
        this.markSent(m.sent, m.full && m.sent.length < m.pages, Date.now());
        const a = this.acked;
        if (!a || m.generation > a.generation || (m.generation === a.generation && m.seq > a.seq)) this.acked = { generation: m.generation, seq: m.seq };
        const s = this.status;
        if (s && s.sync && m.generation === s.generation) {
          s.sync.seq = Math.max(s.sync.seq, m.seq);
          s.sync.lastPauseMs = m.pauseMs;
          s.sync.lastFlightMs = flightMs;
          // The checkpoint that was in flight has landed.
          if (s.sync.inFlight && s.sync.inFlight.seq <= m.seq) s.sync.inFlight = null;
          s.sync.syncs += 1;
          s.sync.bytesSent += m.bytes;
        }
        this.touch("hosts");
        return;
      }
      case "guest": {
        if (replay || m.generation < this.generation) return;
        const s = this.status;
        if (s) {
          s.state = m.state;
          s.pc = m.pc;
          s.instructions = m.instructions;
          s.devices = m.devices;
          s.dirtyPages = m.dirty.length;
        }
        this.dirty.fill(0);
        for (const p of m.dirty) if (p < this.pages) this.dirty[p] = 1;
        this.dirtyKnown = true;
        this.touch("memory", "rings", "hosts", "state");
        return;
      }
      case "output":
        return;
      case "fault": {
        const where = m.at && m.at !== "now" ? ` @ ${m.at}` : "";
        const label = m.kind === "heal" ? "heal" : `${m.kind === "partition" ? "cut" : "crash"} ${m.target}${where}`;
        this.addMarker(`fault:${m.t}:${m.kind}:${m.target}`, this.local(m.t), "fault", label);
        return;
      }
      case "failure": {
        this.addMarker(`failure:${m.host.name}`, this.local(m.t), "failure", `✖ ${short(m.host)}`);
        if (!replay && this.status && this.status.protection !== "unprotected") {
          this.status.protection = "failing-over";
          this.touch("hosts");
        }
        return;
      }
      case "takeover": {
        this.addMarker(`takeover:${m.generation}`, this.local(m.t), "takeover", `takeover → gen ${m.generation}`);
        if (replay) {
          this.generation = Math.max(this.generation, m.generation);
          return;
        }
        const s = this.status;
        if (s && m.generation > s.generation) {
          s.generation = m.generation;
          s.hosts = { primary: m.to, secondary: null };
          s.protection = "reprotecting";
          // The old links and flight went with the old primary; the next poll brings the new ones.
          s.links = [];
          if (s.sync) s.sync.inFlight = null;
        }
        this.noteGeneration(m.generation, { from: m.from, to: m.to, takeoverMs: m.takeoverMs, reason: "" });
        return;
      }
      case "protected": {
        this.addMarker(`protected:${m.generation}:${m.secondary.name}`, this.local(m.t), "protected", `protected: ${short(m.secondary)}`);
        const s = this.status;
        if (!replay && s && m.generation === s.generation) {
          s.hosts = { ...s.hosts, secondary: m.secondary };
          s.protection = "protected";
          this.lastProtection = "protected";
          this.touch("hosts");
        }
        return;
      }
      default:
        return; // a newer kind of event: ignored
    }
  }

  /** The checkpoint on its way to the secondary now, if any: {seq, bytes, pages, ms}. */
  inFlightNow(now = Date.now()) {
    const f = this.status?.sync?.inFlight;
    if (!f) return null;
    const since = Number(f.sinceMs) || 0;
    return { seq: f.seq, bytes: Number(f.bytes) || 0, pages: Number(f.pages) || 0, ms: since + Math.max(0, now - this.inFlightAt) };
  }

  // ---- pieces ----

  addSync(sample) {
    this.syncs.push(sample);
    if (this.syncs.length > MAX_SYNCS) this.syncs.splice(0, this.syncs.length - MAX_SYNCS);
    const cutoff = Date.now() - KEEP_MS;
    if (this.syncs.length > 1000 && this.syncs[0].t < cutoff) {
      let i = 0;
      while (i < this.syncs.length && this.syncs[i].t < cutoff) i++;
      this.syncs.splice(0, i);
    }
    this.touch("timeline");
  }

  addMarker(key, t, kind, label) {
    if (this.markerKeys.has(key)) return;
    this.markerKeys.add(key);
    this.markers.push({ t, kind, label });
    this.markers.sort((a, b) => a.t - b.t);
    if (this.markers.length > MAX_MARKERS) this.markers.splice(0, this.markers.length - MAX_MARKERS);
    this.touch("timeline");
  }

  markSent(pages, all, now) {
    if (all) this.sentAt.fill(now);
    else for (const p of pages) if (p < this.pages) this.sentAt[p] = now;
    this.touch("memory");
  }

  addConsole(text) {
    this.consoleText += text;
    if (this.consoleText.length > MAX_CONSOLE) this.consoleText = this.consoleText.slice(-MAX_CONSOLE / 2);
    this.touch("console");
  }

  addPacket(p) {
    if (p.dir === "out") this.packetsSeen++;
    this.packets.push(p);
    if (this.packets.length > MAX_PACKETS) this.packets.splice(0, this.packets.length - MAX_PACKETS);
    this.touch("packets");
  }
}

export function short(place) {
  if (!place) return "—";
  const name = place.name.includes("/") ? place.name.slice(place.name.lastIndexOf("/") + 1) : place.name;
  return place.region ? `${name} (${place.region})` : name;
}
