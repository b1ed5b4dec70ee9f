import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** What this process runs: the project's release, the Node.js release under it and the Temporal SDK. */
export interface RuntimeInfo {
  runbook: string;
  node: string;
  temporalSdk: string;
}

function packageVersion(file: string): string {
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

let cached: RuntimeInfo | undefined;

export function runtimeInfo(): RuntimeInfo {
  cached ??= {
    runbook: packageVersion(join(__dirname, '..', '..', 'package.json')),
    node: process.versions.node,
    temporalSdk: packageVersion(require.resolve('@temporalio/worker/package.json')),
  };
  return cached;
}
