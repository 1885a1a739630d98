/**
 * The guest directory as the Worker and the switches reach it: which shard
 * holds a guest (a hash of its id), and a page of the list merged from every
 * shard, newest first, with the cursor of the next. Shard 0 keeps the name of
 * the single directory of before (2026-12), so a guest listed there is still
 * found: lookups that miss a guest's own shard try shard 0.
 */
import type { Env } from "../env.ts";
import { encodeCursor } from "./cursor.ts";
import type { GuestSummary, SummaryChange } from "./summary.ts";

export const DIRECTORY_SHARDS = 8;

export function shardName(i: number): string {
  return i === 0 ? "directory" : `directory/${i}`;
}

/** FNV-1a of the id: guest ids are random, so shards fill evenly. */
export function shardOf(id: string): number {
  let h = 2166136261;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 16777619);
  return (h >>> 0) % DIRECTORY_SHARDS;
}

function shard(env: Env, i: number) {
  return env.DIRECTORY.get(env.DIRECTORY.idFromName(shardName(i)));
}

export async function addGuest(env: Env, entry: GuestSummary): Promise<void> {
  await shard(env, shardOf(entry.id)).add(entry);
}

export async function hasGuest(env: Env, id: string): Promise<boolean> {
  const i = shardOf(id);
  return (await shard(env, i).has(id)) || (i !== 0 && (await shard(env, 0).has(id)));
}

export async function removeGuest(env: Env, id: string): Promise<void> {
  const i = shardOf(id);
  if (!(await shard(env, i).remove(id)) && i !== 0) await shard(env, 0).remove(id);
}

/** A switch reports its guest's coarse change. */
export async function updateGuest(env: Env, id: string, change: SummaryChange): Promise<void> {
  const i = shardOf(id);
  if (!(await shard(env, i).update(id, change)) && i !== 0) await shard(env, 0).update(id, change);
}

/**
 * One page: `limit` + 1 from each shard (in parallel), merged newest first;
 * more than `limit` in all means there is a next page. A guest created after
 * the first page is newer than any cursor, so it is not listed by later
 * pages; one deleted meanwhile is simply gone: every guest present
 * throughout is listed exactly once.
 */
export async function listGuests(env: Env, limit: number, before: { createdAt: number; id: string } | null): Promise<{ guests: GuestSummary[]; next: string | null }> {
  const pages = await Promise.all(Array.from({ length: DIRECTORY_SHARDS }, (_, i) => shard(env, i).page(limit + 1, before)));
  const merged = pages.flat().sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  const guests = merged.slice(0, limit);
  return { guests, next: merged.length > limit ? encodeCursor(guests[guests.length - 1]) : null };
}
