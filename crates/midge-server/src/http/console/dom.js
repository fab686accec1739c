// Building the page from the broker's data. Everything the broker sends (topics, payloads,
// client ids) becomes text nodes and properties, never markup: nothing here uses innerHTML.

/** An element `tag` with `props` (properties such as className, or `data-*` and `aria-*`
 *  attributes) and `children` (nodes, or strings made text nodes; null and false skipped). */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('data-') || key.startsWith('aria-')) element.setAttribute(key, String(value));
    else if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else element[key] = value;
  }
  append(element, children);
  return element;
}

/** Appends `children` to `element`, strings as text. */
export function append(element, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces what `element` holds with `children`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** The element with `id`. */
export function byId(id) {
  return document.getElementById(id);
}

/** A message's payload as one line of text: as it is when it is text, otherwise its bytes in
 *  hexadecimal, with its length. */
export function payloadText(message) {
  if (message.encoding !== 'base64') return message.payload;
  const bytes = atob(message.payload);
  const hex = Array.from(bytes, (c) => c.charCodeAt(0).toString(16).padStart(2, '0'));
  const shown = hex.slice(0, 64).join(' ') + (hex.length > 64 ? ' …' : '');
  return `(${bytes.length} bytes) ${shown}`;
}

/** A payload to show in full: pretty JSON when it parses as an object or array. */
export function payloadBlock(message) {
  const text = payloadText(message);
  if (message.encoding !== 'base64' && /^\s*[[{]/.test(text)) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      // Not JSON after all: shown as it is.
    }
  }
  return text;
}

/** A count with thousands separators. */
export function count(n) {
  return typeof n === 'number' ? n.toLocaleString('en-US') : '–';
}

/** A byte size in B, KiB or MiB, with three or four digits at most. */
export function bytes(n) {
  if (typeof n !== 'number') return '–';
  if (n < 1024) return `${n} B`;
  const [value, unit] = n < 1024 * 1024 ? [n / 1024, 'KiB'] : [n / 1024 / 1024, 'MiB'];
  return `${value < 100 ? value.toFixed(1) : Math.round(value)} ${unit}`;
}

/** The time of day of `date`, to the second. */
export function clock(date) {
  return date.toLocaleTimeString('en-GB', { hour12: false });
}
