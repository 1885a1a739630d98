/**
 * The live event stream of a guest (version 1): what its switch sends to
 * every dashboard watching it, one JSON object per WebSocket message.
 *
 * Connect to `GET /api/guests/:id/events` with `Upgrade: websocket`; send
 * `{"type":"auth","token":"<API_TOKEN>"}` as the first message (browsers
 * cannot set an Authorization header on a WebSocket, and a token in the URL
 * would end up in logs). The server answers with a `snapshot` — the current
 * state, so a late joiner starts complete — then live events as they happen.
 * A wrong or missing token closes the socket with code 4401.
 *
 * Every message has `v` (1), `type`, and `t` (epoch ms when it happened).
 */
import type { DeviceStatus } from "../host/runner.ts";
import type { GuestStatus, HostPlace } from "../host/status.ts";

export const STREAM_VERSION = 1;
/** Events a late joiner gets in its snapshot's timeline. */
export const TIMELINE_LENGTH = 200;
/** Page numbers listed in one sync event at most (the count is always exact). */
export const MAX_LISTED_PAGES = 1024;

interface Base {
  v: typeof STREAM_VERSION;
  t: number;
}

/** A checkpoint the primary sent and the secondary acknowledged. */
export interface SyncEvent extends Base {
  type: "sync";
  generation: number;
  seq: number;
  full: boolean;
  /** Pages in the checkpoint. */
  pages: number;
  /** Their page numbers (the first MAX_LISTED_PAGES). */
  sent: number[];
  /** Bytes on the wire, and bytes of guest memory they stand for. */
  bytes: number;
  dirtyBytes: number;
  deltaSaved: number;
  /** How long the guest was paused for this sync (pipelined: while the checkpoint was taken). */
  pauseMs: number;
  /** From taking the checkpoint to its acknowledgement: the time it was in flight (stop-and-wait: the pause). */
  flightMs: number;
}

/** Something the outside world saw, as recorded by the switch. */
export interface OutputEvent extends Base {
  type: "output";
  device: "console" | "net";
  /** The output's identity: its ring request index. */
  index: number;
  bytes: number;
  /** Console text, or the first bytes of a packet in base64. */
  text?: string;
  data?: string;
}

export interface FaultEvent extends Base {
  type: "fault";
  target: "primary" | "secondary";
  kind: "crash" | "partition" | "heal";
  at: string;
  hosts: HostPlace[];
}

/** The witness has decided a host failed. */
export interface FailureEvent extends Base {
  type: "failure";
  host: HostPlace;
  reason: string;
}

export interface TakeoverEvent extends Base {
  type: "takeover";
  generation: number;
  from: HostPlace;
  to: HostPlace;
  takeoverMs: number;
}

/** A (new) secondary holds a full checkpoint: the guest is protected again. */
export interface ProtectedEvent extends Base {
  type: "protected";
  generation: number;
  secondary: HostPlace;
}

/** The guest as the primary sees it now: state, rings, and the pages dirtied since the last sync. */
export interface GuestEvent extends Base {
  type: "guest";
  generation: number;
  state: string;
  pc: number;
  instructions: number;
  devices: DeviceStatus[];
  dirty: number[];
}

export interface SnapshotMessage extends Base {
  type: "snapshot";
  status: GuestStatus;
  /** Pages dirtied since the last sync, and those the last sync sent. */
  memory: { pages: number; dirty: number[]; sent: number[] };
  /** The most recent events, oldest first. */
  timeline: StreamEvent[];
}

export type StreamEvent = SyncEvent | OutputEvent | FaultEvent | FailureEvent | TakeoverEvent | ProtectedEvent | GuestEvent;
export type StreamMessage = StreamEvent | SnapshotMessage;

type Body<E> = E extends StreamEvent ? Omit<E, "v" | "t"> : never;

export function event<E extends StreamEvent>(body: Body<E>, t = Date.now()): E {
  return { v: STREAM_VERSION, t, ...body } as unknown as E;
}

export function encodeMessage(m: StreamMessage): string {
  return JSON.stringify(m);
}

/** Parse a message from the stream; throws on anything that is not one. */
export function decodeMessage(text: string): StreamMessage {
  const m = JSON.parse(text) as Partial<StreamMessage>;
  if (typeof m !== "object" || m === null || m.v !== STREAM_VERSION || typeof m.type !== "string" || typeof m.t !== "number") {
    throw new TypeError("not a version-1 stream message");
  }
  return m as StreamMessage;
}

/**
 * What a late joiner needs: the last events and the memory picture they
 * imply. Kept by the switch as events pass through it.
 */
export class Timeline {
  private readonly events: StreamEvent[] = [];
  private dirty: number[] = [];
  private sent: number[] = [];

  constructor(private readonly capacity = TIMELINE_LENGTH) {}

  push(e: StreamEvent): void {
    this.events.push(e);
    if (this.events.length > this.capacity) this.events.splice(0, this.events.length - this.capacity);
    if (e.type === "sync") {
      this.sent = e.sent;
      this.dirty = [];
    } else if (e.type === "guest") {
      this.dirty = e.dirty;
    } else if (e.type === "takeover") {
      this.sent = [];
      this.dirty = [];
    }
  }

  snapshot(status: GuestStatus, t = Date.now()): SnapshotMessage {
    return {
      v: STREAM_VERSION,
      t,
      type: "snapshot",
      status,
      memory: { pages: status.memoryPages, dirty: [...this.dirty], sent: [...this.sent] },
      timeline: [...this.events],
    };
  }

  get length(): number {
    return this.events.length;
  }
}
