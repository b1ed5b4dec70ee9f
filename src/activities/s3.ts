import { AbortMultipartUploadCommand, DeleteObjectsCommand, GetObjectCommand, HeadBucketCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Readable } from 'node:stream';
import type { LoadedConfig } from '../config/load';
import type { EnvironmentConfig } from '../config/schema';
import { readSecret } from '../config/secrets';
import { classify, failure } from './errors';

export type BackupsConfig = NonNullable<EnvironmentConfig['backups']>;

export function createS3Client(loaded: LoadedConfig, backups: BackupsConfig): S3Client {
  const credentials =
    backups.accessKeyId && backups.secretAccessKey
      ? { accessKeyId: readSecret(backups.accessKeyId, loaded.baseDir), secretAccessKey: readSecret(backups.secretAccessKey, loaded.baseDir) }
      : undefined;
  return new S3Client({ region: backups.region, endpoint: backups.endpoint, forcePathStyle: backups.forcePathStyle, credentials, maxAttempts: 3 });
}

/** The backup bucket: small JSON/text objects, streamed uploads and downloads, listing and deletion. */
export class ObjectStore {
  constructor(
    readonly s3: S3Client,
    readonly bucket: string,
  ) {}

  private wrap<T>(what: string, p: Promise<T>): Promise<T> {
    return p.catch((err) => {
      throw classify(err, `${what} (bucket ${this.bucket})`);
    });
  }

  async checkBucket(): Promise<void> {
    await this.s3.send(new HeadBucketCommand({ Bucket: this.bucket })).catch((err: unknown) => {
      // HeadBucket answers a bare 404 (or 403) without an error body; name the problem and the fix.
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 404) throw failure('BucketNotFound', `bucket ${this.bucket} does not exist (check backups.bucket and backups.endpoint/region)`);
      if (status === 403) throw failure('PermissionDenied', `access to bucket ${this.bucket} is denied (check backups.accessKeyId/secretAccessKey)`);
      throw classify(err, `checking the backup bucket ${this.bucket}`);
    });
  }

  async putText(key: string, body: string, contentType: string): Promise<void> {
    await this.wrap(`writing ${key}`, this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: contentType })));
  }

  putJson(key: string, value: unknown): Promise<void> {
    return this.putText(key, `${JSON.stringify(value, null, 2)}\n`, 'application/json');
  }

  async getJson<T>(key: string): Promise<T> {
    return JSON.parse(await this.getText(key)) as T;
  }

  async getText(key: string): Promise<string> {
    const res = await this.wrap(`reading ${key}`, this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key })));
    return res.Body!.transformToString();
  }

  async exists(key: string): Promise<boolean> {
    const res = await this.wrap(`listing ${key}`, this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: key, MaxKeys: 1 })));
    return (res.Contents ?? []).some((o) => o.Key === key);
  }

  async list(prefix: string): Promise<{ key: string; size: number; lastModified?: Date }[]> {
    const out: { key: string; size: number; lastModified?: Date }[] = [];
    let token: string | undefined;
    do {
      const res = await this.wrap(`listing ${prefix}`, this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token })));
      for (const o of res.Contents ?? []) if (o.Key) out.push({ key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified });
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  async deleteKeys(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      await this.wrap('deleting objects', this.s3.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } })));
    }
  }

  /** Multipart upload of a stream of unknown length: parts are sent as they fill, nothing is spooled to disk. */
  async upload(key: string, body: Readable, contentType: string): Promise<void> {
    const upload = new Upload({ client: this.s3, params: { Bucket: this.bucket, Key: key, Body: body, ContentType: contentType }, partSize: 8 * 1024 * 1024, queueSize: 2, leavePartsOnError: false });
    await this.wrap(`uploading ${key}`, upload.done());
  }

  /**
   * Aborts unfinished multipart uploads of one key. An upload whose worker died (or whose abort
   * failed while the server was away) keeps its parts, invisible and billed, until someone aborts it.
   */
  async abortIncompleteUploads(key: string): Promise<number> {
    const res = await this.wrap(`listing unfinished uploads of ${key}`, this.s3.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: key })));
    const stale = (res.Uploads ?? []).filter((u) => u.Key === key && u.UploadId);
    for (const u of stale) await this.wrap(`aborting an unfinished upload of ${key}`, this.s3.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: u.UploadId })));
    return stale.length;
  }

  async download(key: string): Promise<{ body: Readable; size: number }> {
    const res = await this.wrap(`reading ${key}`, this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key })));
    return { body: res.Body as Readable, size: res.ContentLength ?? 0 };
  }
}
