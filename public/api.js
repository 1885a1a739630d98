// The HTTP API, with the bearer token taken from the page (never from the URL).

export class ApiError extends Error {
  constructor(status, problem) {
    const p = typeof problem === "object" && problem ? problem : { title: String(problem || "") };
    let where = "";
    if (p.line !== undefined) where = ` (line ${p.line}${p.column !== undefined ? `, column ${p.column}` : ""})`;
    else if (p.field) where = ` (${p.field})`;
    super(`${p.title || `HTTP ${status}`}${p.detail && p.detail !== p.title ? `: ${p.detail}` : ""}${where}`);
    this.status = status;
    this.problem = p;
  }
}

export function makeApi(getToken) {
  async function request(method, path, { json, body, signal } = {}) {
    const headers = { authorization: `Bearer ${getToken()}` };
    let payload = body;
    if (json !== undefined) {
      headers["content-type"] = "application/json";
      payload = JSON.stringify(json);
    }
    const res = await fetch(`/api${path}`, { method, headers, body: payload, signal });
    if (res.status === 204) return null;
    const type = res.headers.get("content-type") || "";
    const data = type.includes("json") ? await res.json() : await res.text();
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }
  const g = (id) => `/guests/${encodeURIComponent(id)}`;
  return {
    examples: () => request("GET", "/examples"),
    // A page of guests, newest first; `next` is the following page's cursor (null at the end).
    guests: (cursor) => request("GET", `/guests?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`),
    create: (spec) => request("POST", "/guests", { json: spec }),
    status: (id, signal) => request("GET", g(id), { signal }),
    pause: (id) => request("POST", `${g(id)}/pause`),
    resume: (id) => request("POST", `${g(id)}/resume`),
    step: (id, instructions) => request("POST", `${g(id)}/step`, { json: { instructions } }),
    inbound: (id, bytes) => request("POST", `${g(id)}/inbound`, { body: bytes }),
    console: (id, from) => request("GET", `${g(id)}/console?from=${from}`),
    outbound: (id, from) => request("GET", `${g(id)}/outbound?from=${from}`),
    fault: (id, fault) => request("POST", `${g(id)}/faults`, { json: fault }),
    remove: (id) => request("DELETE", g(id)),
  };
}
