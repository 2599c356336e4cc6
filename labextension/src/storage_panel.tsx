/**
 * The sidebar's Storage panel: browse a bucket's folders, upload into the folder shown,
 * download or delete an object, and hand picked objects to the Jobs form as inputs.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { deleteIcon, downloadIcon, folderIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ModelPanel } from './model_panel';

import { ApiError } from './api';
import { formatBytes } from './platform_model';
import { StorageModel } from './storage';
import { breadcrumbs, formatModified, nameIn } from './storage_model';

export interface IStoragePanelOptions {
  model: StorageModel;
  /** Add these objects to the Jobs tab's New job form as inputs, and show it. */
  useAsInputs: (bucket: string, keys: string[]) => void;
}

export class StoragePanel extends ModelPanel<StorageModel> {
  constructor(private readonly options: IStoragePanelOptions) {
    super(options.model, {
      id: 'dataharbour-storage',
      label: 'Storage',
      caption: 'Object storage: browse, upload, download, use as job input'
    });
  }

  protected renderContent(): JSX.Element {
    return <Storage {...this.options} />;
  }
}

function Storage(props: IStoragePanelOptions): JSX.Element {
  const { model } = props;
  const [busy, setBusy] = React.useState<string | null>(null);
  const [actionError, setActionError] = React.useState<string | null>(null);
  const fileInput = React.useRef<HTMLInputElement>(null);

  if (model.configured === false) {
    return <NotConfigured onRetry={() => void model.reload()} />;
  }
  if (model.configured === null) {
    return (
      <div className="dh-Storage">
        {model.error ? <div className="dh-Error" role="alert">{model.error}</div> : <p className="dh-Muted">Loading…</p>}
        <button className="jp-mod-styled" onClick={() => void model.reload()}>Retry</button>
      </div>
    );
  }

  /** Run an action that may fail; its error is shown in words above the listing. */
  const act = async (label: string, action: () => Promise<void>) => {
    setActionError(null);
    setBusy(label);
    try {
      await action();
    } catch (e) {
      setActionError(`${label}: ${(e as Error).message}`);
    } finally {
      setBusy(null);
    }
  };

  const onFiles = async (files: FileList | null) => {
    for (const file of Array.from(files ?? [])) {
      await act(`Uploading ${file.name}`, () => model.upload(file));
    }
    if (fileInput.current) {
      fileInput.current.value = ''; // the same file can be picked again
    }
  };

  /** An earlier action's error is about what was shown before: it goes once the user moves on. */
  const moveOn = (next: () => Promise<void>) => {
    setActionError(null);
    void next();
  };
  const go = (bucket: string, prefix: string) => moveOn(() => model.open(bucket, prefix));

  const remove = async (key: string) => {
    const result = await showDialog({
      title: 'Delete object?',
      body: `s3://${model.bucket}/${key} is deleted for good.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (result.button.accept) {
      await act(`Deleting ${nameIn(model.prefix, key)}`, async () => {
        try {
          await model.remove(key);
        } catch (e) {
          if (e instanceof ApiError && e.status === 404) {
            void model.open(model.bucket, model.prefix); // gone meanwhile: show the folder as it is now
          }
          throw e;
        }
      });
    }
  };

  const listing = model.listing;
  const objects = listing?.objects ?? []; // without the folder's own marker (the server leaves it out)
  const selected = [...model.selected];
  return (
    <div className="dh-Storage">
      {/* Stays in view over a long listing: an action's error shows where the eye is. */}
      <div className="dh-StorageHead">
        <div className="dh-StorageBar">
          <select className="jp-mod-styled dh-BucketSelect" value={model.bucket} title="Bucket"
            onChange={e => go(e.target.value, '')}>
            {model.bucket === '' && <option value="">No bucket</option>}
            {model.buckets.map(bucket => <option key={bucket.name} value={bucket.name}>{bucket.name}</option>)}
          </select>
          <button className="jp-mod-styled" title="List again" onClick={() => moveOn(() => model.reload())}>Refresh</button>
        </div>
        <nav className="dh-Breadcrumbs" aria-label="Folder">
          {breadcrumbs(model.bucket, model.prefix).map((crumb, i, all) => (
            <React.Fragment key={crumb.prefix}>
              {i > 0 && <span className="dh-Muted">/</span>}
              {i === all.length - 1 ? (
                <span className="dh-Crumb dh-mod-current">{crumb.label}</span>
              ) : (
                <button className="dh-Crumb" onClick={() => go(model.bucket, crumb.prefix)}>{crumb.label}</button>
              )}
            </React.Fragment>
          ))}
        </nav>
        {model.bucket && (
          <div className="dh-Buttons">
            <input ref={fileInput} type="file" multiple className="dh-UploadInput" hidden
              onChange={e => void onFiles(e.target.files)} />
            <button className="jp-mod-styled dh-Upload" disabled={busy !== null} onClick={() => fileInput.current?.click()}>
              Upload…
            </button>
            <button className="jp-mod-styled jp-mod-accept dh-UseAsInput" disabled={selected.length === 0}
              title="Add the picked objects to the New job form as inputs"
              onClick={() => props.useAsInputs(model.bucket, selected)}>
              Use as job input{selected.length ? ` (${selected.length})` : ''}
            </button>
          </div>
        )}
        {busy && <p className="dh-Muted">{busy}…</p>}
        {actionError && <div className="dh-Error" role="alert">{actionError}</div>}
        {model.error && <div className="dh-Error" role="alert">{model.error}</div>}
      </div>
      {!model.bucket && !model.error && <p className="dh-Empty">The credentials see no bucket.</p>}
      {listing && listing.folders.length === 0 && objects.length === 0 && (
        <p className="dh-Empty">This folder is empty.</p>
      )}
      {listing && (
        <ul className="dh-ObjectList">
          {listing.folders.map(folder => (
            <li key={folder} className="dh-Folder">
              <button className="dh-FolderName" onClick={() => go(model.bucket, folder)}>
                <folderIcon.react tag="span" className="dh-FolderIcon" />
                {nameIn(model.prefix, folder)}/
              </button>
            </li>
          ))}
          {objects.map(object => (
            <li key={object.key} className="dh-Object" data-key={object.key}>
              <label className="dh-ObjectName" title={object.key}>
                <input type="checkbox" checked={model.selected.has(object.key)} onChange={() => model.toggle(object.key)} />
                <span>{nameIn(model.prefix, object.key)}</span>
              </label>
              <span className="dh-ObjectSize">{formatBytes(object.size)}</span>
              <span className="dh-Muted dh-ObjectTime">{formatModified(object.last_modified)}</span>
              <span className="dh-ObjectActions">
                <a className="dh-Download" href={model.downloadUrl(object.key)} download={nameIn(model.prefix, object.key)}
                  title={`Download ${nameIn(model.prefix, object.key)}`} aria-label="Download">
                  <downloadIcon.react tag="span" />
                </a>
                <button className="dh-DeleteObject" title={`Delete ${nameIn(model.prefix, object.key)}`} aria-label="Delete"
                  onClick={() => void remove(object.key)}>
                  <deleteIcon.react tag="span" />
                </button>
              </span>
            </li>
          ))}
        </ul>
      )}
      {model.loading && <p className="dh-Muted">Loading…</p>}
      {listing?.next_cursor && !model.loading && (
        <button className="jp-mod-styled dh-LoadMore" onClick={() => void model.loadMore()}>Load more</button>
      )}
    </div>
  );
}

function NotConfigured(props: { onRetry: () => void }): JSX.Element {
  return (
    <div className="dh-Storage dh-StorageNotConfigured">
      <p>Object storage is not configured on this server.</p>
      <p>
        Set <code>MINIO_ENDPOINT</code> (<code>host:port</code> or a URL), <code>MINIO_ACCESS_KEY</code>,{' '}
        <code>MINIO_SECRET_KEY</code> and <code>MINIO_BUCKET_NAME</code> (the default bucket; <code>MINIO_SECURE</code>{' '}
        for https) in the Jupyter server's environment, or in <code>c.DataHarbourApp.service_environment</code>, then
        restart the server.
      </p>
      <button className="jp-mod-styled" onClick={props.onRetry}>Check again</button>
    </div>
  );
}
