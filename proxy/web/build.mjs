// Bundles the page's script into dist/app.js (committed: the gateway embeds it, so building
// the gateway needs no Node). `--check` builds in memory and fails if dist/ is stale.
import { build } from "esbuild";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "dist/app.js");
const result = await build({
  entryPoints: [join(here, "src/main.js")],
  bundle: true,
  minify: !process.env.UNMINIFIED,
  format: "esm",
  target: "es2022",
  platform: "browser",
  inject: [join(here, "src/shims.js")],
  define: { "process.env.NODE_ENV": '"production"', global: "globalThis" },
  legalComments: "none",
  write: false,
  logLevel: "warning",
});
const bundle = result.outputFiles[0].contents;
if (process.argv.includes("--check")) {
  let committed = null;
  try {
    committed = readFileSync(out);
  } catch {
    // Missing counts as stale.
  }
  if (!committed || Buffer.compare(committed, Buffer.from(bundle)) !== 0) {
    console.error("proxy/web/dist/app.js is stale: run `npm run build` in proxy/web and commit it");
    process.exit(1);
  }
  console.log(`proxy/web/dist/app.js is fresh (${bundle.length} bytes)`);
} else {
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, bundle);
  console.log(`wrote ${out} (${bundle.length} bytes)`);
}
