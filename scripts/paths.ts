import { fileURLToPath } from "node:url";

/** The repository root (scripts run from dist/scripts/). */
export const ROOT_DIR = fileURLToPath(new URL("../../", import.meta.url));
