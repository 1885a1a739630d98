/** The backends by device kind. */
import { DeviceKind } from "../guest/abi.ts";
import type { Binding } from "../guest/machine.ts";
import type { Backend, DeviceHost } from "./backend.ts";
import { BlkBackend } from "./blk.ts";
import { ConsoleBackend } from "./console.ts";
import { NetRxBackend, NetTxBackend } from "./net.ts";

export function createBackend(host: DeviceHost, binding: Binding): Backend {
  switch (binding.kind) {
    case DeviceKind.CONSOLE: return new ConsoleBackend(host, binding);
    case DeviceKind.NET_TX: return new NetTxBackend(host, binding);
    case DeviceKind.NET_RX: return new NetRxBackend(host, binding);
    case DeviceKind.BLK: return new BlkBackend(host, binding);
  }
}
