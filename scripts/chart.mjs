// The mode comparison as an SVG chart (no dependencies): throughput relative
// to mode none for each batch workload, and output latency for the service.
const COLORS = { none: "#9aa5b1", kemari: "#1f77b4", remus: "#d62728" };
const esc = (s) => String(s).replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]);

export function chart(results) {
  const modes = ["none", "kemari", "remus"];
  const batch = [...new Set(results.filter((r) => r.throughputRatio !== null).map((r) => r.workload))];
  const service = results.filter((r) => r.latencyP50 !== null);
  const W = 900;
  const rowH = 46;
  const left = 300;
  const plotW = W - left - 40;
  const maxRatio = Math.max(1.2, ...results.map((r) => r.throughputRatio ?? 0));
  const x = (v) => left + (Math.min(v, maxRatio) / maxRatio) * (plotW - 50);
  const top1 = 70;
  const h1 = batch.length * rowH;
  const top2 = top1 + h1 + 90;
  const maxLat = Math.max(1, ...service.map((r) => r.latencyP99));
  const xl = (v) => left + (v / maxLat) * (plotW - 130); // room for the label
  const H = top2 + service.length * 28 + 60;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="13">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="20" y="28" font-size="18" font-weight="600">Kemari vs Remus vs unprotected, same guests, one run</text>`);
  out.push(`<text x="20" y="${top1 - 14}" font-weight="600">Throughput relative to mode none (higher is better)</text>`);
  modes.forEach((m, i) => {
    out.push(`<rect x="${W - 300 + i * 95}" y="14" width="12" height="12" fill="${COLORS[m]}"/><text x="${W - 284 + i * 95}" y="25">${m}</text>`);
  });
  batch.forEach((w, i) => {
    const y = top1 + i * rowH;
    out.push(`<text x="${left - 10}" y="${y + 24}" text-anchor="end">${esc(w)}</text>`);
    modes.forEach((m, j) => {
      const r = results.find((q) => q.workload === w && q.mode === m);
      if (!r) return;
      const by = y + 6 + j * 12;
      out.push(`<rect x="${left}" y="${by}" width="${Math.max(1, x(r.throughputRatio) - left)}" height="10" fill="${COLORS[m]}"/>`);
      out.push(`<text x="${x(r.throughputRatio) + 4}" y="${by + 9}" font-size="10">${r.throughputRatio.toFixed(2)}×</text>`);
    });
  });
  out.push(`<line x1="${x(1)}" y1="${top1}" x2="${x(1)}" y2="${top1 + h1}" stroke="#333" stroke-dasharray="4 3"/>`);
  out.push(`<text x="${x(1)}" y="${top1 + h1 + 14}" text-anchor="middle" font-size="11">1× = none</text>`);
  out.push(`<text x="20" y="${top2 - 14}" font-weight="600">Output latency of the counter service, request sent → reply seen (ms; bar p50, whisker p99)</text>`);
  service.forEach((r, i) => {
    const y = top2 + i * 28;
    out.push(`<text x="${left - 10}" y="${y + 14}" text-anchor="end">${esc(r.mode)}</text>`);
    out.push(`<rect x="${left}" y="${y + 4}" width="${Math.max(1, xl(r.latencyP50) - left)}" height="14" fill="${COLORS[r.mode]}"/>`);
    out.push(`<line x1="${xl(r.latencyP50)}" y1="${y + 11}" x2="${xl(r.latencyP99)}" y2="${y + 11}" stroke="#333"/>`);
    out.push(`<line x1="${xl(r.latencyP99)}" y1="${y + 5}" x2="${xl(r.latencyP99)}" y2="${y + 17}" stroke="#333"/>`);
    out.push(`<text x="${xl(r.latencyP99) + 6}" y="${y + 15}" font-size="11">p50 ${r.latencyP50} · p99 ${r.latencyP99}</text>`);
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/**
 * Reply latency and throughput against the round trip between primary and
 * secondary, one line per mode: two panels side by side.
 */
export function sweepChart(sweep) {
  const modes = ["none", "kemari", "remus"];
  const rtts = [...new Set(sweep.map((s) => s.rttMs))].sort((a, b) => a - b);
  const W = 900;
  const H = 380;
  const panelW = 360;
  const top = 60;
  const plotH = 240;
  const maxLat = Math.max(10, ...sweep.map((s) => s.p50)) * 1.1;
  const maxThru = Math.max(1.1, ...sweep.map((s) => s.throughput)) * 1.05;
  const maxRtt = Math.max(...rtts);
  const panel = (left, title, value, max, unit) => {
    const x = (rtt) => left + (rtt / maxRtt) * panelW;
    const y = (v) => top + plotH - (v / max) * plotH;
    let svg = `<text x="${left}" y="${top - 14}" font-size="14" font-weight="bold">${esc(title)}</text>`;
    svg += `<line x1="${left}" y1="${top + plotH}" x2="${left + panelW}" y2="${top + plotH}" stroke="#333"/><line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#333"/>`;
    for (const r of rtts) svg += `<text x="${x(r)}" y="${top + plotH + 18}" font-size="11" text-anchor="middle">${r} ms</text>`;
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4;
      svg += `<text x="${left - 6}" y="${y(v) + 4}" font-size="11" text-anchor="end">${v.toFixed(max < 10 ? 1 : 0)}${unit}</text>`;
    }
    for (const m of modes) {
      const pts = sweep.filter((s) => s.mode === m).sort((a, b) => a.rttMs - b.rttMs);
      if (pts.length === 0) continue;
      svg += `<polyline fill="none" stroke="${COLORS[m]}" stroke-width="2.5" points="${pts.map((p) => `${x(p.rttMs)},${y(value(p))}`).join(" ")}"/>`;
      for (const p of pts) svg += `<circle cx="${x(p.rttMs)}" cy="${y(value(p))}" r="3.5" fill="${COLORS[m]}"><title>${esc(`${m} at ${p.rttMs} ms: ${value(p).toFixed(2)}`)}</title></circle>`;
    }
    return svg;
  };
  let body = panel(70, "counter service: reply latency p50", (p) => p.p50, maxLat, " ms");
  body += panel(510, "workload.s: throughput / mode none", (p) => p.throughput, maxThru, "x");
  let lx = 70;
  for (const m of modes) {
    body += `<rect x="${lx}" y="${H - 30}" width="14" height="14" fill="${COLORS[m]}"/><text x="${lx + 20}" y="${H - 19}" font-size="13">${m}</text>`;
    lx += 110;
  }
  body += `<text x="${lx + 20}" y="${H - 19}" font-size="12" fill="#555">x axis: round trip between primary and secondary (witness with the primary)</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif"><rect width="${W}" height="${H}" fill="white"/>${body}</svg>\n`;
}
