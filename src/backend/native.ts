/** Loader for the native C++ addon (native/); returns the reason when it is not available. */
import type { Backend } from "./types.js";

export interface NativeLoadOptions {
  precision: "fp32" | "bf16";
  threads?: number;
}

export function loadNativeBackend(_opts: NativeLoadOptions): { backend: Backend | null; reason: string } {
  return { backend: null, reason: "the addon is not built" };
}
