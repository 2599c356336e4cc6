/**
 * Notebooks as jobs: a dialog asks for the run's parameters (prefilled from the notebook's
 * cell tagged `parameters`), a notebook job is submitted, and when it ends its executed
 * notebook is saved next to the notebook and opened in a tab.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { IDocumentWidget } from '@jupyterlab/docregistry';
import { Widget } from '@lumino/widgets';

import { ApiError } from './api';
import { JobsModel } from './jobs';
import { IJob } from './model';
import { ICellSummary, IParameter, JSONValue, outputPath, parametersCell, readParameters } from './notebook_job_model';

export interface INotebookJobsOptions {
  app: JupyterFrontEnd;
  model: JobsModel;
  settings: () => { defaultCluster: string; notifications: boolean };
  showJob: (id: string) => void;
}

/** A notebook job, as the API returns it: a job whose `source` is `notebook`. */
export function isNotebookJob(job: IJob): boolean {
  return job.source === 'notebook';
}

export class NotebookJobs {
  constructor(private readonly options: INotebookJobsOptions) {
    // `ended` tells of this tab's own jobs (submitted or restarted here) only.
    options.model.ended.connect((_, job) => {
      if (isNotebookJob(job)) {
        void this._ended(job);
      }
    });
  }

  /**
   * Ask for the parameters of the notebook at `path` (as saved) and submit it as a job.
   * `jobPath` is the path the server knows it by (`path` without a drive's prefix).
   */
  async run(path: string, jobPath = path): Promise<void> {
    const name = jobPath.split('/').pop() || jobPath;
    let cells: ICellSummary[];
    try {
      // Open with unsaved changes (a run from the file browser): the job runs what the user sees.
      for (const widget of this.options.app.shell.widgets('main')) {
        const context = (widget as IDocumentWidget).context;
        if (context?.path === path && context.model.dirty) {
          await context.save();
        }
      }
      const file = await this.options.app.serviceManager.contents.get(path, { type: 'notebook', content: true });
      cells = file.content.cells;
    } catch (error) {
      Notification.error(`"${name}" could not be read: ${(error as Error).message}`, { autoClose: false });
      return;
    }
    const parameters = await askParameters(name, parametersCell(cells));
    if (!parameters) {
      return;
    }
    const settings = this.options.settings();
    try {
      const job = await this.options.model.submit({
        name,
        notebook: jobPath,
        parameters,
        cluster_id: settings.defaultCluster || undefined
      });
      Notification.info(`Spark job "${name}" submitted`, {
        autoClose: 4000,
        actions: [{ label: 'Show', callback: () => this.options.showJob(job.id) }]
      });
    } catch (error) {
      Notification.error(`"${name}" could not be submitted: ${(error as Error).message}`, { autoClose: false });
    }
  }

  /** Open the run's output notebook (unless killed) and say how the run ended. */
  private async _ended(job: IJob): Promise<void> {
    const notify = this.options.settings().notifications;
    const actions = [{ label: 'Show details', callback: () => this.options.showJob(job.id) }];
    if (job.state === 'killed') {
      if (notify) {
        Notification.info(`Spark job "${job.name}" was killed`, { autoClose: 5000, actions });
      }
      return;
    }
    let output: string | null = null;
    let problem = '';
    try {
      output = await this._openOutput(job);
    } catch (error) {
      problem = (error as Error).message;
    }
    if (job.state === 'succeeded') {
      if (!output) {
        // The user asked for this tab: say why it did not come, whatever the settings.
        const message = `Spark job "${job.name}" succeeded, but its output notebook could not be opened: ${problem}`;
        Notification.error(message, { autoClose: false, actions });
      } else if (notify) {
        Notification.success(`Spark job "${job.name}" succeeded, output in ${output}`, { autoClose: 8000, actions });
      }
      return;
    }
    if (notify) {
      const why = job.error ? `: ${job.error}` : '';
      const where = output ? `; output in ${output}` : `; no output notebook: ${problem}`;
      Notification.error(`Spark job "${job.name}" ${job.state}${why}${where}`, { autoClose: false, actions });
    }
  }

  /** Save the executed notebook next to the notebook and open it; its path. */
  private async _openOutput(job: IJob): Promise<string> {
    const { app } = this.options;
    const notebook = job.notebook || job.name;
    const path = outputPath(notebook, job.id);
    let content: Record<string, unknown>;
    try {
      content = await this.options.model.api.notebookOutput(job.id);
    } catch (error) {
      if (error instanceof ApiError && (error.status === 404 || error.status === 409)) {
        throw new Error('the run ended before its notebook started running');
      }
      throw error;
    }
    const alreadyOpen = Array.from(app.shell.widgets('main')).some(
      widget => (widget as IDocumentWidget).context?.path === path
    );
    await app.serviceManager.contents.save(path, { type: 'notebook', format: 'json', content });
    // A record of the run to read: no kernel until the user picks one.
    const widget: IDocumentWidget | undefined = await app.commands.execute('docmanager:open', {
      path,
      factory: 'Notebook',
      kernelPreference: { shouldStart: false }
    });
    if (alreadyOpen && widget && !widget.context.model.dirty) {
      await widget.context.revert(); // a restart's run: show the new output, not the last one
    }
    return path;
  }
}

/**
 * The parameters dialog, shown again with the reasons while a value is refused; the values
 * to send, or null when cancelled.
 */
async function askParameters(
  name: string,
  cell: { parameters: IParameter[] } | null
): Promise<Record<string, JSONValue> | null> {
  const parameters = cell?.parameters ?? [];
  let texts: Record<string, string> = {};
  let errors: Record<string, string> = {};
  for (;;) {
    const result = await showDialog({
      title: `Run "${name}" as a job`,
      body: new ParametersForm(cell !== null, parameters, texts, errors),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })],
      focusNodeSelector: 'input'
    });
    if (!result.button.accept) {
      return null;
    }
    texts = result.value ?? {};
    const read = readParameters(parameters, texts);
    if (Object.keys(read.errors).length === 0) {
      return read.values;
    }
    errors = read.errors;
  }
}

/** One input per parameter, with its default and a live check of what is typed. */
class ParametersForm extends Widget implements Dialog.IBodyWidget<Record<string, string>> {
  constructor(
    hasCell: boolean,
    parameters: IParameter[],
    texts: Record<string, string>,
    errors: Record<string, string>
  ) {
    super();
    this.addClass('dh-NotebookJobForm');
    const intro = document.createElement('p');
    this.node.appendChild(intro);
    if (!hasCell) {
      intro.textContent = 'This notebook has no cell tagged "parameters", so it runs as it is.';
      const how = document.createElement('p');
      how.className = 'dh-Hint';
      how.textContent =
        'To give it parameters, put their defaults in a code cell (e.g. n = 2), select that cell and ' +
        'add the tag "parameters" in the right sidebar\'s Property Inspector, under Common Tools.';
      this.node.appendChild(how);
      return;
    }
    if (parameters.length === 0) {
      intro.textContent =
        'The cell tagged "parameters" assigns no values (name = value lines), so the notebook runs as it is.';
      return;
    }
    intro.textContent =
      'Values for this run, as Python: \'text\', 2, 0.5, True, None, [1, 2], {"a": 1}. ' +
      'The run gets them in a cell after the one tagged "parameters".';
    const grid = document.createElement('div');
    grid.className = 'dh-ParameterGrid';
    for (const parameter of parameters) {
      const id = `dh-parameter-${Private.nextId++}`;
      const label = document.createElement('label');
      label.htmlFor = id;
      label.textContent = parameter.name;
      const input = document.createElement('input');
      input.id = id;
      input.name = parameter.name;
      input.className = 'jp-mod-styled dh-ParameterInput';
      input.spellcheck = false;
      input.value = texts[parameter.name] ?? parameter.text;
      const note = document.createElement('div');
      note.className = 'dh-ParameterNote';
      const check = () => {
        const error = readParameters([parameter], { [parameter.name]: input.value }).errors[parameter.name];
        note.textContent = error ?? (parameter.value === undefined ? 'computed by the notebook unless replaced' : '');
        note.classList.toggle('dh-mod-error', Boolean(error));
        input.classList.toggle('dh-mod-error', Boolean(error));
      };
      input.addEventListener('input', check);
      check();
      if (errors[parameter.name]) {
        note.textContent = errors[parameter.name];
      }
      this.inputs.set(parameter.name, input);
      grid.append(label, input, note);
    }
    this.node.appendChild(grid);
  }

  getValue(): Record<string, string> {
    const texts: Record<string, string> = {};
    this.inputs.forEach((input, name) => (texts[name] = input.value));
    return texts;
  }

  private inputs = new Map<string, HTMLInputElement>();
}

namespace Private {
  export let nextId = 0;
}
