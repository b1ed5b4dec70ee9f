import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findBinary, freePort, spawnService, stopService, waitUntil } from '../system/process';

export interface PrometheusInfo {
  pid: number;
  url: string;
  logFile: string;
}

/**
 * A real Prometheus that scrapes the given targets and evaluates the given rule files, with short
 * intervals so tests see alerts within seconds.
 */
export async function startPrometheus(opts: { dir: string; targets: string[]; ruleFiles: string[]; intervalSeconds?: number }): Promise<PrometheusInfo> {
  const binary = findBinary('prometheus', { envVar: 'PROMETHEUS_PATH', dirs: ['/usr/bin'], hint: 'Install Prometheus (scripts/bootstrap does: apt-get install prometheus).' });
  const dir = join(opts.dir, 'prometheus');
  mkdirSync(join(dir, 'data'), { recursive: true });
  const rules = opts.ruleFiles.map((f, i) => {
    const local = join(dir, `rules-${i}.yml`);
    copyFileSync(f, local);
    return local;
  });
  const interval = `${opts.intervalSeconds ?? 1}s`;
  writeFileSync(
    join(dir, 'prometheus.yml'),
    `global:\n  scrape_interval: ${interval}\n  evaluation_interval: ${interval}\nrule_files:\n${rules.map((r) => `  - ${r}`).join('\n')}\n` +
      `scrape_configs:\n  - job_name: runbook-worker\n    static_configs:\n      - targets: [${opts.targets.map((t) => `"${t}"`).join(', ')}]\n`,
  );
  const port = await freePort();
  const logFile = join(opts.dir, 'prometheus.log');
  const service = spawnService('prometheus', binary, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], logFile);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitUntil('Prometheus', async () => (await fetch(`${url}/-/ready`)).ok, { timeoutMs: 30_000, pid: service.pid, logFile, intervalMs: 200 });
  } catch (err) {
    await stopService(service.pid);
    throw err;
  }
  return { pid: service.pid, url, logFile };
}

export function stopPrometheus(pid: number): Promise<void> {
  return stopService(pid, 'SIGTERM', 10_000);
}
