// Bundles the page's script into dist/app.js, with a gzipped copy for browsers that take one
// (both committed: the gateway embeds them, so building the gateway needs no Node). `--check`
// builds in memory and fails if dist/ is stale.
import { build } from "esbuild";
import { gunzipSync, gzipSync } from "node:zlib";
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
const bundle = Buffer.from(result.outputFiles[0].contents);
const files = { [out]: bundle, [`${out}.gz`]: gzipSync(bundle, { level: 9 }) };
if (process.argv.includes("--check")) {
  for (const [path, bytes] of Object.entries(files)) {
    let committed = null;
    try {
      committed = readFileSync(path);
    } catch {
      // Missing counts as stale.
    }
    // The gzipped copy is compared by its content: another zlib may compress differently.
    const same = (a, b) => Buffer.compare(a, b) === 0;
    const fresh = committed && (path.endsWith(".gz") ? same(gunzipSync(committed), bundle) : same(committed, bytes));
    if (!fresh) {
      console.error(`${path} is stale: run \`npm run build\` in proxy/web and commit dist/`);
      process.exit(1);
    }
  }
  console.log(`proxy/web/dist is fresh (app.js ${bundle.length} bytes, gzipped ${files[`${out}.gz`].length})`);
} else {
  mkdirSync(dirname(out), { recursive: true });
  for (const [path, bytes] of Object.entries(files)) {
    writeFileSync(path, bytes);
    console.log(`wrote ${path} (${bytes.length} bytes)`);
  }
}
