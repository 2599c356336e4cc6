/**
 * The DataHarbour sidebar: a header with the live stream's state over one tab per
 * capability (Jobs, Platform, and those later issues add). Panels plug in with `addPanel`.
 */
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { BoxLayout, TabPanel, Widget } from '@lumino/widgets';
import * as React from 'react';

import { LiveStream } from './stream';

/** The sidebar's title and whether live updates flow. */
class SidebarHeader extends ReactWidget {
  constructor(private readonly stream: LiveStream) {
    super();
    this.addClass('dh-Header');
  }

  render(): JSX.Element {
    return (
      <UseSignal signal={this.stream.statusChanged}>
        {() => (
          <>
            <h2>DataHarbour</h2>
            <span className={`dh-Connection dh-mod-${this.stream.status}`} title={`Live updates: ${this.stream.status}`}>
              {this.stream.status === 'open' ? 'live' : this.stream.status}
            </span>
          </>
        )}
      </UseSignal>
    );
  }
}

export class DataHarbourSidebar extends Widget {
  constructor(stream: LiveStream) {
    super();
    this.id = 'dataharbour-sidebar';
    this.addClass('dh-SidebarFrame');
    this.title.caption = 'DataHarbour: Spark jobs and platform';
    this._tabs.addClass('dh-Tabs');
    this._tabs.tabBar.addClass('dh-TabBar');
    const header = new SidebarHeader(stream);
    const layout = new BoxLayout({ direction: 'top-to-bottom', spacing: 0 });
    BoxLayout.setStretch(header, 0);
    BoxLayout.setStretch(this._tabs, 1);
    layout.addWidget(header);
    layout.addWidget(this._tabs);
    this.layout = layout;
  }

  /** Add a capability's panel as a tab; lower ranks come first. */
  addPanel(panel: Widget, rank: number): void {
    this._ranks.set(panel, rank);
    const index = [...this._tabs.widgets].filter(widget => (this._ranks.get(widget) ?? 0) <= rank).length;
    this._tabs.insertWidget(index, panel);
  }

  /** Bring a panel's tab to the front (the sidebar itself is activated by the shell). */
  showPanel(panel: Widget): void {
    this._tabs.currentWidget = panel;
  }

  private _tabs = new TabPanel({ tabsMovable: false });
  private _ranks = new Map<Widget, number>();
}
