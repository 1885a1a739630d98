// The new-guest form's protocol options: the link model, the witness's
// region, and in mode kemari the event tap's options. What does not apply to
// the chosen mode or latency is hidden and disabled, so it is never sent
// (kemari options in another mode would be a 400).

const LATENCY_HINTS = {
  none: "No delay added: the guest's objects talk as fast as this server lets them.",
  "by-region": "Typical round trips between the regions' cities (weur ⇄ enam: 80 ms), 1000 Mbps each way.",
  custom: "This round trip (and bandwidth) between any two of the guest's objects in different regions.",
};

/** The input a problem's `field` points at: the first prefix that matches (the specific ones first). */
const FIELD_INPUTS = [
  ["latency.rttMs", "rtt-ms"],
  ["latency.mbps", "mbps"],
  ["latency", "latency"],
  ["regions", "witness"],
  ["kemari.syncOn", "sync-on"],
  ["kemari.pipeline", "pipeline"],
  ["kemari", "mode"],
  ["heartbeat", "latency"],
  ["image", "asm"],
  ["mode", "mode"],
  ["name", "name"],
];

export function setupCreateForm($, regionNames) {
  const witness = $("witness");
  for (const [code, long] of Object.entries(regionNames)) {
    const o = new window.Option(code, code);
    o.title = long;
    witness.append(o);
  }

  function toggle(id, on) {
    const el = $(id);
    el.hidden = !on;
    el.disabled = !on;
  }

  function update() {
    const latency = $("latency").value;
    toggle("latency-custom", latency === "custom");
    toggle("kemari-options", $("mode").value === "kemari");
    $("latency-hint").textContent = LATENCY_HINTS[latency] ?? "";
  }

  let marked = [];
  function clearProblem() {
    for (const el of marked) el.removeAttribute("aria-invalid");
    marked = [];
  }

  $("mode").addEventListener("change", update);
  $("latency").addEventListener("change", update);
  $("create").addEventListener("input", clearProblem);
  $("create").addEventListener("change", clearProblem);
  update();

  return {
    /** The spec's link model, witness and tap options, for `mode`. */
    options(mode) {
      const out = {};
      const latency = $("latency").value;
      if (latency === "custom") {
        out.latency = { rttMs: $("rtt-ms").valueAsNumber };
        const mbps = $("mbps").valueAsNumber;
        if (Number.isFinite(mbps)) out.latency.mbps = mbps;
      } else if (latency === "by-region") out.latency = "by-region";
      if (witness.value) out.regions = { witness: witness.value };
      if (mode === "kemari") out.kemari = { syncOn: $("sync-on").value, pipeline: $("pipeline").value === "true" };
      return out;
    },
    /** Mark the input an API problem names (its message is shown as any error is). */
    markProblem(err) {
      clearProblem();
      const field = err && err.problem && typeof err.problem.field === "string" ? err.problem.field : "";
      const hit = FIELD_INPUTS.find(([prefix]) => field === prefix || field.startsWith(`${prefix}.`));
      const el = hit ? $(hit[1]) : null;
      if (!el || el.matches(":disabled") || el.closest("[hidden]")) return;
      el.setAttribute("aria-invalid", "true");
      marked.push(el);
    },
    clearProblem,
  };
}
