/**
 * Upgrades: a deploy restarts every host over what the previous version
 * stored. A secondary's acknowledged copy stored in replica format 1 (the
 * copy's disk sectors in the `disk` table, one row per page) is read by this
 * version (format 2: versioned rows, the copy's disk in `replica_disk` apart
 * from the live disk), so no acknowledged checkpoint is lost. (Checkpoint frames are never stored: they only cross the network
 * between two hosts of the same version.)
 */
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { Replica } from "../src/kemari/replica.ts";
import { Replicator, type SyncReply } from "../src/kemari/replicator.ts";
import { PAGE_SIZE } from "../src/guest/memory.ts";
import { captureMachine, machineToJson } from "../src/kemari/state.ts";
import { Machine } from "../src/guest/machine.ts";
import { REPLICA_FORMAT, SqlReplicaStore } from "../durable-objects/replica-store.ts";

/** The copy's pages as a map: the store's entries applied in order (a later one replaces; null: all zero). */
function pagesOf(copy: { pages: Iterable<[number, Uint8Array | null]> }): Map<number, Uint8Array> {
  const map = new Map<number, Uint8Array>();
  for (const [p, data] of copy.pages) {
    if (data) map.set(p, data);
    else map.delete(p);
  }
  return map;
}

describe("upgrades", () => {
  it("reads an acknowledged copy stored in replica format 1 and moves its disk apart from the live disk", async () => {
    const stub = env.HOST.get(env.HOST.idFromName("upgrade/host-1"));
    await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      // Exactly what the format-1 store wrote (durable-objects/replica-store.ts before 2026-12).
      for (const t of ["replica_pages", "replica_disk", "replica_meta", "replica_outputs"]) sql.exec(`DROP TABLE IF EXISTS ${t}`);
      sql.exec("CREATE TABLE IF NOT EXISTS replica_pages (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)");
      sql.exec("CREATE TABLE IF NOT EXISTS replica_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
      sql.exec("CREATE TABLE IF NOT EXISTS disk (sector INTEGER PRIMARY KEY, data BLOB NOT NULL)");
      sql.exec("CREATE TABLE IF NOT EXISTS replica_outputs (seq INTEGER PRIMARY KEY, device TEXT NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL)");
      const m = new Machine(16);
      m.cpu.pc = 0x123;
      m.cpu.instret = 4567;
      const page = new Uint8Array(4096).fill(7);
      const sector = new Uint8Array(512).fill(9);
      sql.exec("DELETE FROM replica_pages");
      sql.exec("DELETE FROM disk");
      sql.exec("INSERT INTO replica_pages (idx, data) VALUES (?, ?)", 3, page);
      sql.exec("INSERT INTO disk (sector, data) VALUES (?, ?)", 5, sector);
      sql.exec("INSERT OR REPLACE INTO replica_outputs (seq, device, idx, data) VALUES (0, 'console', 2, ?)", new TextEncoder().encode("held"));
      const meta = { seq: 11, generation: 0, memoryPages: 16, diskSectors: 64, machine: machineToJson(captureMachine(m)) };
      sql.exec("INSERT OR REPLACE INTO replica_meta (k, v) VALUES ('replica', ?)", JSON.stringify(meta));

      const store = new SqlReplicaStore(state.storage);
      const replica = new Replica(store, 0);
      expect(replica.seq).toBe(11);
      expect(replica.meta!.machine.pc).toBe(0x123);
      expect(replica.meta!.machine.instret).toBe(4567);
      expect(replica.memory!.subarray(3 * 4096, 4 * 4096)).toEqual(page);
      expect(replica.outputs.map((o) => new TextDecoder().decode(o.data))).toEqual(["held"]);
      // The copy's sector is now in replica_disk, and the format recorded.
      expect(store.sectorsHeld()).toBe(1);
      const v = JSON.parse(sql.exec<{ v: string }>("SELECT v FROM replica_meta").one().v) as { format: number };
      expect(v.format).toBe(REPLICA_FORMAT);
      // A takeover makes that disk the live one.
      sql.exec("DELETE FROM disk");
      store.adoptDisk();
      expect(new Uint8Array(sql.exec<{ data: ArrayBuffer }>("SELECT data FROM disk WHERE sector = 5").one().data)).toEqual(sector);
    });
  });

  it("stages a checkpoint's frames in versions the copy does not read until its commit switches over", async () => {
    const stub = env.HOST.get(env.HOST.idFromName("versions/host-1"));
    await runInDurableObject(stub, (_instance, state) => {
      const page = (v: number) => new Uint8Array(4096).fill(v);
      const meta = (seq: number) => ({ seq, generation: 0, memoryPages: 16, diskSectors: 64, machine: captureMachine(new Machine(16)) });
      const store = new SqlReplicaStore(state.storage);
      // Checkpoint 1, full, in one frame.
      store.commit({ full: true, pages: [[1, page(1)], [2, page(1)]], sectors: [[3, new Uint8Array(512).fill(1)]], outputs: [], meta: meta(1) });
      // Checkpoint 2, incremental, staged in two frames and never committed (torn).
      store.stage(true, [[1, page(2)]], []);
      store.stage(false, [[2, null]], [[3, new Uint8Array(512).fill(2)]]);
      const reopened = new SqlReplicaStore(state.storage);
      const pages = pagesOf(reopened.load()!);
      expect([...pages.keys()].sort()).toEqual([1, 2]);
      expect(pages.get(1)![0]).toBe(1);
      // Checkpoint 2 sent again whole, and committed: page 2 is zero now, page 1 and sector 3 new.
      reopened.stage(true, [[1, page(3)]], []);
      reopened.stage(false, [[2, null]], [[3, new Uint8Array(512).fill(3)]]);
      reopened.commit({ full: false, pages: [], sectors: [], outputs: [], meta: meta(2), staged: true });
      const after = new SqlReplicaStore(state.storage).load()!;
      expect(after.meta.seq).toBe(2);
      const p2 = pagesOf(after);
      expect([...p2.keys()]).toEqual([1]);
      expect(p2.get(1)![0]).toBe(3);
      reopened.adoptDisk();
      expect(new Uint8Array(state.storage.sql.exec<{ data: ArrayBuffer }>("SELECT data FROM disk WHERE sector = 3").one().data)[0]).toBe(3);
      // Superseded rows are gone: one row per page and sector the copy holds, plus page 2's zero marker.
      expect(state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM replica_pages").one().n).toBe(2);
      expect(state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM replica_disk").one().n).toBe(1);
    });
  });

  it("cleans up superseded rows a bounded batch per write, never all at one commit, and carries on after a restart", async () => {
    const stub = env.HOST.get(env.HOST.idFromName("cleanup/host-1"));
    await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      const rows = () => sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM replica_pages").one().n;
      const page = (v: number) => new Uint8Array(4096).fill(v);
      const meta = (seq: number) => ({ seq, generation: 0, memoryPages: 2048, diskSectors: 64, machine: captureMachine(new Machine(2048)) });
      const all = (v: number): [number, Uint8Array][] => Array.from({ length: 2000 }, (_, i) => [i, page(v)]);
      const store = new SqlReplicaStore(state.storage);
      store.commit({ full: true, pages: all(1), sectors: [], outputs: [], meta: meta(1) });
      expect(rows()).toBe(2000);
      // Checkpoint 2 rewrites every page, in 8 frames of 250: each frame deletes at most a batch.
      for (let f = 0; f < 8; f++) store.stage(f === 0, all(2).slice(f * 250, (f + 1) * 250), []);
      store.commit({ full: false, pages: [], sectors: [], outputs: [], meta: meta(2), staged: true });
      // Its commit deleted one batch (512) of the 2000 rows it superseded, not all of them.
      expect(rows()).toBe(4000 - 512);
      // The copy is checkpoint 2 all the same (the newest row per page).
      expect(pagesOf(new SqlReplicaStore(state.storage).load()!).get(7)![0]).toBe(2);
      // A restart loses only the cursor: the store opened again carries on from the meta.
      const reopened = new SqlReplicaStore(state.storage);
      for (let seq = 3; seq <= 6; seq++) reopened.commit({ full: false, pages: [[5, page(seq)]], sectors: [], outputs: [], meta: meta(seq) });
      expect(rows()).toBe(2000);
      const pages = pagesOf(reopened.load()!);
      expect(pages.size).toBe(2000);
      expect([pages.get(5)![0], pages.get(1999)![0]]).toEqual([6, 2]);
    });
  });

  it("keeps pace however small the entries: single-frame checkpoints of 1,024 delta pages each leave no superseded rows behind", async () => {
    const stub = env.HOST.get(env.HOST.idFromName("cleanup/pace"));
    await runInDurableObject(stub, (_instance, state) => {
      const rows = () => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM replica_pages").one().n;
      const page = (v: number) => new Uint8Array(4096).fill(v);
      const meta = (seq: number) => ({ seq, generation: 0, memoryPages: 2048, diskSectors: 64, machine: captureMachine(new Machine(2048)) });
      const all = (v: number): [number, Uint8Array][] => Array.from({ length: 1024 }, (_, i) => [i, page(v)]);
      const store = new SqlReplicaStore(state.storage);
      store.commit({ full: true, pages: all(1), sectors: [], outputs: [], meta: meta(1) });
      // A guest changing a word in each of 1,024 pages per checkpoint: deltas, one small frame each.
      // Cleaning 512 rows a commit fell behind by 512 a checkpoint (11,264 rows after 20).
      for (let seq = 2; seq <= 21; seq++) store.commit({ full: false, pages: all(seq), sectors: [], outputs: [], meta: meta(seq) });
      expect(rows()).toBeLessThanOrEqual(2 * 1024);
    });
  });

  it("an incremental checkpoint of one frame overwrites the copy's rows in place: nothing to clean up, a torn staging still dropped", async () => {
    const stub = env.HOST.get(env.HOST.idFromName("cleanup/in-place"));
    await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      const count = (t: string) => sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t}`).one().n;
      const page = (v: number) => new Uint8Array(4096).fill(v);
      const sector = (v: number) => new Uint8Array(512).fill(v);
      const meta = (seq: number) => ({ seq, generation: 0, memoryPages: 16, diskSectors: 64, machine: captureMachine(new Machine(16)) });
      const held = { device: "console" as const, index: 0, data: new TextEncoder().encode("held") };
      const store = new SqlReplicaStore(state.storage);
      store.commit({ full: true, pages: [[1, page(1)], [2, page(1)]], sectors: [[3, sector(1)]], outputs: [held], meta: meta(1) });
      // A staging torn after its first frame, then a checkpoint of one frame.
      store.stage(true, [[1, page(9)], [6, page(9)]], [[7, sector(9)]]);
      store.commit({ full: false, pages: [[2, page(2)], [4, page(2)]], sectors: [[3, sector(2)], [5, sector(2)]], outputs: [], meta: meta(2) });
      const check = (s: SqlReplicaStore) => {
        const copy = s.load()!;
        const pages = pagesOf(copy);
        expect([...pages.keys()].sort()).toEqual([1, 2, 4]);
        expect([pages.get(1)![0], pages.get(2)![0], pages.get(4)![0]]).toEqual([1, 2, 2]);
        expect(copy.outputs).toEqual([]);
        expect(s.sectorsHeld()).toBe(2);
      };
      check(store);
      // One row per page and sector held: the torn rows went, and the rewritten ones were not copied.
      expect([count("replica_pages"), count("replica_disk"), count("replica_outputs")]).toEqual([3, 2, 0]);
      // After a restart too (what lies above the pointer is unknown again).
      const reopened = new SqlReplicaStore(state.storage);
      check(reopened);
      reopened.stage(true, [[6, page(8)]], []);
      const again = new SqlReplicaStore(state.storage);
      again.commit({ full: false, pages: [[1, null]], sectors: [], outputs: [held], meta: meta(3) });
      const last = new SqlReplicaStore(state.storage).load()!;
      expect([...pagesOf(last).keys()].sort()).toEqual([2, 4]);
      expect(last.outputs.map((o) => new TextDecoder().decode(o.data))).toEqual(["held"]);
      expect(count("replica_pages")).toBe(3); // page 1's zero marker, pages 2 and 4
      // A restarted secondary streams the rows into the guest's RAM.
      const ram = new Replica(new SqlReplicaStore(state.storage), 0).memory!;
      expect([ram[1 * PAGE_SIZE], ram[2 * PAGE_SIZE], ram[4 * PAGE_SIZE], ram[6 * PAGE_SIZE]]).toEqual([0, 2, 2, 0]);
      again.adoptDisk();
      expect(new Uint8Array(sql.exec<{ data: ArrayBuffer }>("SELECT data FROM disk WHERE sector = 3").one().data)[0]).toBe(2);
    });
  });

  it("a restarted secondary applies its store's rows in order: a page written and then zeroed by a later version reads zero", () => {
    const meta = { seq: 3, generation: 0, memoryPages: 16, diskSectors: 64, machine: captureMachine(new Machine(16)) };
    const rows: [number, Uint8Array | null][] = [[2, new Uint8Array(PAGE_SIZE).fill(5)], [3, new Uint8Array(PAGE_SIZE).fill(6)], [2, null]];
    const ram = new Replica({ commit: () => undefined, load: () => ({ meta, pages: rows, outputs: [] }) }, 0).memory!;
    expect([ram[2 * PAGE_SIZE], ram[3 * PAGE_SIZE + 4095]]).toEqual([0, 6]);
  });

  it("a torn checkpoint's staged rows never become part of the next one, committed in one frame", async () => {
    // Found by review: part 0 of an incremental checkpoint staged page 7, its commit frame's reply was
    // lost, the guest zeroed page 7, and the next (full, one frame) checkpoint left that zero page out —
    // while the torn row stayed above the pointer and was switched in with it: the durable copy (what a
    // restart or a takeover after one reads) had the old page 7.
    const stub = env.HOST.get(env.HOST.idFromName("cleanup/torn"));
    await runInDurableObject(stub, async (_instance, state) => {
      const m = new Machine(16);
      const store = new SqlReplicaStore(state.storage);
      const replica = new Replica(store, 1);
      let loseSecondReply = false;
      let n = 0;
      const rep = new Replicator(1, {
        send: async (b): Promise<SyncReply> => {
          // The commit frame is lost on its way: what the first frame staged stays torn.
          if (loseSecondReply && n++ === 1) throw new Error("the commit frame was lost");
          return replica.receive(b);
        },
      });
      await rep.sync(m, { diskSectors: 8 });
      m.memory.writeU32(7 * PAGE_SIZE, 0xdead);
      m.memory.writeU32(9 * PAGE_SIZE, 1);
      loseSecondReply = true;
      // Two frames: the first staged, the second (the commit) lost.
      await expect(rep.sync(m, { diskSectors: 8, minFrames: 2 })).rejects.toThrow(/lost/);
      loseSecondReply = false;
      expect(rep.needsFull).toBe(true);
      m.memory.writeU32(7 * PAGE_SIZE, 0);
      await rep.sync(m, { diskSectors: 8 }); // full, one frame: page 7 (zero) left out
      const loaded = new Replica(new SqlReplicaStore(state.storage), 1);
      expect(Array.from(loaded.memory!.subarray(7 * PAGE_SIZE, 7 * PAGE_SIZE + 4))).toEqual([0, 0, 0, 0]);
      expect(Array.from(loaded.memory!.subarray(9 * PAGE_SIZE, 9 * PAGE_SIZE + 4))).toEqual([1, 0, 0, 0]);
    });
  });
});
