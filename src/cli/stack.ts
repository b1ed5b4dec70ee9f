import type { Command } from 'commander';
import { resolve } from 'node:path';
import { freePort } from '../system/process';
import { ALL_COMPONENTS, DEFAULT_COMPONENTS, DEFAULT_STACK_DIR, PATRONI_DATABASE_KEY, readStackState, StackComponent, stackStatus, startStack, stopStack, StackState } from '../sandbox/stack';
import { GlobalOptions, printJson, UsageError } from './common';

function parseComponents(list: string | undefined, withKubernetes: boolean, withPatroni = false, withTemporalCluster = false): StackComponent[] {
  let chosen: StackComponent[] = [...DEFAULT_COMPONENTS];
  if (list) {
    const names = list.split(',').map((s) => s.trim());
    const bad = names.filter((c) => !(ALL_COMPONENTS as string[]).includes(c));
    if (bad.length) throw new UsageError(`--only: unknown component ${bad.join(', ')}; expected some of ${ALL_COMPONENTS.join(', ')}`);
    chosen = names as StackComponent[];
  }
  if (withKubernetes && !chosen.includes('kubernetes')) chosen.push('kubernetes');
  if (withPatroni && !chosen.includes('patroni')) chosen.push('patroni');
  if (withTemporalCluster && !chosen.includes('temporal-cluster')) chosen.push('temporal-cluster');
  // The cluster archives to the S3 server.
  if (chosen.includes('temporal-cluster') && !chosen.includes('s3')) chosen.push('s3');
  return chosen;
}

export function describeStack(state: StackState): string {
  const lines = [`local stack in ${state.dir}`];
  if (state.temporal) lines.push(`  temporal  ${state.temporal.address}  namespace ${state.temporal.namespace}${state.temporal.uiUrl ? `  UI ${state.temporal.uiUrl}` : ''}`);
  if (state.postgres) lines.push(`  postgres  ${state.postgres.host}:${state.postgres.port}  database ${state.postgres.database}`);
  if (state.postgresReplica) lines.push(`  replica   ${state.postgresReplica.host}:${state.postgresReplica.port}  streaming from the primary`);
  if (state.s3) lines.push(`  s3        ${state.s3.endpoint}  (moto)`);
  if (state.dns) lines.push(`  dns       ${state.dns.host}:${state.dns.port}  zone ${state.dns.zone}  (BIND 9, TSIG updates)`);
  if (state.kubernetes) {
    lines.push(`  k8s       ${state.kubernetes.server}  ${state.kubernetes.nodes.length} kwok nodes  kubernetes ${state.kubernetes.versions.kubernetes ?? '?'}`);
    lines.push(`  kubeconfig ${state.kubernetes.kubeconfig}`);
  }
  if (state.patroni) {
    const p = state.patroni;
    lines.push(`  patroni   ${p.nodes.map((n) => `${n.name} ${n.host}:${n.pgPort} (api ${n.apiUrl})`).join(', ')}  scope ${p.scope}  database ${PATRONI_DATABASE_KEY}`);
    lines.push(`  etcd      ${p.etcd.host}:${p.etcd.port}  (the DCS)`);
    lines.push(`  haproxy   write ${p.haproxy.host}:${p.haproxy.writePort}  read ${p.haproxy.host}:${p.haproxy.readPort}  stats http://${p.haproxy.host}:${p.haproxy.statsPort}/`);
  }
  if (state.temporalCluster) {
    const c = state.temporalCluster;
    const roles = ['frontend', 'history', 'matching', 'worker'].map((r) => `${c.processes.filter((p) => p.role === r).length} ${r}`).join(', ');
    lines.push(`  cluster   ${c.address}  Temporal ${c.serverVersion} (${roles}) behind HAProxy, mTLS (server name ${c.serverName}), namespace ${c.namespace}`);
    lines.push(`            persistence ${c.postgres.host}:${c.postgres.port}/${c.persistenceDatabase}, visibility /${c.visibilityDatabase}, replica ${c.postgresReplica.host}; archival ${c.archivalUri}; started in ${(c.startMs / 1000).toFixed(1)} s`);
    if (state.temporal) lines.push(`            environment sandbox runs on the cluster; environment ops on the dev server`);
  }
  lines.push(`  config    ${state.configFile}`);
  return lines.join('\n');
}

export function registerStack(program: Command, globals: () => GlobalOptions): void {
  const stack = program.command('stack').description('the local sandbox stack: Temporal dev server, PostgreSQL, S3 (moto), DNS (BIND 9); optionally Kubernetes, a Patroni cluster and a Temporal cluster');

  stack
    .command('up')
    .description('start the local stack in the background and write its config file')
    .option('--dir <dir>', 'state directory', DEFAULT_STACK_DIR)
    .option('--only <components>', `comma-separated subset of ${ALL_COMPONENTS.join(',')}`)
    .option('--ui-port <port>', 'Temporal Web UI port (default: a free port)')
    .option('--headless', 'no Temporal Web UI')
    .option('--no-persist', 'keep Temporal state in memory only')
    .option('--with-kubernetes', 'also start the Kubernetes test control plane (built once by scripts/k8s/build)')
    .option('--with-patroni', `also start a Patroni cluster: etcd, three PostgreSQL nodes and HAProxy (database ${PATRONI_DATABASE_KEY} of the config)`)
    .option('--with-temporal-cluster', 'also start a production-shaped Temporal cluster (built once by scripts/temporal/build); the sandbox environment runs on it')
    .action(async (opts: { dir: string; only?: string; uiPort?: string; headless?: boolean; persist: boolean; withKubernetes?: boolean; withPatroni?: boolean; withTemporalCluster?: boolean }) => {
      const g = globals();
      let uiPort: number | undefined;
      if (!opts.headless) {
        uiPort = opts.uiPort !== undefined ? Number(opts.uiPort) : await freePort();
        if (!Number.isInteger(uiPort) || uiPort < 1 || uiPort > 65535) throw new UsageError(`--ui-port: expected a port number, found "${opts.uiPort}"`);
      }
      const state = await startStack({ dir: opts.dir, components: parseComponents(opts.only, opts.withKubernetes === true, opts.withPatroni === true, opts.withTemporalCluster === true), uiPort, persist: opts.persist, detach: true });
      if (g.json) printJson({ ok: true, stack: state });
      else process.stdout.write(`${describeStack(state)}\nstop it with: runbook stack down${opts.dir !== DEFAULT_STACK_DIR ? ` --dir ${opts.dir}` : ''}\n`);
    });

  stack
    .command('down')
    .description('stop the local stack started by stack up')
    .option('--dir <dir>', 'state directory', DEFAULT_STACK_DIR)
    .action(async (opts: { dir: string }) => {
      const g = globals();
      const state = readStackState(resolve(opts.dir));
      if (!state) {
        if (g.json) printJson({ ok: true, stopped: [] });
        else process.stdout.write(`no stack is running from ${resolve(opts.dir)}\n`);
        return;
      }
      await stopStack(state);
      const stopped = [state.temporal && 'temporal', state.postgres && 'postgres', state.postgresReplica && 'replica', state.s3 && 's3', state.dns && 'dns', state.kubernetes && 'kubernetes', state.patroni && 'patroni', state.temporalCluster && 'temporal-cluster'].filter(Boolean);
      if (g.json) printJson({ ok: true, stopped });
      else process.stdout.write(`stopped ${stopped.join(', ')}\n`);
    });

  stack
    .command('status')
    .description('show whether each component of the local stack is running')
    .option('--dir <dir>', 'state directory', DEFAULT_STACK_DIR)
    .action(async (opts: { dir: string }) => {
      const g = globals();
      const state = readStackState(resolve(opts.dir));
      const components = state ? await stackStatus(state) : [];
      const ok = components.length > 0 && components.every((c) => c.running);
      if (g.json) printJson({ ok, dir: resolve(opts.dir), components });
      else if (!state) process.stdout.write(`no stack is running from ${resolve(opts.dir)}; start one with: runbook stack up\n`);
      else {
        for (const c of components) process.stdout.write(`${c.component.padEnd(14)} ${c.running ? 'running' : 'DOWN   '}  pid ${c.pid}  ${c.endpoint}\n`);
      }
      process.exitCode = ok ? 0 : 1;
    });
}
