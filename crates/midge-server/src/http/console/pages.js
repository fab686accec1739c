// The console's pages. Each has start() (when the console opens), show() and hide() (as the
// user moves between pages) and stop() (on sign-out); each reports failures through `report`.

import { drawRates } from './chart.js';
import { byId, bytes, clock, count, fill, h, payloadBlock, payloadText } from './dom.js';

/** How often the overview asks for the counters (its chart's resolution), in milliseconds. */
const STATS_MS = 2000;
/** The $SYS topic with the store's size in bytes. */
const STORE_BYTES_TOPIC = '$SYS/broker/midge/store/bytes';
/** How many rate samples the chart keeps: two minutes at STATS_MS. */
const SAMPLES = 60;
/** How often the shown client list is refreshed, in milliseconds. */
const CLIENTS_MS = 3000;
/** How long the topic tree waits before subscribing again after its stream ended. */
const RESUBSCRIBE_MS = 2000;
/** How often at most the topic tree is drawn again as messages come, in milliseconds. */
const TREE_DRAW_MS = 250;
/** How many levels (nodes) the topic tree holds: messages on topics beyond them are not shown. */
const MAX_LEVELS = 10000;
/** How many messages the live view keeps (newest first). */
const LIVE_ROWS = 500;
/** How many characters of a payload a list shows. */
const PREVIEW_CHARS = 120;

/** Reports `error` unless it is the abort of a stream being stopped; a refused token signs out. */
function failed(report, error) {
  if (error.name === 'AbortError') return;
  if (error.status === 401) {
    window.dispatchEvent(new Event('midge:unauthorized'));
    return;
  }
  report(error);
}

/** `text` cut to `n` characters. */
function preview(text, n = PREVIEW_CHARS) {
  return text.length > n ? `${text.slice(0, n)}…` : text;
}

export class Overview {
  constructor(api, report) {
    this.api = api;
    this.report = report;
  }

  start() {
    this.previous = null;
    this.series = { in: [], out: [], dropped: [] };
    this.poll();
    this.timer = setInterval(() => this.poll(), STATS_MS);
    this.resize = () => this.draw();
    window.addEventListener('resize', this.resize);
  }

  stop() {
    clearInterval(this.timer);
    window.removeEventListener('resize', this.resize);
  }

  show() {
    this.draw();
  }

  async poll() {
    try {
      // The store's size is in $SYS (retained, renewed every [sys] interval); a broker without
      // a store, or with $SYS off, has none.
      const store = this.api.retainedMessage(STORE_BYTES_TOPIC).catch((error) => {
        if (error.status === 404) return null;
        throw error;
      });
      const [stats, clients, storeBytes] = await Promise.all([this.api.stats(), this.api.clients(), store]);
      const now = performance.now();
      if (this.previous) {
        const seconds = (now - this.previous.time) / 1000;
        const rate = (key) => Math.max(0, (stats[key] - this.previous.stats[key]) / seconds);
        this.push('in', rate('messages_received'));
        this.push('out', rate('messages_sent'));
        this.push('dropped', rate('messages_dropped'));
      }
      this.previous = { time: now, stats };
      this.showStats(stats, clients.clients.length, storeBytes);
      // Its own failure, shown until a poll succeeds again (others' stay as they are).
      if (this.failing) this.report(null);
      this.failing = false;
    } catch (error) {
      this.failing = error.name !== 'AbortError';
      failed(this.report, error);
    }
  }

  push(name, value) {
    const values = this.series[name];
    values.push(value);
    if (values.length > SAMPLES) values.shift();
  }

  showStats(stats, connected, storeBytes) {
    const last = (values) => (values.length ? values[values.length - 1].toFixed(1) : '–');
    fill(byId('stat-clients'), count(connected));
    fill(byId('stat-sessions'), count(stats.sessions));
    fill(byId('stat-in-rate'), last(this.series.in));
    fill(byId('stat-out-rate'), last(this.series.out));
    fill(byId('stat-dropped'), count(stats.messages_dropped));
    fill(byId('stat-retained'), count(stats.retained_messages));
    const stored = storeBytes && Number(storeBytes.payload);
    if (Number.isFinite(stored)) {
      const [number, unit] = bytes(stored).split(' ');
      fill(byId('stat-store'), number, h('small', {}, unit));
    } else {
      fill(byId('stat-store'), h('small', {}, 'no store'));
    }
    const rows = [
      ['Connections accepted', count(stats.connections_accepted)],
      ['Messages received', count(stats.messages_received)],
      ['Messages sent', count(stats.messages_sent)],
      ['Messages dropped', count(stats.messages_dropped)],
      ['Wills published', count(stats.wills_published)],
      ['Sessions (connected or not)', count(stats.sessions)],
      ['Retained messages', count(stats.retained_messages)],
      ['Retained bytes', bytes(stats.retained_bytes)],
    ];
    fill(byId('counters'), h('tbody', {}, rows.map(([name, value]) => h('tr', {}, h('th', {}, name), h('td', {}, value)))));
    this.draw();
  }

  draw() {
    const canvas = byId('rates');
    canvas.dataset.samples = String(this.series.in.length);
    if (canvas.offsetParent === null) return;
    const style = getComputedStyle(canvas);
    drawRates(
      canvas,
      [
        { values: this.series.in, color: style.getPropertyValue('--in').trim() },
        { values: this.series.out, color: style.getPropertyValue('--out').trim() },
        { values: this.series.dropped, color: style.getPropertyValue('--dropped').trim() },
      ],
      SAMPLES,
    );
  }
}

export class Clients {
  constructor(api, report) {
    this.api = api;
    this.report = report;
    byId('client-search').addEventListener('input', () => this.render());
  }

  start() {
    this.clients = [];
    this.selected = null;
    fill(byId('client-details'), h('p', { className: 'muted empty' }, 'Select a client to see its session and subscriptions.'));
    fill(byId('client-notice'));
  }

  show() {
    this.load();
    this.timer = setInterval(() => this.load(), CLIENTS_MS);
  }

  hide() {
    clearInterval(this.timer);
  }

  stop() {
    this.hide();
  }

  async load() {
    try {
      const { clients } = await this.api.clients();
      this.clients = clients.sort((a, b) => a.client_id.localeCompare(b.client_id));
      this.render();
      if (this.selected !== null) this.details(this.selected, false);
    } catch (error) {
      failed(this.report, error);
    }
  }

  render() {
    const search = byId('client-search').value.trim().toLowerCase();
    const shown = this.clients.filter((c) => c.client_id.toLowerCase().includes(search));
    fill(
      byId('client-rows'),
      shown.map((c) =>
        h(
          'tr',
          {
            'data-client-id': c.client_id,
            className: c.client_id === this.selected ? 'selected' : '',
            tabIndex: 0,
            onclick: () => this.details(c.client_id, true),
            onkeydown: (event) => event.key === 'Enter' && this.details(c.client_id, true),
          },
          h('td', { className: 'mono' }, c.client_id),
          h('td', {}, protocol(c.protocol_level)),
          h('td', { className: 'num' }, count(c.subscription_count)),
          h('td', { className: 'num' }, count(c.queued)),
          h('td', { className: 'num' }, count(c.inflight)),
          h('td', { className: 'num' }, expiry(c.session_expiry)),
        ),
      ),
    );
    byId('client-empty').hidden = shown.length > 0;
    fill(byId('client-count'), `${shown.length} of ${this.clients.length} connected`);
  }

  async details(clientId, chosen) {
    if (chosen) {
      this.selected = clientId;
      this.render();
    }
    const panel = byId('client-details');
    let client;
    try {
      client = await this.api.client(clientId);
    } catch (error) {
      if (error.status === 404) {
        fill(panel, h('p', { className: 'muted empty' }, `${clientId} has no session any more.`));
        return;
      }
      return failed(this.report, error);
    }
    if (this.selected !== clientId || panel.querySelector('.confirm')) return;
    const fields = [
      ['Connected', client.connected ? 'yes' : 'no'],
      ['MQTT version', protocol(client.protocol_level)],
      ['Session expiry', expiry(client.session_expiry)],
      ['Queued messages', count(client.queued)],
      ['In flight', count(client.inflight)],
    ];
    const kick = h('button', { type: 'button', className: 'danger', id: 'client-kick', disabled: !client.connected }, 'Kick');
    kick.addEventListener('click', () => this.confirmKick(clientId));
    fill(
      panel,
      h('div', { className: 'card-head' }, h('h3', { className: 'mono' }, clientId), kick),
      h('table', { className: 'kv' }, h('tbody', {}, fields.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v))))),
      h('h4', {}, `Subscriptions (${client.subscriptions.length})`),
      client.subscriptions.length
        ? h(
            'table',
            { className: 'list' },
            h('thead', {}, h('tr', {}, h('th', {}, 'Filter'), h('th', {}, 'QoS'))),
            h('tbody', {}, client.subscriptions.map((s) => h('tr', {}, h('td', { className: 'mono' }, s.filter), h('td', {}, String(s.qos))))),
          )
        : h('p', { className: 'muted' }, 'None.'),
    );
  }

  confirmKick(clientId) {
    const panel = byId('client-details');
    const yes = h('button', { type: 'button', className: 'danger', id: 'client-kick-confirm' }, 'Disconnect it');
    const no = h('button', { type: 'button', className: 'ghost' }, 'Cancel');
    const confirm = h(
      'div',
      { className: 'confirm', role: 'alertdialog' },
      h('p', {}, 'Disconnect ', h('b', { className: 'mono' }, clientId), '? Its session stays as its expiry says.'),
      h('div', { className: 'buttons' }, yes, no),
    );
    panel.querySelector('.confirm')?.remove();
    panel.prepend(confirm);
    no.addEventListener('click', () => confirm.remove());
    yes.addEventListener('click', async () => {
      yes.disabled = true;
      try {
        await this.api.kick(clientId);
        confirm.remove();
        fill(byId('client-notice'), `${clientId} was disconnected.`);
        await this.load();
      } catch (error) {
        confirm.remove();
        failed(this.report, error);
      }
    });
  }
}

/** `n` and `noun`, in the plural unless `n` is 1. */
function plural(n, noun) {
  return `${count(n)} ${noun}${n === 1 ? '' : 's'}`;
}

/** The MQTT version of a protocol level. */
function protocol(level) {
  return { 3: '3.1', 4: '3.1.1', 5: '5.0' }[level] || String(level);
}

/** A session expiry in seconds, readable. */
function expiry(seconds) {
  if (seconds === 0) return 'on disconnect';
  if (seconds >= 4294967295) return 'never';
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

/** A level of the topic tree. */
class TopicNode {
  constructor(name, topic) {
    this.name = name;
    this.topic = topic;
    this.children = new Map();
    /** The last message seen on the topic, and when. */
    this.latest = null;
    this.time = null;
    /** Its retained message, as the retained messages API or a retained delivery said. */
    this.retained = null;
    this.count = 0;
  }

  /** How many topics below this level (itself included) have a message. */
  topics() {
    let n = this.latest || this.retained ? 1 : 0;
    for (const child of this.children.values()) n += child.topics();
    return n;
  }
}

export class Topics {
  constructor(api, report) {
    this.api = api;
    this.report = report;
    this.dirty = false;
    this.visible = false;
    byId('topic-search').addEventListener('input', () => this.render());
  }

  start() {
    this.root = new TopicNode('', '');
    this.collapsed = new Set();
    this.selected = null;
    this.levels = 0;
    fill(byId('topic-details'), h('p', { className: 'muted empty' }, 'Select a topic to see its latest value and retained message.'));
    this.controller = new AbortController();
    this.loadRetained();
    this.follow();
  }

  stop() {
    this.controller.abort();
    clearTimeout(this.retry);
  }

  show() {
    this.visible = true;
    this.loadRetained();
    this.render();
  }

  hide() {
    this.visible = false;
  }

  async loadRetained() {
    try {
      const { retained } = await this.api.retained('#');
      for (const message of retained) {
        const node = this.node(message.topic);
        if (node) node.retained = message;
      }
      this.changed();
    } catch (error) {
      failed(this.report, error);
    }
  }

  /** Follows every message (`#`) for as long as the console is open, subscribing again after a
   *  pause when the stream ends. */
  async follow() {
    const status = byId('topic-status');
    const signal = this.controller.signal;
    try {
      fill(status, 'Connecting…');
      await this.api.subscribe('#', 0, signal, () => fill(status, 'Following # live'), (message) => {
        const node = this.node(message.topic);
        if (!node) return;
        node.latest = message;
        node.time = new Date();
        node.count += 1;
        if (message.retain) node.retained = message;
        this.changed();
      });
      fill(status, 'Stream ended; subscribing again…');
    } catch (error) {
      if (signal.aborted) return;
      fill(status, `Not following: ${error.message}`);
      failed(this.report, error);
    }
    if (!signal.aborted) this.retry = setTimeout(() => this.follow(), RESUBSCRIBE_MS);
  }

  /** The node of `topic`, made with its parents if new; null once the tree holds MAX_LEVELS
   *  levels and `topic` needs more. */
  node(topic) {
    let node = this.root;
    const levels = topic.split('/');
    for (const [index, level] of levels.entries()) {
      let child = node.children.get(level);
      if (!child) {
        if (this.levels >= MAX_LEVELS) {
          fill(byId('topic-status'), `Full: ${count(MAX_LEVELS)} topic levels shown, newer topics left out`);
          return null;
        }
        child = new TopicNode(level, levels.slice(0, index + 1).join('/'));
        node.children.set(level, child);
        this.levels += 1;
      }
      node = child;
    }
    return node;
  }

  /** Draws the tree again soon, once however many messages come meanwhile. */
  changed() {
    if (this.dirty || !this.visible) return;
    this.dirty = true;
    setTimeout(() => {
      this.dirty = false;
      if (this.visible) this.render();
    }, TREE_DRAW_MS);
  }

  render() {
    const search = byId('topic-search').value.trim().toLowerCase();
    const levels = this.branch(this.root, search);
    fill(byId('topic-tree'), levels);
    byId('topic-empty').hidden = levels.length > 0;
    // The details stay as they are while their Clear button waits for its second click.
    if (this.selected && !byId('topic-clear')?.dataset.armed) this.details(this.selected);
  }

  /** The list items of `node`'s children whose topics (or topics below) contain `search`. */
  branch(node, search) {
    const items = [];
    const names = [...node.children.keys()].sort((a, b) => a.localeCompare(b));
    for (const name of names) {
      const child = node.children.get(name);
      const below = this.branch(child, search);
      const message = child.latest || child.retained;
      const matches = message && child.topic.toLowerCase().includes(search);
      if (!matches && below.length === 0) continue;
      const open = search !== '' || !this.collapsed.has(child.topic);
      const toggle = child.children.size
        ? h(
            'button',
            {
              type: 'button',
              className: 'toggle',
              'aria-expanded': String(open),
              'aria-label': open ? 'Collapse' : 'Expand',
              onclick: (event) => {
                event.stopPropagation();
                if (this.collapsed.has(child.topic)) this.collapsed.delete(child.topic);
                else this.collapsed.add(child.topic);
                this.render();
              },
            },
            open ? '▾' : '▸',
          )
        : h('span', { className: 'toggle' });
      const row = h(
        'div',
        {
          className: `topic-row${child.topic === this.selected ? ' selected' : ''}`,
          'data-topic': child.topic,
          tabIndex: 0,
          onclick: () => this.select(child.topic),
          onkeydown: (event) => event.key === 'Enter' && this.select(child.topic),
        },
        toggle,
        h('span', { className: 'level' }, name === '' ? '(empty)' : name),
        message ? h('span', { className: 'value' }, preview(payloadText(message), 60)) : null,
        child.retained ? h('span', { className: 'badge' }, 'retained') : null,
        child.children.size ? h('span', { className: 'muted small' }, plural(child.topics(), 'topic')) : null,
      );
      items.push(h('li', {}, row, open && below.length ? h('ul', {}, below) : null));
    }
    return items;
  }

  /** Shows `topic`'s details. */
  select(topic) {
    this.selected = topic;
    this.render();
    byId('topic-tree').querySelector(`[data-topic="${CSS.escape(topic)}"]`)?.focus();
  }

  details(topic) {
    const node = this.node(topic);
    const panel = byId('topic-details');
    const block = (title, message, extra) =>
      h(
        'section',
        { className: 'message' },
        h('h4', {}, title),
        message
          ? [
              h('p', { className: 'muted small' }, `QoS ${message.qos}${extra ? ` · ${extra}` : ''}`),
              h('pre', { className: 'payload' }, payloadBlock(message)),
            ]
          : h('p', { className: 'muted' }, 'None seen.'),
      );
    const received = node.time ? `${clock(node.time)} · ${node.count} received` : null;
    // Two clicks clear it: the first asks.
    const clear = node.retained
      ? h(
          'button',
          {
            type: 'button',
            className: 'danger',
            id: 'topic-clear',
            onclick: (event) => {
              if (event.target.dataset.armed) return this.clear(topic);
              event.target.dataset.armed = 'yes';
              fill(event.target, 'Clear it for good?');
            },
          },
          'Clear retained',
        )
      : null;
    fill(
      panel,
      h('div', { className: 'card-head' }, h('h3', { className: 'mono', id: 'topic-selected' }, topic), clear),
      block('Latest value', node.latest, received),
      block('Retained message', node.retained),
    );
  }

  /** Clears `topic`'s retained message (an empty retained publish, as the API does it). */
  async clear(topic) {
    try {
      await this.api.deleteRetained(topic);
      const node = this.node(topic);
      if (node) node.retained = null;
      this.render();
      this.details(topic);
    } catch (error) {
      failed(this.report, error);
    }
  }
}

export class Live {
  constructor(api, report) {
    this.api = api;
    this.report = report;
    this.controller = null;
    byId('live-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.subscribe(byId('live-filter').value.trim(), Number(byId('live-qos').value));
    });
    byId('live-stop').addEventListener('click', () => this.stop());
    byId('live-clear').addEventListener('click', () => {
      fill(byId('live-rows'));
      byId('live-empty').hidden = false;
    });
  }

  status(state, text) {
    const status = byId('live-status');
    status.dataset.state = state;
    fill(status, text);
  }

  async subscribe(filter, qos) {
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    byId('live-stop').disabled = false;
    this.status('connecting', `Subscribing to ${filter}…`);
    try {
      await this.api.subscribe(
        filter,
        qos,
        controller.signal,
        () => this.status('subscribed', `Subscribed to ${filter} (QoS ${qos}).`),
        (message) => this.add(message),
      );
      if (this.controller === controller) this.status('ended', 'The stream ended.');
    } catch (error) {
      if (this.controller !== controller || error.name === 'AbortError') return;
      this.status('error', `Not subscribed: ${error.message}`);
      if (error.status === 401) failed(this.report, error);
    }
    if (this.controller === controller) byId('live-stop').disabled = true;
  }

  add(message) {
    const rows = byId('live-rows');
    rows.prepend(
      h(
        'tr',
        { 'data-topic': message.topic },
        h('td', { className: 'muted' }, clock(new Date())),
        h('td', { className: 'mono topic' }, message.topic),
        h('td', {}, String(message.qos)),
        h('td', {}, message.retain ? 'yes' : 'no'),
        h('td', { className: 'mono payload-cell' }, preview(payloadText(message))),
      ),
    );
    while (rows.children.length > LIVE_ROWS) rows.lastChild.remove();
    byId('live-empty').hidden = true;
  }

  stop() {
    if (!this.controller) return;
    this.controller.abort();
    this.controller = null;
    byId('live-stop').disabled = true;
    this.status('idle', 'Stopped.');
  }
}

export class Publish {
  constructor(api, report) {
    this.api = api;
    this.report = report;
    byId('publish-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.publish();
    });
  }

  async publish() {
    const result = byId('publish-result');
    const button = byId('publish-submit');
    const message = {
      topic: byId('publish-topic').value,
      qos: Number(byId('publish-qos').value),
      retain: byId('publish-retain').checked,
      payload: byId('publish-payload').value,
    };
    button.disabled = true;
    result.dataset.state = 'publishing';
    result.className = 'muted';
    fill(result, 'Publishing…');
    try {
      const answer = await this.api.publish(message);
      result.dataset.state = 'published';
      result.className = 'ok';
      fill(result, `Published to ${answer.topic} at QoS ${answer.qos}${answer.retain ? ', retained' : ''}: ${answer.reason}.`);
    } catch (error) {
      result.dataset.state = 'failed';
      result.className = 'error';
      fill(result, `Not published: ${error.message}`);
      if (error.status === 401) failed(this.report, error);
    } finally {
      button.disabled = false;
    }
  }
}
