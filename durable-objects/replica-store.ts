/**
 * A secondary's durable copy of the guest in SQLite, versioned so that a
 * large checkpoint never blocks the object for long: each frame's pages and
 * sectors are written as the frame arrives, in a small transaction of its
 * own, under the next version number; the checkpoint's commit then only
 * writes the machine state, the held outputs and the pointer to that version
 * — one small transaction that makes the whole checkpoint the copy at once.
 * Rows a newer version supersedes are deleted afterwards, a bounded batch
 * with each frame and each commit (`tidy`), so that no write — not even the
 * commit of a checkpoint that replaced all 16,384 pages of a 64 MiB guest —
 * holds the object for long: those it replaced (version by version, found
 * through the (ver, key) index), and everything before a full checkpoint.
 * Until then they are shadowed: the newest row per index is the copy's.
 *
 * The common checkpoint — incremental, one frame — needs none of that: its
 * commit is one transaction anyway, so each of its pages and sectors
 * overwrites the copy's row for it in place (the newest at or below the
 * pointer; one the copy lacks is added under the new version). It leaves
 * nothing superseded to clean up, and it costs one row per page where a new
 * row, its index entry and their later deletion cost four. Nor does a commit
 * rewrite the held outputs when there were none and are none (this object
 * knows, once it has committed), or look above the pointer for a torn
 * staging when it knows there is none.
 *
 *   replica_pages (idx, ver, data)    a page as of version `ver` (NULL: all zero)
 *   replica_disk  (sector, ver, data) a disk sector as of version `ver`
 *   replica_meta  'replica' → { seq, generation, …, machine, ver, fullVer, cleanVer, format }
 *
 * The copy is every row with fullVer ≤ ver ≤ the pointer's ver, the newest per
 * index (fullVer: the version of the last full checkpoint, which replaced
 * everything). Rows above the pointer are a checkpoint still being staged (or
 * a torn one): invisible, and overwritten by the next.
 *
 * Format 2 is this one. Format 1 (before 2026-12) kept one row per page and
 * the copy's disk sectors in `disk`; it is moved over when the store opens,
 * so an upgrade loses no acknowledged checkpoint.
 */
import type { Output } from "../src/devices/backend.ts";
import type { CommitBatch, ReplicaMeta, ReplicaStore } from "../src/kemari/replica.ts";
import { machineFromJson, machineToJson } from "../src/kemari/state.ts";

export const REPLICA_FORMAT = 2;

/** The tables that take the space: what a discarded host's wipe frees (host-store.ts). */
export const REPLICA_BULK_TABLES = ["replica_pages", "replica_disk"] as const;

/** Superseded rows deleted per write, at most this or as many rows as the write wrote: cleaning up keeps pace, and never blocks for long either. */
const CLEANUP_BATCH = 512;

const TABLES = [["replica_pages", "idx"], ["replica_disk", "sector"]] as const;

interface StoredMeta extends Omit<ReplicaMeta, "machine"> {
  machine: unknown;
  ver: number;
  fullVer: number;
  /** The rows versions up to this one superseded are deleted (absent: stored before 2026-12-02, which deleted them at each commit). */
  cleanVer?: number;
  format: number;
}

export class SqlReplicaStore implements ReplicaStore {
  /** Called half-way through writing a frame's pages: where a mid-apply crash is injected. */
  midway: (() => void) | null = null;
  /** The version the checkpoint being staged will have. */
  private stagingVer = 0;
  /** The stored meta, as last read or written (this object is its only writer); undefined: not read yet. */
  private cached: StoredMeta | null | undefined = undefined;
  /** Rows before the last full checkpoint may be left to delete. */
  private untidy = true;
  /** Versions up to this one have had the rows they superseded deleted (undefined: read from the meta). */
  private cleanVer: number | undefined = undefined;
  /** Where cleaning up version cleanVer + 1 has got to: which table, and the last key done. */
  private cursor = { table: 0, after: -1 };
  /** Rows may lie above the pointer (a checkpoint being staged, or a torn one); unknown until this object's first commit. */
  private stagedAbove = true;
  /** Rows in replica_outputs (undefined: not known since this object started). */
  private outputsHeld: number | undefined = undefined;

  constructor(private readonly storage: DurableObjectStorage) {
    const sql = storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS replica_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS disk (sector INTEGER PRIMARY KEY, data BLOB NOT NULL)");
    sql.exec("CREATE TABLE IF NOT EXISTS replica_outputs (seq INTEGER PRIMARY KEY, device TEXT NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL)");
    if (this.hasFormat1Pages()) this.upgradeFromFormat1();
    sql.exec("CREATE TABLE IF NOT EXISTS replica_pages (idx INTEGER NOT NULL, ver INTEGER NOT NULL, data BLOB, PRIMARY KEY (idx, ver))");
    sql.exec("CREATE TABLE IF NOT EXISTS replica_disk (sector INTEGER NOT NULL, ver INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (sector, ver))");
    // Rows by version: what a version wrote (to clean up after it), and what a torn one left.
    sql.exec("CREATE INDEX IF NOT EXISTS replica_pages_by_ver ON replica_pages (ver, idx)");
    sql.exec("CREATE INDEX IF NOT EXISTS replica_disk_by_ver ON replica_disk (ver, sector)");
  }

  private meta(): StoredMeta | null {
    if (this.cached === undefined) {
      const row = this.storage.sql.exec<{ v: string }>("SELECT v FROM replica_meta WHERE k = 'replica'").toArray()[0];
      this.cached = row ? (JSON.parse(row.v) as StoredMeta) : null;
    }
    return this.cached;
  }

  stage(first: boolean, pages: [number, Uint8Array | null][], sectors: [number, Uint8Array][]): void {
    this.storage.transactionSync(() => this.writeRows(first, pages, sectors));
    this.stagedAbove = true;
    // At least as many as it wrote: cleaning up keeps pace with writing, however small the entries.
    this.tidy(Math.max(CLEANUP_BATCH, pages.length + sectors.length));
  }

  /** Rows of the checkpoint being staged, under its version (inside the caller's transaction). */
  private writeRows(first: boolean, pages: [number, Uint8Array | null][], sectors: [number, Uint8Array][]): void {
    const sql = this.storage.sql;
    if (first) {
      // A new checkpoint: whatever a torn one left above the pointer goes.
      this.stagingVer = (this.meta()?.ver ?? 0) + 1;
      if (this.stagedAbove) {
        sql.exec("DELETE FROM replica_pages WHERE ver >= ?", this.stagingVer);
        sql.exec("DELETE FROM replica_disk WHERE ver >= ?", this.stagingVer);
      }
    }
    const half = pages.length >> 1;
    pages.forEach(([p, data], i) => {
      if (i === half) this.midway?.();
      sql.exec("INSERT OR REPLACE INTO replica_pages (idx, ver, data) VALUES (?, ?, ?)", p, this.stagingVer, data);
    });
    for (const [s, data] of sectors) sql.exec("INSERT OR REPLACE INTO replica_disk (sector, ver, data) VALUES (?, ?, ?)", s, this.stagingVer, data);
  }

  /** Switch the copy to the staged checkpoint (and write any pages it was handed here, for a caller that did not stage). */
  commit(b: CommitBatch): void {
    const sql = this.storage.sql;
    const prev = this.meta();
    let inPlace = false;
    this.storage.transactionSync(() => {
      // Not staged (a checkpoint of one frame): its rows go in with the switch, in the same transaction,
      // and whatever a torn checkpoint staged before it goes (first = true).
      const fresh = !b.staged || this.stagingVer <= (prev?.ver ?? 0);
      // An incremental checkpoint of one frame — the common, small one — overwrites the copy's rows
      // where they stand: the switch is this one transaction anyway, and no row is left to clean up.
      inPlace = fresh && !b.full && prev !== null;
      if (inPlace) this.overwriteRows(prev!, b.pages, b.sectors);
      else if (fresh || b.pages.length > 0 || b.sectors.length > 0) this.writeRows(fresh, b.pages, b.sectors);
      if (this.outputsHeld !== 0 || b.outputs.length > 0) {
        sql.exec("DELETE FROM replica_outputs");
        b.outputs.forEach((o, i) => sql.exec("INSERT INTO replica_outputs (seq, device, idx, data) VALUES (?, ?, ?, ?)", i, o.device, o.index, o.data));
      }
      const meta: StoredMeta = {
        ...b.meta,
        machine: machineToJson(b.meta.machine),
        ver: this.stagingVer,
        fullVer: b.full ? this.stagingVer : (prev?.fullVer ?? this.stagingVer),
        cleanVer: this.cleanedUpTo(),
        format: REPLICA_FORMAT,
      };
      sql.exec("INSERT OR REPLACE INTO replica_meta (k, v) VALUES ('replica', ?)", JSON.stringify(meta));
      this.cached = meta;
    });
    this.stagedAbove = false;
    this.outputsHeld = b.outputs.length;
    // Rows written in place superseded none, and a row it added is its key's first in the copy:
    // this version leaves nothing to clean up (if every one before it is clean).
    if (inPlace && this.cleanVer === prev!.ver) this.cleanVer = this.stagingVer;
    if (b.full) this.untidy = true;
    this.tidy(Math.max(CLEANUP_BATCH, b.pages.length + b.sectors.length));
  }

  /**
   * An unstaged incremental checkpoint's rows (inside the commit's transaction):
   * each page or sector overwrites the copy's row for it — the newest at or
   * below the pointer — in place; one the copy has no row for yet is added
   * under the new version. Rows above the pointer (a torn staging) go first.
   */
  private overwriteRows(prev: StoredMeta, pages: [number, Uint8Array | null][], sectors: [number, Uint8Array][]): void {
    const sql = this.storage.sql;
    this.stagingVer = prev.ver + 1;
    if (this.stagedAbove) {
      sql.exec("DELETE FROM replica_pages WHERE ver >= ?", this.stagingVer);
      sql.exec("DELETE FROM replica_disk WHERE ver >= ?", this.stagingVer);
    }
    const half = pages.length >> 1;
    pages.forEach(([p, data], i) => {
      if (i === half) this.midway?.();
      const n = sql.exec(
        "UPDATE replica_pages SET data = ? WHERE idx = ? AND ver = (SELECT MAX(ver) FROM replica_pages WHERE idx = ? AND ver >= ? AND ver <= ?)",
        data, p, p, prev.fullVer, prev.ver,
      ).rowsWritten;
      if (n === 0) sql.exec("INSERT INTO replica_pages (idx, ver, data) VALUES (?, ?, ?)", p, this.stagingVer, data);
    });
    for (const [sector, data] of sectors) {
      const n = sql.exec(
        "UPDATE replica_disk SET data = ? WHERE sector = ? AND ver = (SELECT MAX(ver) FROM replica_disk WHERE sector = ? AND ver >= ? AND ver <= ?)",
        data, sector, sector, prev.fullVer, prev.ver,
      ).rowsWritten;
      if (n === 0) sql.exec("INSERT INTO replica_disk (sector, ver, data) VALUES (?, ?, ?)", sector, this.stagingVer, data);
    }
  }

  private cleanedUpTo(): number {
    if (this.cleanVer === undefined) {
      const m = this.meta();
      this.cleanVer = m ? (m.cleanVer ?? m.ver) : 0;
    }
    return this.cleanVer;
  }

  /**
   * Delete up to `budget` rows the copy no longer reads: first those before
   * the last full checkpoint, then, version by version after it, the older
   * rows of the keys each version wrote. The copy reads the newest row per
   * key, so a row left a while longer changes nothing but the space held.
   */
  private tidy(budget = CLEANUP_BATCH): void {
    const m = this.meta();
    if (!m) return;
    const sql = this.storage.sql;
    if (this.untidy) {
      let older = 0;
      for (const [table] of TABLES) older += sql.exec(`DELETE FROM ${table} WHERE rowid IN (SELECT rowid FROM ${table} WHERE ver < ? LIMIT ?)`, m.fullVer, budget).rowsWritten;
      // A batch that found less than it could take has found everything before the last full checkpoint.
      this.untidy = older >= budget;
      budget -= older;
    }
    // What a version up to the full checkpoint superseded is below it: the sweep above has it.
    if (this.cleanedUpTo() < m.fullVer) {
      this.cleanVer = m.fullVer;
      this.cursor = { table: 0, after: -1 };
    }
    while (budget > 0 && this.cleanVer! < m.ver) {
      const v = this.cleanVer! + 1;
      const [table, key] = TABLES[this.cursor.table];
      const keys = sql.exec<{ k: number }>(`SELECT ${key} AS k FROM ${table} WHERE ver = ? AND ${key} > ? ORDER BY ${key} LIMIT ?`, v, this.cursor.after, budget).toArray();
      if (keys.length > 0) {
        const last = keys[keys.length - 1].k;
        sql.exec(
          `DELETE FROM ${table} WHERE ver >= ? AND ver < ? AND ${key} IN (SELECT ${key} FROM ${table} WHERE ver = ? AND ${key} > ? AND ${key} <= ?)`,
          m.fullVer, v, v, this.cursor.after, last,
        );
        this.cursor.after = last;
        budget -= keys.length;
        if (budget === 0) return; // there may be more of this version
      }
      // This table of version v is done: the next table, or the next version.
      if (this.cursor.table + 1 < TABLES.length) this.cursor = { table: this.cursor.table + 1, after: -1 };
      else {
        this.cleanVer = v;
        this.cursor = { table: 0, after: -1 };
      }
    }
  }

  load(): { meta: ReplicaMeta; pages: Iterable<[number, Uint8Array | null]>; outputs: Output[] } | null {
    const m = this.meta();
    if (!m) return null;
    const sql = this.storage.sql;
    const meta: ReplicaMeta = { seq: m.seq, generation: m.generation, memoryPages: m.memoryPages, diskSectors: m.diskSectors, machine: machineFromJson(m.machine) };
    const pages = this.pagesInOrder(m.fullVer, m.ver);
    const outputs = sql
      .exec<{ device: string; idx: number; data: ArrayBuffer }>("SELECT device, idx, data FROM replica_outputs ORDER BY seq")
      .toArray()
      .map((o) => ({ device: o.device as Output["device"], index: o.idx, data: new Uint8Array(o.data) }));
    return { meta, outputs, pages };
  }

  /**
   * The copy's rows, oldest version first (so the newest per page is applied
   * last), read as the caller iterates: collecting the newest per page first
   * held a 64 MiB copy twice — 128 MiB with the guest's RAM, the whole
   * isolate's budget — and took ~280 ms where streaming it into RAM takes ~95.
   */
  private *pagesInOrder(fromVer: number, toVer: number): Generator<[number, Uint8Array | null]> {
    const rows = this.storage.sql.exec<{ idx: number; data: ArrayBuffer | null }>("SELECT idx, data FROM replica_pages WHERE ver >= ? AND ver <= ? ORDER BY ver", fromVer, toVer);
    for (const r of rows) yield [r.idx, r.data ? new Uint8Array(r.data) : null];
  }

  /** Sectors the copy holds (written ones; the rest read as zeros). */
  sectorsHeld(): number {
    const m = this.meta();
    if (!m) return 0;
    return this.storage.sql.exec<{ n: number }>("SELECT COUNT(DISTINCT sector) AS n FROM replica_disk WHERE ver >= ? AND ver <= ?", m.fullVer, m.ver).one().n;
  }

  /** The copy's disk becomes the live disk (a takeover). */
  adoptDisk(): void {
    const m = this.meta();
    this.storage.transactionSync(() => {
      this.storage.sql.exec("DELETE FROM disk");
      if (m) this.storage.sql.exec("INSERT OR REPLACE INTO disk (sector, data) SELECT sector, data FROM replica_disk WHERE ver >= ? AND ver <= ? ORDER BY ver", m.fullVer, m.ver);
    });
  }

  /** Forget the copy. */
  clear(): void {
    this.storage.transactionSync(() => {
      for (const t of ["replica_pages", "replica_meta", "replica_outputs", "replica_disk"]) this.storage.sql.exec(`DELETE FROM ${t}`);
    });
    this.forgotten();
  }

  /** Forget the copy at once, leaving its pages and sectors (BULK_TABLES) for the host's wipe. Inside the caller's transaction. */
  forget(): void {
    for (const t of ["replica_meta", "replica_outputs"]) this.storage.sql.exec(`DELETE FROM ${t}`);
    this.forgotten();
  }

  /** Its meta was deleted (clear, or forget): what this object remembers of the copy goes too. */
  private forgotten(): void {
    this.stagingVer = 0;
    this.cached = null;
    this.untidy = false;
    this.cleanVer = 0;
    this.cursor = { table: 0, after: -1 };
    // forget() leaves the rows for the host's wipe: as after a restart, what lies above the pointer is unknown.
    this.stagedAbove = true;
    this.outputsHeld = 0;
  }

  private hasFormat1Pages(): boolean {
    try {
      this.storage.sql.exec("SELECT idx, data FROM replica_pages LIMIT 0");
    } catch {
      return false; // no table yet
    }
    try {
      this.storage.sql.exec("SELECT ver FROM replica_pages LIMIT 0");
      return false;
    } catch {
      return true; // a table without versions: format 1
    }
  }

  /** Format 1: one row per page, the copy's sectors in `disk` (a secondary's disk was its copy's). */
  private upgradeFromFormat1(): void {
    const sql = this.storage.sql;
    this.storage.transactionSync(() => {
      sql.exec("ALTER TABLE replica_pages RENAME TO replica_pages_format1");
      sql.exec("CREATE TABLE replica_pages (idx INTEGER NOT NULL, ver INTEGER NOT NULL, data BLOB, PRIMARY KEY (idx, ver))");
      sql.exec("INSERT INTO replica_pages (idx, ver, data) SELECT idx, 1, data FROM replica_pages_format1");
      sql.exec("DROP TABLE replica_pages_format1");
      sql.exec("CREATE TABLE IF NOT EXISTS replica_disk (sector INTEGER NOT NULL, ver INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (sector, ver))");
      const row = sql.exec<{ v: string }>("SELECT v FROM replica_meta WHERE k = 'replica'").toArray()[0];
      if (!row) return;
      sql.exec("INSERT OR REPLACE INTO replica_disk (sector, ver, data) SELECT sector, 1, data FROM disk");
      const meta = { ...(JSON.parse(row.v) as object), ver: 1, fullVer: 1, format: REPLICA_FORMAT };
      sql.exec("INSERT OR REPLACE INTO replica_meta (k, v) VALUES ('replica', ?)", JSON.stringify(meta));
    });
  }
}
