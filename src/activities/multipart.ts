/**
 * Multipart uploads of a stream whose length is not known in advance (a dump as pg_dump writes it),
 * with part sizes that grow with the dump so it stays within S3's part-count limit. S3 allows 10,000
 * parts per object and at least 5 MiB per part (except the last): fixed 8 MiB parts cap an object near
 * 78 GiB. Here the first half of the parts are sized from an estimate of the dump (the database's size),
 * and each later quarter, eighth, ... doubles the part size, so an estimate that is several times too
 * small still fits: about log2(maxParts) times the estimate before the limit.
 */
import { AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { classify, failure } from './errors';
import type { ObjectStore } from './s3';

export const S3_MAX_PARTS = 10_000;
export const S3_MIN_PART_BYTES = 5 * 1024 * 1024;
export const S3_MAX_PART_BYTES = 5 * 1024 * 1024 * 1024;
export const DEFAULT_PART_BYTES = 8 * 1024 * 1024;
const MIB = 1024 * 1024;

export interface PartPlan {
  maxParts: number;
  /** Size of the parts in the first half of the budget. */
  baseBytes: number;
}

/** The plan for a dump of about `estimateBytes`: the first half of the parts alone holds the estimate. */
export function planParts(estimateBytes: number, maxParts = S3_MAX_PARTS): PartPlan {
  if (!Number.isInteger(maxParts) || maxParts < 2) throw new Error(`maxParts must be an integer of at least 2, found ${maxParts}`);
  const half = Math.max(1, Math.floor(maxParts / 2));
  const sized = Math.ceil(Math.max(0, estimateBytes) / half / MIB) * MIB;
  return { maxParts, baseBytes: Math.min(S3_MAX_PART_BYTES, Math.max(DEFAULT_PART_BYTES, sized)) };
}

/**
 * The size of part `index` (0-based): the base for the first half of the budget, then doubling each
 * time half of the remaining parts are used.
 */
export function partSize(plan: PartPlan, index: number): number {
  let tier = 0;
  let bound = plan.maxParts / 2;
  while (index >= bound && tier < 40) {
    tier++;
    bound += (plan.maxParts - bound) / 2;
  }
  return Math.min(S3_MAX_PART_BYTES, plan.baseBytes * 2 ** tier);
}

/** How much a plan can hold before it runs out of parts. */
export function planCapacity(plan: PartPlan): number {
  let total = 0;
  for (let i = 0; i < plan.maxParts; i++) total += partSize(plan, i);
  return total;
}

export interface UploadedObject {
  parts: number;
  partSizes: number[];
  bytes: number;
}

/**
 * Uploads the stream part by part, one part in flight while the next fills (memory: about two parts).
 * On any failure the upload is aborted, so no invisible parts are left behind; a stream longer than
 * the plan can hold fails before the limit rather than at it.
 */
export async function uploadInGrowingParts(store: ObjectStore, key: string, body: Readable, contentType: string, plan: PartPlan): Promise<UploadedObject> {
  const s3 = store.s3;
  const Bucket = store.bucket;
  let uploadId: string | undefined;
  const etags: { PartNumber: number; ETag: string }[] = [];
  const partSizes: number[] = [];
  let inFlight: Promise<void> | undefined;
  let bytes = 0;
  const send = (index: number, data: Buffer) =>
    s3.send(new UploadPartCommand({ Bucket, Key: key, UploadId: uploadId, PartNumber: index + 1, Body: data, ContentLength: data.length })).then((r) => {
      etags[index] = { PartNumber: index + 1, ETag: r.ETag! };
    });
  try {
    uploadId = (await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: key, ContentType: contentType }))).UploadId;
    let chunks: Buffer[] = [];
    let filled = 0;
    const flush = async () => {
      const index = partSizes.length;
      if (index >= plan.maxParts) throw failure('DumpFailed', `the dump outgrew its upload plan: more than ${plan.maxParts} parts (base part ${plan.baseBytes} bytes)`);
      const data = Buffer.concat(chunks, filled);
      chunks = [];
      filled = 0;
      partSizes.push(data.length);
      const previous = inFlight;
      inFlight = (async () => {
        await previous;
        await send(index, data);
      })();
      // Awaited below or at the end; a failure meanwhile must not be an unhandled rejection (it would end the worker).
      inFlight.catch(() => undefined);
      // The part before this one must be stored before another fills: at most two parts in memory.
      await previous;
    };
    for await (const chunk of body as AsyncIterable<Buffer>) {
      let rest = chunk;
      while (rest.length > 0) {
        const want = partSize(plan, partSizes.length) - filled;
        const take = rest.subarray(0, want);
        chunks.push(take);
        filled += take.length;
        bytes += take.length;
        rest = rest.subarray(take.length);
        if (filled === partSize(plan, partSizes.length)) await flush();
      }
    }
    if (filled > 0 || partSizes.length === 0) await flush();
    await inFlight;
    await s3.send(new CompleteMultipartUploadCommand({ Bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: etags } }));
    return { parts: partSizes.length, partSizes, bytes };
  } catch (err) {
    await inFlight?.catch(() => undefined);
    if (uploadId) await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: key, UploadId: uploadId })).catch(() => undefined);
    throw classify(err, `uploading ${key} (bucket ${Bucket})`);
  }
}
