/**
 * The cost meter (durable-objects/meter.ts): what the bench's cost table is
 * made of must count what Cloudflare bills — and the table's one finding
 * that is a fix, a protected guest waiting for input keeps no object awake,
 * is held here.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import echo from "../guests/echo.s?raw";
import { Meter } from "../durable-objects/meter.ts";
import type { MeterReading } from "../durable-objects/meter.ts";
import { decodeMessage, type StreamMessage } from "../src/events/messages.ts";
import { call, client, createGuest, status, TOKEN, waitFor } from "./helpers/api.ts";
import { sleep, SPIN } from "./helpers/guests.ts";

const fakeId = (s: string) => ({ toString: () => s }) as unknown as DurableObjectId;

describe("Meter", () => {
  it("counts requests, alarms and WebSocket messages apart, and a request's payload", async () => {
    const m = new Meter();
    expect(m.request("request", 10, () => 1)).toBe(1);
    await m.request("alarm", 0, async () => undefined);
    m.request("ws", 3, () => undefined);
    expect(() => m.request("request", 7, () => { throw new Error("refused"); })).toThrow("refused");
    const r = m.reading(0);
    expect([r.requests, r.alarms, r.wsMessages, r.largestRequestBytes]).toEqual([3, 1, 1, 10]);
    expect(r.peakRequestsPerSecond).toBeGreaterThanOrEqual(1);
  });

  it("is active while a request is in flight or a timer pending, and not once a cancelled wait is gone", async () => {
    const m = new Meter();
    let release!: () => void;
    const pending = m.request("request", 0, () => new Promise<void>((resolve) => (release = resolve)));
    await sleep(30);
    release();
    await pending;
    const afterRequest = m.reading(0).activeMs;
    expect(afterRequest).toBeGreaterThanOrEqual(20);
    await sleep(40);
    expect(m.reading(0).activeMs).toBe(afterRequest); // nothing in flight: not active

    const cancel = new AbortController();
    const never = m.sleep(10_000, cancel.signal).then(() => "woke");
    await sleep(20);
    cancel.abort();
    const atCancel = m.reading(0).activeMs;
    await sleep(40);
    expect(m.reading(0).activeMs).toBe(atCancel);
    expect(await Promise.race([never, sleep(10).then(() => "still asleep")])).toBe("still asleep");
  });

  it("goes on counting for an object that comes back after hibernating (the same id, a new instance)", async () => {
    const a = Meter.of(fakeId("object-a"));
    a.request("request", 0, () => undefined);
    // The old instance dies with a request in flight (an abort): it never settles.
    void a.request("request", 0, () => new Promise(() => undefined));
    expect(Meter.of(fakeId("object-a"))).toBe(a);
    expect(a.reading(0).requests).toBe(2);
    const active = a.reading(0).activeMs;
    await sleep(30);
    expect(a.reading(0).activeMs).toBe(active); // what the dead instance had in flight no longer counts
    Meter.forget(fakeId("object-a"));
    expect(Meter.of(fakeId("object-a"))).not.toBe(a);
  });
});

describe("the objects' meters", () => {
  const switchOf = (id: string) => env.SWITCH.get(env.SWITCH.idFromName(id));
  const hostOf = (name: string) => env.HOST.get(env.HOST.idFromName(name));

  it("count each call into an object once, and the rows it writes", async () => {
    const g = await createGuest({ asm: echo }, { mode: "kemari" });
    const s = await waitFor(g.id, (x) => x.state === "waiting");
    const sw0 = await switchOf(g.id).benchMeter();
    const p0 = await hostOf(s.hosts.primary.name).benchMeter();
    await status(g.id); // the API asks the switch, which asks the primary
    const sw1 = await switchOf(g.id).benchMeter();
    const p1 = await hostOf(s.hosts.primary.name).benchMeter();
    // Heartbeats may land in between: at most one of them (an alarm at the switch, a ping at the primary).
    expect(sw1.requests - sw0.requests - (sw1.alarms - sw0.alarms)).toBe(1);
    expect(p1.requests - p0.requests).toBeGreaterThanOrEqual(1);
    expect(p1.requests - p0.requests).toBeLessThanOrEqual(2);
    expect(sw1.storageBytes).toBeGreaterThan(0);
    expect(sw1.rowsWritten).toBeGreaterThan(0); // the guest's meta, its alarms
    await client.remove(g.id);
  });

  it("a protected guest waiting for input keeps neither its switch nor its primary awake", async () => {
    const g = await createGuest({ asm: echo }, { mode: "kemari" });
    const s = await waitFor(g.id, (x) => x.state === "waiting");
    await sleep(2500); // its idle save taken, heartbeats at the idle rate (1 s)
    const objects = [switchOf(g.id), hostOf(s.hosts.primary.name)];
    const before: MeterReading[] = await Promise.all(objects.map((o) => o.benchMeter()));
    await sleep(3000);
    const after: MeterReading[] = await Promise.all(objects.map((o) => o.benchMeter()));
    const seconds = (after[0].at - before[0].at) / 1000;
    for (let i = 0; i < objects.length; i++) {
      const active = (after[i].activeMs - before[i].activeMs) / 1000 / seconds;
      // Each ping is answered in about a millisecond; the wait for its answer must not outlive it.
      expect(active, ["switch", "primary"][i]).toBeLessThan(0.2);
    }
    const requests = after.reduce((n, r, i) => n + r.requests - before[i].requests, 0) / seconds;
    expect(requests).toBeGreaterThan(0.5); // it is watched...
    expect(requests).toBeLessThanOrEqual(2.5); // ...at the idle rate: an alarm and a ping a second
    await client.remove(g.id);
  });

  it("a running guest nobody watches sends its switch no routine events; a dashboard that joins gets them at once", async () => {
    const g = await createGuest({ asm: SPIN }, { mode: "none" });
    await sleep(1000); // its first batch said nobody watches
    const sw = switchOf(g.id);
    const a = await sw.benchMeter();
    await sleep(2000);
    const b = await sw.benchMeter();
    // A batch every 100 ms would be ten a second.
    expect((b.requests - a.requests) / ((b.at - a.at) / 1000)).toBeLessThan(1);

    const res = await call("GET", `/api/guests/${g.id}/events`, { headers: { upgrade: "websocket" } });
    const ws = res.webSocket!;
    ws.accept();
    const states: number[] = [];
    ws.addEventListener("message", (e) => {
      const m: StreamMessage = decodeMessage(e.data as string);
      if (m.type === "guest") states.push(Date.now());
    });
    ws.send(JSON.stringify({ type: "auth", token: TOKEN }));
    await sleep(1000);
    ws.close(1000, "done");
    expect(states.length).toBeGreaterThanOrEqual(3); // the guest as it runs, every 100 ms or so
    await client.remove(g.id);
  });
});
