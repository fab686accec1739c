// The console's entry: sign-in, the navigation between pages (the URL's #fragment), and the
// pages' start and stop. The token is kept in sessionStorage: it lasts as long as the tab.

import { Api } from './api.js';
import { byId, fill } from './dom.js';
import { Clients, Live, Overview, Publish, Topics } from './pages.js';

const TOKEN_KEY = 'midge.console.token';
const PAGES = ['overview', 'clients', 'topics', 'live', 'publish'];

/** The API client every page uses: its token is set on sign-in. */
const api = new Api(null);

/** The pages, made once (they hold their listeners on the page's elements), started on
 *  sign-in and stopped on sign-out. */
const pages = {
  overview: new Overview(api, report),
  clients: new Clients(api, report),
  topics: new Topics(api, report),
  live: new Live(api, report),
  publish: new Publish(api, report),
};

/** Whether someone is signed in, and which page is shown (null before the first). */
let session = null;

/** Shows `message` (an Error or text) in the banner, or hides it for null. */
function report(message) {
  const banner = byId('banner');
  banner.hidden = !message;
  fill(banner, message ? String(message.message || message) : '');
}

/** Tries `token`: the console opens if the listener takes it as an operator's token. */
async function signIn(token) {
  await new Api(token).stats();
  api.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  session = { shown: null };
  for (const page of Object.values(pages)) page.start?.();
  byId('signin').hidden = true;
  byId('app').hidden = false;
  route();
}

/** Back to the sign-in form, with `reason` shown if given. */
function signOut(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (session) {
    pages[session.shown]?.hide?.();
    for (const page of Object.values(pages)) page.stop?.();
    session = null;
  }
  api.token = null;
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
    pages[session.shown]?.hide?.();
    session.shown = name;
    pages[name].show?.();
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
