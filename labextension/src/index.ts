/**
 * DataHarbour for JupyterLab: a sidebar to submit Spark jobs and watch them live, commands
 * for the palette, the file browser and the notebook toolbar, job-end notifications and a
 * status bar item.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, Notification, ToolbarButton } from '@jupyterlab/apputils';
import { CodeEditor, IEditorServices } from '@jupyterlab/codeeditor';
import { DocumentRegistry, IDocumentWidget } from '@jupyterlab/docregistry';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { INotebookModel, NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { IFrame, LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import iconSvg from '../style/icon.svg';
import { DataHarbourApi } from './api';
import { ClustersModel } from './clusters';
import { IClusterInfo } from './clusters_model';
import { ClustersPanel } from './clusters_panel';
import { JobsModel, localFollowedStore } from './jobs';
import { ACTIVE_STATES as ACTIVE, IJob } from './model';
import { EditorFactory, JobsPanel } from './jobs_panel';
import { NotebookJobs, isNotebookJob } from './notebook_job';
import { PlatformModel } from './platform';
import { PlatformPanel } from './platform_panel';
import { DataHarbourSidebar } from './sidebar';
import { StorageModel } from './storage';
import { StoragePanel } from './storage_panel';
import { LiveStream } from './stream';

const PLUGIN_ID = 'dataharbour-ext:plugin';

export const dataharbourIcon = new LabIcon({ name: 'dataharbour-ext:icon', svgstr: iconSvg });

namespace CommandIDs {
  export const open = 'dataharbour:open';
  export const refresh = 'dataharbour:refresh';
  export const openPlatform = 'dataharbour:open-platform';
  export const openClusters = 'dataharbour:open-clusters';
  export const runCurrent = 'dataharbour:run-current-file';
  export const runSelected = 'dataharbour:run-selected-file';
  export const newJob = 'dataharbour:new-job';
  export const killJob = 'dataharbour:kill-job';
  export const restartJob = 'dataharbour:restart-job';
  export const deleteJob = 'dataharbour:delete-job';
}

interface ISettings {
  defaultCluster: string;
  notifications: boolean;
  logLinesKept: number;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Submit Spark jobs from JupyterLab and watch their state, progress and logs live.',
  autoStart: true,
  optional: [ICommandPalette, ISettingRegistry, ILayoutRestorer, IStatusBar, IDefaultFileBrowser, IEditorServices],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null,
    statusBar: IStatusBar | null,
    fileBrowser: IDefaultFileBrowser | null,
    editorServices: IEditorServices | null
  ) => {
    const settings: ISettings = { defaultCluster: 'spark-cluster-default', notifications: true, logLinesKept: 2000 };
    const serverSettings = ServerConnection.makeSettings();
    const api = new DataHarbourApi(serverSettings);
    const stream = new LiveStream(serverSettings, `lab-${randomId()}`);
    const model = new JobsModel(api, stream, localFollowedStore(`dataharbour:followed:${serverSettings.baseUrl}`));
    const clusters = new ClustersModel(api, stream);

    /** A proxied Spark UI (a driver's or a master's) in a JupyterLab tab; the open one comes to the front. */
    const openUi = (id: string, url: string, label: string) => {
      const open = Array.from(app.shell.widgets('main')).find(widget => widget.id === id);
      if (open) {
        app.shell.activateById(id);
        return;
      }
      // Same origin: the proxied UI loads its own pages and data through Jupyter's auth.
      const frame = new IFrame({ sandbox: ['allow-scripts', 'allow-same-origin', 'allow-forms'] });
      frame.url = url;
      const widget = new MainAreaWidget({ content: frame });
      widget.id = id;
      widget.title.label = label;
      widget.title.icon = dataharbourIcon;
      widget.title.closable = true;
      app.shell.add(widget, 'main');
    };
    const openSparkUi = (job: IJob) =>
      openUi(`dataharbour-spark-ui-${job.id}`, api.sparkUiUrl(job.id), `Spark UI: ${job.name}`);
    const openMasterUi = (cluster: IClusterInfo) => {
      const url = api.masterUiUrl(cluster);
      if (url) {
        openUi(`dataharbour-master-ui-${cluster.id}`, url, `Spark master: ${cluster.name}`);
      }
    };

    // JupyterLab's own CodeMirror for the job's code (a plain text area without it).
    const makeEditor: EditorFactory | undefined = editorServices
      ? (host, initial, onChange) => {
          const editorModel = new CodeEditor.Model({ mimeType: 'text/x-python' });
          editorModel.sharedModel.setSource(initial);
          editorModel.sharedModel.changed.connect(() => onChange(editorModel.sharedModel.getSource()));
          const editor = editorServices.factoryService.newInlineEditor({
            host,
            model: editorModel,
            config: { lineNumbers: true }
          });
          return {
            dispose: () => {
              editor.dispose();
              editorModel.dispose();
            }
          };
        }
      : undefined;

    const sidebar = new DataHarbourSidebar(stream);
    sidebar.title.icon = dataharbourIcon;
    const panel = new JobsPanel({ model, clusters, stream, openSparkUi, makeEditor, settings: () => settings });
    sidebar.addPanel(panel, 100);
    const clustersPanel = new ClustersPanel({ model: clusters, jobs: model, openMasterUi });
    sidebar.addPanel(clustersPanel, 150);
    const storagePanel = new StoragePanel({
      model: new StorageModel(api),
      useAsInputs: (bucket, keys) => {
        panel.addInputs(bucket, keys);
        showJobs();
      }
    });
    sidebar.addPanel(storagePanel, 175);
    const platform = new PlatformPanel(new PlatformModel(api, stream));
    sidebar.addPanel(platform, 200);
    app.shell.add(sidebar, 'left', { rank: 800 });
    restorer?.add(sidebar, sidebar.id);
    /** The sidebar, on one of its tabs. */
    const showTab = (tab: Widget) => {
      app.shell.activateById(sidebar.id);
      sidebar.showPanel(tab);
    };
    const showJobs = () => showTab(panel);

    stream.connect();
    void model.refresh();

    model.ended.connect((_, job) => {
      if (!settings.notifications || isNotebookJob(job)) {
        return; // a notebook job's end is told with its output notebook (notebook_job.ts)
      }
      const actions = [{ label: 'Show details', callback: () => showJob(job.id) }];
      if (job.state === 'succeeded') {
        Notification.success(`Spark job "${job.name}" succeeded`, { autoClose: 8000, actions });
      } else if (job.state === 'killed') {
        Notification.info(`Spark job "${job.name}" was killed`, { autoClose: 5000, actions });
      } else {
        const why = job.error ? `: ${job.error}` : '';
        Notification.error(`Spark job "${job.name}" ${job.state}${why}`, { autoClose: false, actions });
      }
    });

    const showJob = (id: string) => {
      showJobs();
      panel.showJob(id);
    };
    const notebookJobs = new NotebookJobs({ app, model, settings: () => settings, showJob });
    const isNotebook = (path: string) => path.endsWith('.ipynb'); // as the server tells a notebook

    const submitFile = async (path: string) => {
      const name = path.split('/').pop() || path;
      try {
        const job = await model.submit({ name, file: path, cluster_id: settings.defaultCluster || undefined });
        Notification.info(`Spark job "${name}" submitted`, {
          autoClose: 4000,
          actions: [{ label: 'Show', callback: () => showJob(job.id) }]
        });
      } catch (error) {
        Notification.error(`"${name}" could not be submitted: ${(error as Error).message}`, { autoClose: false });
      }
    };

    /** Save (the job runs what is on disk), then run a notebook as a notebook job, a `.py` as a script. */
    const submitDocument = async (widget: IDocumentWidget) => {
      try {
        if (widget.context.model.dirty) {
          await widget.context.save();
        }
      } catch (error) {
        Notification.error(`"${widget.context.path}" could not be saved: ${(error as Error).message}`);
        return;
      }
      if (isNotebook(widget.context.path)) {
        await notebookJobs.run(widget.context.path, widget.context.localPath);
      } else {
        await submitFile(widget.context.path);
      }
    };

    const currentPath = (): string | null => {
      const widget = app.shell.currentWidget as IDocumentWidget | null;
      const path = widget?.context?.path;
      return path && /\.(py|ipynb)$/.test(path) ? path : null;
    };

    app.commands.addCommand(CommandIDs.open, {
      label: 'DataHarbour: Open Spark Jobs',
      icon: dataharbourIcon,
      execute: showJobs
    });
    app.commands.addCommand(CommandIDs.openPlatform, {
      label: 'DataHarbour: Open Platform Monitoring',
      icon: dataharbourIcon,
      execute: () => showTab(platform)
    });
    app.commands.addCommand(CommandIDs.openClusters, {
      label: 'DataHarbour: Open Spark Clusters',
      icon: dataharbourIcon,
      execute: () => showTab(clustersPanel)
    });
    app.commands.addCommand(CommandIDs.newJob, {
      label: 'DataHarbour: New Spark Job',
      icon: dataharbourIcon,
      execute: () => {
        showJobs();
        panel.showForm();
      }
    });
    // The job shown in the sidebar's details view, from the palette.
    const jobCommand = (id: string, label: string, when: (job: IJob) => boolean, act: (job: IJob) => Promise<void>) =>
      app.commands.addCommand(id, {
        label: () => (panel.selectedJob ? `DataHarbour: ${label} "${panel.selectedJob.name}"` : `DataHarbour: ${label}`),
        isEnabled: () => Boolean(panel.selectedJob && when(panel.selectedJob)),
        execute: async () => {
          const job = panel.selectedJob;
          if (!job) {
            return;
          }
          try {
            await act(job);
          } catch (error) {
            Notification.error(`${label} "${job.name}": ${(error as Error).message}`, { autoClose: false });
          }
        }
      });
    jobCommand(CommandIDs.killJob, 'Kill Job', job => ACTIVE.has(job.state), job => model.kill(job.id));
    jobCommand(CommandIDs.restartJob, 'Restart Job', job => !ACTIVE.has(job.state), job => model.restart(job.id));
    jobCommand(CommandIDs.deleteJob, 'Delete Job', job => !ACTIVE.has(job.state), async job => {
      await model.remove(job.id);
      panel.showJob('');
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'DataHarbour: Refresh Jobs',
      execute: () => model.refresh()
    });
    app.commands.addCommand(CommandIDs.runCurrent, {
      label: 'DataHarbour: Run Current File as Spark Job',
      icon: dataharbourIcon,
      isEnabled: () => currentPath() !== null,
      execute: async () => {
        const widget = app.shell.currentWidget as IDocumentWidget | null;
        if (widget && currentPath()) {
          await submitDocument(widget);
        }
      }
    });
    app.commands.addCommand(CommandIDs.runSelected, {
      label: 'Run as Spark Job',
      icon: dataharbourIcon,
      execute: async () => {
        const item = fileBrowser?.selectedItems().next();
        const path = item && !item.done ? item.value.path : null;
        if (path) {
          await (isNotebook(path) ? notebookJobs.run(path) : submitFile(path));
        }
      }
    });
    for (const fileType of ['python', 'notebook']) {
      app.contextMenu.addItem({
        command: CommandIDs.runSelected,
        selector: `.jp-DirListing-item[data-file-type="${fileType}"]`,
        rank: 50
      });
    }
    for (const command of Object.values(CommandIDs)) {
      palette?.addItem({ command, category: 'DataHarbour' });
    }

    // The notebook toolbar: run the notebook as a job, with parameters.
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (widget: NotebookPanel, _context: DocumentRegistry.IContext<INotebookModel>) => {
        const button = new ToolbarButton({
          icon: dataharbourIcon,
          tooltip: 'Run this notebook as a job: asks for its parameters, opens the executed notebook when it ends',
          label: 'Run notebook as job',
          onClick: () => void submitDocument(widget)
        });
        widget.toolbar.insertItem(10, 'dataharbour-run', button);
        return button;
      }
    });

    if (statusBar) {
      const item = new Widget();
      item.addClass('dh-StatusItem');
      const render = () => {
        const running = model.runningCount();
        item.node.textContent = `Spark: ${running} running`;
        item.node.title = 'DataHarbour Spark jobs starting or running';
      };
      model.changed.connect(render);
      render();
      item.node.onclick = showJobs;
      statusBar.registerStatusItem('dataharbour-ext:running-jobs', { item, align: 'left', rank: 50 });
    }

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(loaded => {
          const apply = () => {
            settings.defaultCluster = loaded.get('defaultCluster').composite as string;
            settings.notifications = loaded.get('notifications').composite as boolean;
            settings.logLinesKept = loaded.get('logLinesKept').composite as number;
          };
          apply();
          loaded.changed.connect(apply);
        })
        .catch(reason => console.error('DataHarbour: settings could not be loaded', reason));
    }
  }
};

function randomId(): string {
  return Math.random().toString(36).slice(2, 10);
}

export default plugin;
