/**
 * The backends every parity test runs on: the TypeScript reference always, the native addon when built.
 * In CI (CI=true) or with WEITIAO_REQUIRE_NATIVE=1 a missing addon is a failure, not a skip.
 */
import { tsBackend } from "../src/backend/ts.js";
import { loadNativeBackend } from "../src/backend/native.js";
import type { Backend } from "../src/backend/types.js";

const native = loadNativeBackend({ precision: "fp32" });
export const REQUIRE_NATIVE = process.env.CI === "true" || process.env.WEITIAO_REQUIRE_NATIVE === "1";
if (!native.backend && REQUIRE_NATIVE) throw new Error(`native backend required but unavailable: ${native.reason}`);

export const NATIVE: Backend | null = native.backend;
export const NATIVE_BF16: Backend | null = loadNativeBackend({ precision: "bf16" }).backend;
export const BACKENDS: Backend[] = [tsBackend, ...(native.backend ? [native.backend] : [])];
/** BACKENDS plus the native bf16 backend when built: for kernel options that every backend must honour. */
export const EVERY_BACKEND: Backend[] = [...BACKENDS, ...(NATIVE_BF16 ? [NATIVE_BF16] : [])];
