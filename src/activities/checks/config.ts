/**
 * The readiness audit's checks of the environment's own configuration: the recovery targets.
 */
import type { CheckId } from '../../checklist/catalog';
import { CheckDeps, fail, pass, VerdictFn } from './support';

export function createConfigChecks(deps: CheckDeps): Record<Extract<CheckId, 'checkRtoDefined' | 'checkRpoDefined'>, VerdictFn> {
  const { env } = deps;
  return {
    async checkRtoDefined() {
      const rto = env.targets.rto;
      return rto !== undefined ? pass(`RTO target ${rto / 1000} s`, { rtoSeconds: rto / 1000 }) : fail('no targets.rto in the config', { rtoSeconds: null });
    },
    async checkRpoDefined() {
      const rpo = env.targets.rpo;
      return rpo !== undefined ? pass(`RPO target ${rpo / 1000} s`, { rpoSeconds: rpo / 1000 }) : fail('no targets.rpo in the config', { rpoSeconds: null });
    },
  };
}
