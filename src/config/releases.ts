import { z } from 'zod';
import { parseDuration } from './duration';
import { analysisProblems } from '../workflows/lib/analysis';

const duration = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `expected a positive duration such as "30s", "15m" or "90d", found "${text}"` });
    return z.NEVER;
  }
  return ms;
});

const k8sName = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'expected a Kubernetes name (lower-case letters, digits, -)');
const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'expected an environment variable name such as DATABASE_URL');

/**
 * A command run as a Kubernetes Job from the release's new image: the argv list (no shell unless you
 * name one), extra environment on top of the application container's own, and how long it may run.
 */
const jobCommandSchema = z
  .object({
    command: z
      .array(z.string().min(1).max(4096))
      .min(1, 'list the command and its arguments, e.g. ["./manage", "migrate"] (or ["sh", "-c", "..."])')
      .max(64),
    /** Plain values only: secrets reach the Job through the application container's own env (secretKeyRef) or envFrom. */
    env: z
      .array(z.object({ name: envName, value: z.string().max(4096) }).strict())
      .default([]),
    timeout: duration.prefault('10m'),
  })
  .strict();

/** An analysis as the runbooks take it (see README "analysis"), checked by the same rules as a rollout's. */
export const analysisConfig = z.record(z.string(), z.unknown()).superRefine((a, ctx) => {
  for (const p of analysisProblems(a, 'analysis')) {
    const [field, ...rest] = p.split(': ');
    ctx.addIssue({ code: 'custom', path: field.split('.').slice(1).map((k) => (/^\d+$/.test(k) ? Number(k) : k)), message: rest.join(': ') || p });
  }
});

/**
 * What a release of one Deployment does with its database: the migration Job, and what happens to the
 * database when anything fails after it (onFailure): a down-migration Job, a restore of the backup the
 * release took (behind a signed approval, since it discards writes made since), or a forward fix (the
 * release stops, pages and waits at a gate).
 */
export const releaseSchema = z
  .object({
    /** The key of the database under databases: (backed up before, migrated, handled on failure). */
    database: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'expected a database key from databases:'),
    /** The container whose image is released and whose spec (env, envFrom, volumes) the Jobs reuse (default: the first). */
    container: k8sName.optional(),
    migration: jobCommandSchema,
    /** The down-migration Job; required when onFailure is down-migration. */
    down: jobCommandSchema.optional(),
    onFailure: z.enum(['down-migration', 'restore', 'forward-fix'], { error: 'expected down-migration (run the down Job), restore (restore the pre-release backup after a signed approval) or forward-fix (stop, page, wait at a gate)' }),
    /** Restore-test the fresh backup before migrating (a verifyBackup child run). */
    restoreTest: z.boolean().default(false),
    /** After the rollout: measure the analysis for this long before the release counts as done. */
    watch: z.object({ duration: duration.prefault('10m'), interval: duration.prefault('1m') }).strict().prefault({}),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (r.onFailure === 'down-migration' && !r.down) ctx.addIssue({ code: 'custom', path: ['down'], message: 'onFailure: down-migration needs the down Job: down: { command: [...] }' });
    if (r.watch.interval > r.watch.duration) ctx.addIssue({ code: 'custom', path: ['watch', 'interval'], message: 'is longer than watch.duration' });
  });

export type ReleaseConfig = z.output<typeof releaseSchema>;

/** One environment of a promotion: its run, then a bake (with an analysis measured meanwhile) and an approval before the next. */
const stageSchema = z
  .object({
    environment: z.string().regex(/^[a-z][a-z0-9-]{0,30}$/, 'expected an environment name from environments:'),
    /** Wait this long after the environment's run before the next one (an abort meanwhile stops the promotion). */
    bake: duration.optional(),
    /** Measured in this environment during the bake (every intervalSeconds, count times); a failure stops the promotion. */
    analysis: analysisConfig.optional(),
    /** A signed approval before the next environment (approvers.promotion). */
    approval: z.boolean().default(false),
  })
  .strict();

/** A release or rollout promoted across environments in order, each against its own cluster. */
export const promotionSchema = z
  .object({
    runbook: z.enum(['release', 'rollout'], { error: 'expected release (backup, migration, rollout per environment) or rollout' }),
    deployment: k8sName,
    stages: z.array(stageSchema).min(2, 'a promotion needs at least two environments, in order'),
    /** After an abort or a failed stage: roll back the environments already promoted (default), or leave them. */
    onAbort: z.enum(['rollback-promoted', 'leave'], { error: 'expected rollback-promoted or leave' }).default('rollback-promoted'),
  })
  .strict()
  .superRefine((p, ctx) => {
    const seen = new Set<string>();
    p.stages.forEach((s, i) => {
      if (seen.has(s.environment)) ctx.addIssue({ code: 'custom', path: ['stages', i, 'environment'], message: `${s.environment} is listed twice` });
      seen.add(s.environment);
    });
  });

export type PromotionConfig = z.output<typeof promotionSchema>;

/** How the rollout runbooks treat Deployments managed by Argo CD or Flux. */
export const gitopsSchema = z
  .object({
    /**
     * refuse (default): a Deployment with Argo CD or Flux markers is not touched, the run says which;
     * proceed: the GitOps tool is set up to ignore what a rollout changes (Argo CD ignoreDifferences,
     * Flux's IfNotPresent), so the rollout goes ahead and records the manager; suspend: Flux objects get
     * kustomize.toolkit.fluxcd.io/reconcile: disabled for the rollout and back afterwards (Argo CD objects
     * are refused: Argo CD has no per-object switch).
     */
    onManaged: z.enum(['refuse', 'proceed', 'suspend'], { error: 'expected refuse, proceed or suspend' }).default('refuse'),
  })
  .strict();
