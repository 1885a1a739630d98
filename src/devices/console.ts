/** Console backend (kind 0): op 0 appends `len` bytes at `addr` to the console output. */
import { Errno } from "../guest/abi.ts";
import { InOrderBackend, type Output } from "./backend.ts";
import type { Request } from "./ring.ts";

/** One console write at most this long; a longer one is refused with EINVAL. */
export const MAX_CONSOLE_WRITE = 65536;

export class ConsoleBackend extends InOrderBackend {
  protected handle(req: Request, outputs: Output[]): number {
    if (req.op !== 0 || req.len > MAX_CONSOLE_WRITE || !this.inMemory(req)) return Errno.EINVAL;
    if (req.len > 0) outputs.push({ device: "console", index: req.index, data: this.host.memory.read(req.addr, req.len) });
    return req.len;
  }
}
