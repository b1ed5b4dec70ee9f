import type { Planners } from '../recording';
import { backupPlanners } from './backups';
import { commonPlanners, reportPlanners } from './common';
import { drillPlanners } from './drill';
import { kubernetesPlanners } from './kubernetes';

/** Every planner a plan worker has: an activity that changes something and has none stops a plan where the real run would call it. */
export const PLANNERS: Planners = { ...commonPlanners, ...reportPlanners, ...drillPlanners, ...backupPlanners, ...kubernetesPlanners };
