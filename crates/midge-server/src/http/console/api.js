// The HTTP API (docs/http-api.md) as the console uses it, every request with the bearer token.
//
// Server-sent events come through fetch() rather than EventSource, which cannot send an
// Authorization header: the stream is read and parsed here, so the token never goes into a URL.

/** A failed request: the HTTP status and the API's `error` and `reason`. */
export class ApiError extends Error {
  constructor(status, error, reason) {
    super(reason || error || `HTTP ${status}`);
    this.status = status;
    this.error = error;
  }
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  /** `method path` with a JSON `body` (if any); resolves to the JSON answer. */
  async request(method, path, body) {
    const headers = { Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
    if (!response.ok) throw await failure(response);
    return response.json();
  }

  stats() {
    return this.request('GET', '/api/v1/stats');
  }

  clients() {
    return this.request('GET', '/api/v1/clients');
  }

  client(clientId) {
    return this.request('GET', `/api/v1/clients/${pathOf(clientId)}`);
  }

  kick(clientId) {
    return this.request('DELETE', `/api/v1/clients/${pathOf(clientId)}`);
  }

  retained(filter = '#') {
    return this.request('GET', `/api/v1/retained?filter=${encodeURIComponent(filter)}`);
  }

  retainedMessage(topic) {
    return this.request('GET', `/api/v1/retained/${pathOf(topic)}`);
  }

  deleteRetained(topic) {
    return this.request('DELETE', `/api/v1/retained/${pathOf(topic)}`);
  }

  publish(message) {
    return this.request('POST', '/api/v1/publish', { ...message, encoding: 'text' });
  }

  /** Subscribes to `filter` at `qos` and calls `onOpen()` once subscribed, then `onMessage(m)`
   *  for each message; resolves when the stream ends, rejects on a failure (an AbortError once
   *  `signal` aborts). */
  async subscribe(filter, qos, signal, onOpen, onMessage) {
    const query = `filter=${encodeURIComponent(filter)}&qos=${qos}`;
    const response = await fetch(`/api/v1/subscribe?${query}`, {
      headers: { Authorization: `Bearer ${this.token}`, Accept: 'text/event-stream' },
      cache: 'no-store',
      signal,
    });
    if (!response.ok) throw await failure(response);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let data = [];
    let type = 'message';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, end).replace(/\r$/, '');
        buffer = buffer.slice(end + 1);
        if (line === '') {
          if (data.length > 0 && type === 'message') onMessage(JSON.parse(data.join('\n')));
          data = [];
          type = 'message';
        } else if (line.startsWith(':')) {
          if (line.slice(1).trim() === 'subscribed') onOpen();
        } else {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'data') data.push(text);
          else if (field === 'event') type = text;
        }
      }
    }
  }
}

/** A topic or client id as a path: each level percent-encoded, the `/` between kept (and `.`
 *  and `..` levels encoded too, so the browser does not resolve them away). */
function pathOf(name) {
  return name
    .split('/')
    .map((level) => (level === '.' || level === '..' ? level.replace(/\./g, '%2E') : encodeURIComponent(level)))
    .join('/');
}

/** The ApiError of a failed `response`. */
async function failure(response) {
  try {
    const body = await response.json();
    return new ApiError(response.status, body.error, body.reason);
  } catch {
    return new ApiError(response.status, null, `HTTP ${response.status} ${response.statusText}`);
  }
}
