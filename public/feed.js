// How the page hears about one guest: the live WebSocket event stream
// (src/events/messages.ts) when it is there, and polling of the HTTP API
// always, as the fallback. With the stream up, polling slows to a
// consistency check; without it, the page polls every 300 ms.

const FAST_MS = 300;
const SLOW_MS = 1000;
const ERROR_MS = 2000;

export class GuestFeed {
  /**
   * handlers: message(m) for stream messages, status(s), console({text,next}),
   * packets({packets,next}), transport(kind, detail), error(err).
   */
  constructor({ id, api, getToken, handlers }) {
    this.id = id;
    this.api = api;
    this.getToken = getToken;
    this.h = handlers;
    this.ws = null;
    this.live = false;
    this.stopped = true;
    this.retryMs = 1000;
    this.timers = new Set();
    this.consoleNext = 0;
    this.packetsNext = 0;
    this.outputsBusy = false;
    this.outputsAgain = false;
    this.outputsTimer = null;
  }

  start({ stream = true } = {}) {
    this.stopped = false;
    this.h.transport("polling", "connecting…");
    if (stream && typeof WebSocket !== "undefined") this.connect();
    else this.h.transport("polling", "stream off");
    void this.statusLoop();
    void this.outputsLoop();
  }

  stop() {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      try { ws.close(1000, "bye"); } catch { /* already closed */ }
    }
    this.live = false;
  }

  later(fn, ms) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.stopped) fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  // ---- the live stream ----

  connect() {
    const url = new URL(`/api/guests/${encodeURIComponent(this.id)}/events`, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.reconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: this.getToken() }));
    ws.onmessage = (e) => {
      if (this.ws !== ws) return;
      let m;
      try {
        m = JSON.parse(e.data);
      } catch {
        return;
      }
      if (!m || m.v !== 1 || typeof m.type !== "string") return;
      if (m.type === "snapshot") {
        this.live = true;
        this.retryMs = 1000;
        this.h.transport("live", "live event stream");
      }
      if (!this.live) return;
      this.h.message(m);
      if (m.type === "output") this.kickOutputs();
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.live = false;
      if (this.stopped) return;
      if (e.code === 4401) {
        this.h.transport("polling", "the stream refused the token");
        return; // a new token restarts the feed
      }
      if (e.code === 4404) {
        this.h.transport("polling", "no such guest");
        return;
      }
      this.h.transport("polling", "stream unavailable, polling");
      this.reconnect();
    };
  }

  reconnect() {
    const ms = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 15000);
    this.later(() => this.connect(), ms);
  }

  // ---- polling ----

  async statusLoop() {
    if (this.stopped) return;
    let wait = this.live ? SLOW_MS : FAST_MS;
    try {
      const s = await this.api.status(this.id);
      if (!this.stopped) this.h.status(s, { live: this.live });
    } catch (err) {
      wait = ERROR_MS;
      if (!this.stopped) this.h.error(err);
    }
    this.later(() => this.statusLoop(), wait);
  }

  /** An output event arrived: fetch what the outside world saw, soon. */
  kickOutputs() {
    if (this.outputsBusy) {
      this.outputsAgain = true;
      return;
    }
    if (this.outputsTimer) {
      clearTimeout(this.outputsTimer);
      this.timers.delete(this.outputsTimer);
    }
    this.outputsTimer = this.later(() => this.outputsLoop(), 30);
  }

  async outputsLoop() {
    if (this.stopped) return;
    this.outputsTimer = null;
    this.outputsBusy = true;
    let wait = this.live ? SLOW_MS : FAST_MS;
    try {
      const [c, p] = await Promise.all([this.api.console(this.id, this.consoleNext), this.api.outbound(this.id, this.packetsNext)]);
      if (this.stopped) return;
      if (c.next !== this.consoleNext) {
        this.consoleNext = c.next;
        this.h.console(c);
      }
      if (p.next !== this.packetsNext) {
        this.packetsNext = p.next;
        this.h.packets(p);
      }
    } catch (err) {
      wait = ERROR_MS;
      if (!this.stopped) this.h.error(err);
    } finally {
      this.outputsBusy = false;
    }
    if (this.outputsAgain) {
      this.outputsAgain = false;
      wait = 30;
    }
    this.outputsTimer = this.later(() => this.outputsLoop(), wait);
  }
}
