/**
 * Object storage as the API returns it, and pure functions over it for the Storage panel
 * (unit-tested with jest): breadcrumbs, names within a folder, job inputs from keys.
 */

export interface IBucketInfo {
  name: string;
  created?: string | null;
}

export interface IBucketList {
  buckets: IBucketInfo[];
  default_bucket?: string | null;
}

export interface IObjectInfo {
  key: string;
  size: number;
  etag?: string | null;
  last_modified?: string | null;
}

export interface IObjectList {
  bucket: string;
  prefix: string;
  delimiter: string;
  folders: string[];
  objects: IObjectInfo[];
  next_cursor?: string | null;
}

/** One of a job's inputs (`POST /jobs/` `inputs`): an object, downloaded to `as` under DATAHARBOUR_INPUT_DIR. */
export interface IJobInput {
  uri: string;
  as: string;
}

export interface ICrumb {
  label: string;
  prefix: string;
}

/** The server's answer on every storage route when MINIO_ENDPOINT is unset. */
export const NOT_CONFIGURED = 'object storage is not configured';

export function isNotConfigured(status: number, message: string): boolean {
  return status === 404 && message.includes(NOT_CONFIGURED);
}

/** The bucket's root, then one crumb per folder of `prefix` (`raw/2024/` → raw, 2024). */
export function breadcrumbs(bucket: string, prefix: string): ICrumb[] {
  const crumbs: ICrumb[] = [{ label: bucket, prefix: '' }];
  let path = '';
  for (const part of prefix.split('/').filter(p => p)) {
    path += `${part}/`;
    crumbs.push({ label: part, prefix: path });
  }
  return crumbs;
}

/** A folder's or object's name as shown inside `prefix` (`raw/2024/` in `raw/` → `2024`). */
export function nameIn(prefix: string, path: string): string {
  const rest = path.startsWith(prefix) ? path.slice(prefix.length) : path;
  return rest.endsWith('/') ? rest.slice(0, -1) : rest;
}

/** The next page added to what is shown; a folder already there is not repeated. */
export function appendPage(shown: IObjectList | null, page: IObjectList): IObjectList {
  if (!shown || shown.bucket !== page.bucket || shown.prefix !== page.prefix) {
    return page;
  }
  const folders = [...shown.folders, ...page.folders.filter(f => !shown.folders.includes(f))];
  return { ...page, folders, objects: [...shown.objects, ...page.objects] };
}

export function s3Uri(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/** `bucket/key` as a URL path, each part escaped but the key's slashes kept. */
export function objectPath(bucket: string, key: string): string {
  return [bucket, ...key.split('/')].map(encodeURIComponent).join('/');
}

/** The key's last part: where the job finds the object (`raw/2024/sales.csv` → `sales.csv`). */
export function inputName(key: string): string {
  const parts = key.split('/').filter(p => p);
  return parts[parts.length - 1] ?? key;
}

/**
 * `existing` inputs with the objects `keys` of `bucket` added: one already there is not added
 * twice, and an `as` name taken by another input becomes the whole key (then bucket/key).
 */
export function addInputs(existing: IJobInput[], bucket: string, keys: string[]): IJobInput[] {
  const inputs = [...existing];
  for (const key of keys) {
    const uri = s3Uri(bucket, key);
    if (inputs.some(input => input.uri === uri)) {
      continue;
    }
    const taken = (name: string) => inputs.some(input => input.as === name);
    const candidates = [inputName(key), key, `${bucket}/${key}`];
    const name = candidates.find(candidate => !taken(candidate)) ?? `${bucket}/${key}`;
    inputs.push({ uri, as: name });
  }
  return inputs;
}

/** A listing's time, short and local (`2024-06-01 14:03`). */
export function formatModified(iso: string | null | undefined): string {
  if (!iso) {
    return '';
  }
  const date = new Date(iso);
  if (isNaN(date.getTime())) {
    return '';
  }
  const pad = (n: number) => String(n).padStart(2, '0');
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}`
  );
}
