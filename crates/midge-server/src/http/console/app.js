// The console's entry: sign-in, the navigation between pages (the URL's #fragment), and the
// pages' start and stop. The token is kept in sessionStorage: it lasts as long as the tab.

import { Api } from './api.js';
import { byId, fill } from './dom.js';
import { Clients, Live, Overview, Publish, Topics } from './pages.js';

const TOKEN_KEY = 'midge.console.token';
const PAGES = ['overview', 'clients', 'topics', 'live', 'publish'];

/** The signed-in console: its API client and its pages; null when signed out. */
let session = null;

/** Shows `message` (an Error or text) in the banner, or hides it for null. */
function report(message) {
  const banner = byId('banner');
  banner.hidden = !message;
  fill(banner, message ? String(message.message || message) : '');
}

/** Tries `token`: the console opens if the listener takes it as an operator's token. */
async function signIn(token) {
  const api = new Api(token);
  await api.stats();
  sessionStorage.setItem(TOKEN_KEY, token);
  const pages = {
    overview: new Overview(api, report),
    clients: new Clients(api, report),
    topics: new Topics(api, report),
    live: new Live(api, report),
    publish: new Publish(api, report),
  };
  session = { api, pages, shown: null };
  for (const page of Object.values(pages)) page.start?.();
  byId('signin').hidden = true;
  byId('app').hidden = false;
  route();
}

/** Back to the sign-in form, with `reason` shown if given. */
function signOut(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (session) {
    for (const page of Object.values(session.pages)) page.stop?.();
    session = null;
  }
  report(null);
  byId('app').hidden = true;
  byId('signin').hidden = false;
  const error = byId('signin-error');
  error.hidden = !reason;
  fill(error, reason || '');
  byId('signin-token').value = '';
  byId('signin-token').focus();
}

/** Shows the page the URL names (the overview by default). */
function route() {
  if (!session) return;
  let name = location.hash.replace(/^#\/?/, '');
  if (!PAGES.includes(name)) name = 'overview';
  for (const other of PAGES) {
    byId(`page-${other}`).hidden = other !== name;
    const link = document.querySelector(`#nav a[data-page="${other}"]`);
    if (other === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (session.shown !== name) {
    session.pages[session.shown]?.hide?.();
    session.shown = name;
    session.pages[name].show?.();
  }
  document.title = `${name[0].toUpperCase()}${name.slice(1)} · Midge console`;
}

byId('signin-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = byId('signin-submit');
  button.disabled = true;
  byId('signin-error').hidden = true;
  try {
    await signIn(byId('signin-token').value);
  } catch (error) {
    const reason = error.status === 401 ? 'That token is not one of this listener’s.' : `Cannot sign in: ${error.message}`;
    signOut(reason);
  } finally {
    button.disabled = false;
  }
});
byId('signout').addEventListener('click', () => signOut(null));
window.addEventListener('hashchange', route);
// A page that finds the token refused (the listener restarted without it) signs out.
window.addEventListener('midge:unauthorized', () => signOut('The token was refused: sign in again.'));

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) {
  signIn(saved).catch((error) => signOut(error.status === 401 ? 'The token was refused: sign in again.' : error.message));
} else {
  signOut(null);
}
