import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * The workflow bundle the Temporal worker runs (webpack over the workflow sources, several seconds of
 * CPU), kept on disk under a key made of every source file, the lock file and the Node.js release, so
 * worker processes started from the same checkout (the test suite starts dozens) bundle once. A changed
 * file changes the key; a cache that cannot be written (a read-only image) only costs the bundling.
 */
export async function cachedBundle(opts: { sourceRoot: string; lockFile: string; name: string; build: () => Promise<{ code: string }> }): Promise<{ code: string }> {
  let key: string;
  try {
    const h = createHash('sha256');
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir).sort()) {
        const path = join(dir, entry);
        if (statSync(path).isDirectory()) walk(path);
        else {
          h.update(path.slice(opts.sourceRoot.length));
          h.update(readFileSync(path));
        }
      }
    };
    walk(opts.sourceRoot);
    h.update(readFileSync(opts.lockFile));
    h.update(process.versions.node);
    key = h.digest('hex').slice(0, 24);
  } catch {
    return opts.build();
  }
  const dir = process.env.RUNBOOK_BUNDLE_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'runbook', 'bundles');
  const file = join(dir, `${opts.name}-${key}.js`);
  try {
    return { code: readFileSync(file, 'utf8') };
  } catch {
    /* not built yet */
  }
  const bundle = await opts.build();
  try {
    mkdirSync(dir, { recursive: true });
    const partial = `${file}.${process.pid}.partial`;
    writeFileSync(partial, bundle.code);
    renameSync(partial, file);
  } catch {
    /* a read-only cache: bundle again next time */
  }
  return bundle;
}
