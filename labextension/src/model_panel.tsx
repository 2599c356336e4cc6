/**
 * What every sidebar panel shares: a ReactWidget tab, styled as a panel, that draws its
 * content again whenever its model changes and starts the model the first time it is shown.
 */
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { ISignal } from '@lumino/signaling';
import * as React from 'react';

export interface IPanelModel {
  readonly changed: ISignal<unknown, void>;
  /** Begin loading; called on every show, so it must do nothing the second time. */
  start?(): void;
}

export interface IPanelTitle {
  id: string;
  label: string;
  caption: string;
}

export abstract class ModelPanel<M extends IPanelModel> extends ReactWidget {
  constructor(
    protected readonly model: M,
    title: IPanelTitle
  ) {
    super();
    this.id = title.id;
    this.addClass('dh-Panel');
    this.title.label = title.label;
    this.title.caption = title.caption;
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.model.start?.(); // nothing is loaded until someone looks
  }

  render(): JSX.Element {
    return <UseSignal signal={this.model.changed}>{() => this.renderContent()}</UseSignal>;
  }

  /** The panel's content from the model as it is now. */
  protected abstract renderContent(): JSX.Element;
}
