// Canvas drawings: the page map, the device rings and the sync timeline.
// Each is a pure function of the model and the time; the render loop calls
// them at most once per animation frame.

const PAGE_SIZE = 4096;
const RING_SLOTS = 64;
export const SENT_FADE_MS = 1200;
export const TIMELINE_MS = 30_000;

export const COLORS = {
  ink: "#111827",
  muted: "#4b5563",
  grid: "#d1d5db",
  clean: "#e5e7eb",
  dirty: "#f59e0b",
  sent: [37, 99, 235],
  cleanRgb: [229, 231, 235],
  ring: "#111827",
  req: "#1d4ed8",
  cons: "#ea580c",
  rsp: "#15803d",
  queued: "#93c5fd",
  inBackend: "#fdba74",
  answered: "#bbf7d0",
  empty: "#f3f4f6",
  pause: "#0f766e",
  flight: "#5eead4",
  bytes: "#64748b",
  full: "#db2777",
  fault: "#d97706",
  failure: "#dc2626",
  takeover: "#7c3aed",
  protected: "#16a34a",
};

/** Size a canvas's backing store to its CSS box (and an optional CSS height). */
export function fit(canvas, cssHeight) {
  const dpr = window.devicePixelRatio || 1;
  if (cssHeight !== undefined && canvas.style.height !== `${cssHeight}px`) canvas.style.height = `${cssHeight}px`;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round((cssHeight ?? canvas.clientHeight) * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w: w / dpr, h: h / dpr };
}

// ---- memory ----

export function memoryColumns(pages) {
  return 2 ** Math.ceil(Math.log2(Math.sqrt(2 * Math.max(1, pages))));
}

/** Returns true while some page is still fading from "just sent". */
export function drawMemory(canvas, model, now) {
  const pages = model.pages;
  const cols = memoryColumns(pages);
  const rows = Math.max(1, Math.ceil(pages / cols));
  const width = canvas.clientWidth || 600;
  const cell = Math.max(2, Math.min(28, Math.floor(width / cols)));
  const { ctx, w, h } = fit(canvas, rows * cell + 2);
  ctx.clearRect(0, 0, w, h);
  const gap = cell >= 8 ? 2 : cell >= 4 ? 1 : 0;
  const rings = new Set();
  for (const d of model.status?.devices || []) rings.add(Math.floor(d.ring / PAGE_SIZE));
  let fading = false;
  const [sr, sg, sb] = COLORS.sent;
  const [cr, cg, cb] = COLORS.cleanRgb;
  for (let p = 0; p < pages; p++) {
    const x = (p % cols) * cell + 1;
    const y = Math.floor(p / cols) * cell + 1;
    const age = now - model.sentAt[p];
    let color;
    if (model.dirty[p]) color = COLORS.dirty;
    else if (age < SENT_FADE_MS) {
      const k = age / SENT_FADE_MS;
      color = `rgb(${Math.round(sr + (cr - sr) * k)},${Math.round(sg + (cg - sg) * k)},${Math.round(sb + (cb - sb) * k)})`;
      fading = true;
    } else color = COLORS.clean;
    ctx.fillStyle = color;
    ctx.fillRect(x, y, cell - gap, cell - gap);
    if (rings.has(p) && cell >= 6) {
      ctx.strokeStyle = COLORS.ink;
      ctx.lineWidth = 2;
      ctx.strokeRect(x + 1, y + 1, cell - gap - 2, cell - gap - 2);
    }
  }
  return fading;
}

// ---- device rings ----

export function drawRing(canvas, dev) {
  const size = canvas.clientWidth || 220;
  const { ctx, w, h } = fit(canvas, size);
  ctx.clearRect(0, 0, w, h);
  const cx = w / 2;
  const cy = h / 2;
  const r = Math.min(w, h) / 2 - 16;
  const thick = Math.max(10, r * 0.22);
  const step = (2 * Math.PI) / RING_SLOTS;
  const angle = (i) => -Math.PI / 2 + (i + 0.5) * step;
  for (let s = 0; s < RING_SLOTS; s++) {
    // The newest request index that used this slot, if any.
    const back = (((dev.reqProd - 1 - s) % RING_SLOTS) + RING_SLOTS) % RING_SLOTS;
    const k = dev.reqProd - 1 - back;
    let color = COLORS.empty;
    if (k >= 0) {
      if (k >= dev.reqCons) color = COLORS.queued;
      else if (k >= dev.rspProd) color = COLORS.inBackend;
      else color = COLORS.answered;
    }
    ctx.beginPath();
    ctx.strokeStyle = color;
    ctx.lineWidth = thick;
    ctx.arc(cx, cy, r, angle(s) - step / 2 + 0.012, angle(s) + step / 2 - 0.012);
    ctx.stroke();
  }
  ctx.lineWidth = 1;
  ctx.strokeStyle = COLORS.grid;
  ctx.beginPath();
  ctx.arc(cx, cy, r + thick / 2, 0, 2 * Math.PI);
  ctx.stroke();
  ctx.beginPath();
  ctx.arc(cx, cy, r - thick / 2, 0, 2 * Math.PI);
  ctx.stroke();

  // Cursors: req_prod and rsp_prod (shared, in guest memory) outside the
  // ring, the backend's private req_cons inside it.
  pointer(ctx, cx, cy, r + thick / 2 + 2, angle(dev.reqProd % RING_SLOTS), COLORS.req, 1);
  pointer(ctx, cx, cy, r + thick / 2 + 2, angle(dev.rspProd % RING_SLOTS), COLORS.rsp, 1, dev.rspProd % RING_SLOTS === dev.reqProd % RING_SLOTS ? 9 : 0);
  pointer(ctx, cx, cy, r - thick / 2 - 2, angle(dev.reqCons % RING_SLOTS), COLORS.cons, -1);

  ctx.fillStyle = COLORS.ink;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.font = `700 ${Math.max(12, Math.round(r * 0.3))}px system-ui, sans-serif`;
  ctx.fillText(dev.kind, cx, cy);
}

function pointer(ctx, cx, cy, radius, a, color, outward, extra = 0) {
  const len = 12;
  const rr = radius + outward * extra;
  const tipX = cx + Math.cos(a) * rr;
  const tipY = cy + Math.sin(a) * rr;
  const baseR = rr + outward * len;
  const spread = 0.09 * (outward > 0 ? 1 : 1.6);
  ctx.beginPath();
  ctx.moveTo(tipX, tipY);
  ctx.lineTo(cx + Math.cos(a - spread) * baseR, cy + Math.sin(a - spread) * baseR);
  ctx.lineTo(cx + Math.cos(a + spread) * baseR, cy + Math.sin(a + spread) * baseR);
  ctx.closePath();
  ctx.fillStyle = color;
  ctx.fill();
}

// ---- timeline ----

/**
 * Each sync is a column: upwards the guest's pause (dark) in front of the
 * time its checkpoint was in flight (light; the same as the pause in
 * stop-and-wait), downwards the bytes sent. Returns what the window holds:
 * syncs, and their mean pause and flight (ms).
 */
export function drawTimeline(canvas, model, now) {
  const { ctx, w, h } = fit(canvas);
  ctx.clearRect(0, 0, w, h);
  const left = 88;
  const right = 10;
  const top = 82;
  const bottom = 22;
  const plotW = w - left - right;
  const mid = top + (h - top - bottom) * 0.55;
  const upH = mid - top - 2;
  const downH = h - bottom - mid - 2;
  const t0 = now - TIMELINE_MS;
  const colW = 4;
  const cols = Math.max(1, Math.floor(plotW / colW));
  const pause = new Float64Array(cols);
  const flight = new Float64Array(cols);
  const bytes = new Float64Array(cols);
  const full = new Uint8Array(cols);
  const syncs = model.syncs;
  let inWindow = 0;
  let samples = 0;
  let pauseSum = 0;
  let flightSum = 0;
  for (let i = syncs.length - 1; i >= 0; i--) {
    const s = syncs[i];
    if (s.t < t0) break;
    const c = Math.min(cols - 1, Math.floor(((s.t - t0) / TIMELINE_MS) * cols));
    if (c < 0) continue;
    inWindow += s.count || 1;
    const p = Number(s.pauseMs) || 0;
    // Older servers send no flight: it was the pause then (stop-and-wait).
    const f = Math.max(p, Number.isFinite(s.flightMs) ? s.flightMs : p);
    samples++;
    pauseSum += p;
    flightSum += f;
    if (p > pause[c]) pause[c] = p;
    if (f > flight[c]) flight[c] = f;
    bytes[c] += s.bytes;
    if (s.full) full[c] = 1;
  }
  let maxMs = 5;
  let maxBytes = 8192;
  for (let c = 0; c < cols; c++) {
    if (flight[c] > maxMs) maxMs = flight[c];
    if (bytes[c] > maxBytes) maxBytes = bytes[c];
  }
  maxMs = nice(maxMs);
  maxBytes = nice(maxBytes);

  // Axes and time ticks.
  ctx.font = "600 13px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  ctx.strokeStyle = COLORS.grid;
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(left, mid);
  ctx.lineTo(w - right, mid);
  ctx.stroke();
  ctx.fillStyle = COLORS.muted;
  ctx.textAlign = "right";
  ctx.fillText(`${maxMs} ms`, left - 6, top + 6);
  ctx.fillStyle = COLORS.pause;
  ctx.fillText("pause", left - 6, top + 22);
  ctx.fillStyle = "#0d9488";
  ctx.fillText("in flight", left - 6, top + 38);
  ctx.fillStyle = COLORS.muted;
  ctx.fillText(formatBytes(maxBytes), left - 6, h - bottom - 6);
  ctx.fillText("sent (log)", left - 6, h - bottom - 22);
  ctx.textAlign = "center";
  for (let s = 0; s <= TIMELINE_MS / 1000; s += 5) {
    const x = left + plotW - (s * 1000 * plotW) / TIMELINE_MS;
    ctx.strokeStyle = COLORS.grid;
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, h - bottom);
    ctx.stroke();
    ctx.fillText(s === 0 ? "now" : `−${s} s`, x, h - bottom / 2);
  }

  // Bars: the flight (light) with the pause (dark) in front, upwards; bytes downwards.
  for (let c = 0; c < cols; c++) {
    if (!pause[c] && !flight[c] && !bytes[c]) continue;
    const x = left + c * colW;
    const flying = Math.min(upH, (flight[c] / maxMs) * upH);
    const up = Math.max(2, Math.min(upH, (pause[c] / maxMs) * upH));
    const down = Math.max(2, (Math.log2(1 + bytes[c]) / Math.log2(1 + maxBytes)) * downH);
    if (flying > up) {
      ctx.fillStyle = COLORS.flight;
      ctx.fillRect(x, mid - flying, colW - 1, flying - up);
    }
    ctx.fillStyle = full[c] ? COLORS.full : COLORS.pause;
    ctx.fillRect(x, mid - up, colW - 1, up);
    ctx.fillStyle = full[c] ? COLORS.full : COLORS.bytes;
    ctx.fillRect(x, mid + 1, colW - 1, down);
  }

  // Markers: faults, failures, takeovers, re-protection.
  const lanes = [-Infinity, -Infinity, -Infinity, -Infinity];
  ctx.font = "700 14px system-ui, sans-serif";
  ctx.textAlign = "left";
  for (const m of model.markers) {
    if (m.t < t0 || m.t > now + 1000) continue;
    const x = left + Math.min(plotW, ((m.t - t0) / TIMELINE_MS) * plotW);
    const color = COLORS[m.kind] || COLORS.ink;
    ctx.strokeStyle = color;
    ctx.lineWidth = m.kind === "takeover" ? 3 : 2;
    ctx.setLineDash(m.kind === "fault" ? [5, 4] : []);
    ctx.beginPath();
    ctx.moveTo(x, top - 4);
    ctx.lineTo(x, h - bottom);
    ctx.stroke();
    ctx.setLineDash([]);
    const tw = ctx.measureText(m.label).width + 8;
    let useLane = lanes.findIndex((end) => x > end);
    if (useLane < 0) useLane = lanes.indexOf(Math.min(...lanes));
    const ty = 10 + useLane * 19;
    const tx = Math.min(x + 2, w - tw - 2);
    ctx.fillStyle = color;
    ctx.fillRect(tx, ty - 9, tw, 18);
    ctx.fillStyle = "#fff";
    ctx.fillText(m.label, tx + 4, ty);
    lanes[useLane] = tx + tw + 4;
  }

  return { syncs: inWindow, pauseMs: samples ? pauseSum / samples : 0, flightMs: samples ? flightSum / samples : 0 };
}

function nice(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export function formatMs(v) {
  return `${v >= 10 ? Math.round(v) : Math.round(v * 10) / 10} ms`;
}

/** One link of the guest, as a card lists it: "primary weur ⇄ secondary enam · 80 ms · 1000 Mbps". */
export function describeLink(l) {
  const ends = `${l.from} ${l.fromRegion ?? "?"} ⇄ ${l.to} ${l.toRegion ?? "?"}`;
  let cost;
  if (l.fromRegion && l.fromRegion === l.toRegion) cost = "same region";
  else if (!(l.rttMs > 0)) cost = "no delay modelled";
  else cost = `${formatMs(l.rttMs)}${typeof l.mbps === "number" ? ` · ${l.mbps} Mbps` : ""}`;
  return { ends, cost, far: l.rttMs > 0 };
}

export function formatBytes(n) {
  if (n < 1024) return `${Math.round(n)} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}
