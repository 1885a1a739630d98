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
