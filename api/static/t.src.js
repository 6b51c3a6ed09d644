/* sqlbook-js: the first-party tracking script. This is the readable source; the API
 * serves t.js, its minified build, which is committed next to it (no build at runtime).
 * Rebuild after editing (from the repository root), then run tests/api/test_script.py:
 *
 *   cd api/static && npx --yes terser@5.51.2 t.src.js --ecma 2017 --compress passes=2 \
 *     --mangle --output t.js --format "preamble='// sqlbook-js $(sed -n \
 *     's/^ *var VERSION = "\(.*\)";$/\1/p' t.src.js) src:$(sha256sum t.src.js | cut -c1-16)'"
 *
 * The first line of t.js names the version (the API serves it at /t/<version>.js too) and
 * the source's hash; a test fails when t.js was not rebuilt after t.src.js changed.
 * Bump VERSION whenever t.js changes: /t/<version>.js is cached as immutable.
 *
 * Install (the API's GET /api/projects/{id}/snippet prints it with the project's settings):
 *
 *   <script defer src="https://sqlbook.example/t.js" data-key="sqb_pk_…"></script>
 *
 *   data-key      the project's capture key (required)
 *   data-api      where events go; default: the origin this script was loaded from
 *   data-persist  "1": keep an anonymous id in localStorage (only if the project allows it);
 *                 otherwise nothing is stored and the server derives an anonymous id
 *   data-dnt      "1": send nothing when the browser asks not to be tracked
 *                 (navigator.doNotTrack == "1" or navigator.globalPrivacyControl)
 *   data-hash     "1": a change of the #fragment is a page view too (hash-routed apps)
 *
 * API:  sqlbook("signup", {plan: "pro"})                 a custom event
 *       sqlbook("identify", "user-42", {email: "…"})      $identify with $set; later events
 *                                                        carry "user-42" as distinct_id
 *       sqlbook("reset")                                 forget the identified user
 * Calls made before the script loads are queued by this stub and sent once it runs:
 *   window.sqlbook = window.sqlbook || function () { (sqlbook.q = sqlbook.q || []).push(arguments) }
 */
(function (win, doc, nav) {
  "use strict";
  var VERSION = "1.0.0";
  var STORAGE_KEY = "sqlbook_id";

  var script = doc.currentScript || doc.querySelector("script[data-key]");
  var queued = (win.sqlbook && win.sqlbook.q) || [];
  var data = (script && script.dataset) || {};
  var key = data.key;
  var noop = function () {};

  if (win.sqlbook && win.sqlbook.version) return; // the script is on the page twice
  if (!key) {
    if (win.console) console.warn("sqlbook: the script tag needs data-key");
    return;
  }
  if (
    data.dnt == "1" &&
    (nav.doNotTrack == "1" || win.doNotTrack == "1" || nav.globalPrivacyControl)
  ) {
    // Honour the visitor's wish: calls (queued and later) do nothing, nothing is sent.
    win.sqlbook = noop;
    return;
  }

  var api = (data.api || new URL(script.src, location.href).origin).replace(/\/+$/, "");
  var persist = data.persist == "1";
  var hashRoutes = data.hash == "1";
  var distinctId = persist ? load() : null;
  var identified = false;
  var lastUrl = null;
  var referrer = doc.referrer;

  function uuid() {
    if (win.crypto && crypto.randomUUID) return crypto.randomUUID();
    // RFC 4122 version 4 from crypto.getRandomValues (randomUUID needs a secure context)
    return "10000000-1000-4000-8000-100000000000".replace(/[018]/g, function (c) {
      return (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16);
    });
  }

  function load() {
    try {
      var id = localStorage.getItem(STORAGE_KEY);
      if (!id) localStorage.setItem(STORAGE_KEY, (id = uuid()));
      return id;
    } catch (e) {
      return null; // storage blocked: fall back to the server-side anonymous id
    }
  }

  function store(id) {
    if (!persist) return;
    try {
      localStorage.setItem(STORAGE_KEY, id);
    } catch (e) {}
  }

  function post(body, attempt) {
    // Retries re-send the same uuid, so the warehouse keeps one copy.
    var later = function () {
      if (attempt < 2) setTimeout(post, 1000 * (attempt + 1) * 2, body, attempt + 1);
    };
    try {
      fetch(api + "/e", {
        method: "POST",
        keepalive: true,
        body: body,
        headers: { "Content-Type": "text/plain" },
      }).then(function (r) {
        if (r.status > 499 || r.status == 429) later();
      }, later);
    } catch (e) {}
  }

  function send(event, properties) {
    var props = {
      $current_url: location.href,
      $host: location.host,
      $pathname: location.pathname,
      $referrer: referrer,
      $screen_width: screen.width,
      $screen_height: screen.height,
      $lib: "sqlbook-js",
      $lib_version: VERSION,
    };
    if (event == "$pageview") props.title = doc.title;
    if (properties && typeof properties == "object") for (var k in properties) props[k] = properties[k];
    var body = { api_key: key, event: "" + event, properties: props, timestamp: new Date().toISOString(), uuid: uuid() };
    if (distinctId) body.distinct_id = distinctId;
    body = JSON.stringify(body);
    // text/plain needs no CORS preflight, and a beacon survives the page being closed.
    var beaconed = false;
    try {
      beaconed = nav.sendBeacon(api + "/e?beacon=1", new Blob([body], { type: "text/plain" }));
    } catch (e) {}
    if (!beaconed) post(body, 0);
  }

  function pageview() {
    var url = hashRoutes ? location.href : location.href.split("#")[0];
    if (url == lastUrl) return; // replaceState of the same URL, popstate of a #fragment …
    if (lastUrl) referrer = lastUrl; // in-app navigation: the page the visitor came from
    lastUrl = url;
    send("$pageview");
  }

  function onNavigate() {
    // Routers set the title after changing the URL; let them finish first.
    setTimeout(pageview, 0);
  }

  function call(name, a, b) {
    try {
      if (name == "identify") {
        if (a == null || a === "") return;
        a = "" + a;
        if (a == distinctId && identified && !b) return;
        var props = { $set: b || {} };
        if (distinctId && distinctId != a && !identified) props.$anon_distinct_id = distinctId;
        distinctId = a;
        identified = true;
        store(a);
        send("$identify", props);
      } else if (name == "reset") {
        identified = false;
        distinctId = null;
        if (persist) {
          try {
            localStorage.removeItem(STORAGE_KEY);
          } catch (e) {}
          distinctId = load();
        }
      } else if (name) {
        send(name, a);
      }
    } catch (e) {}
  }

  function sqlbook(name, a, b) {
    call(name, a, b);
  }
  sqlbook.version = VERSION;
  win.sqlbook = sqlbook;

  ["pushState", "replaceState"].forEach(function (method) {
    var original = history[method];
    history[method] = function () {
      var result = original.apply(this, arguments);
      onNavigate();
      return result;
    };
  });
  win.addEventListener("popstate", onNavigate);
  if (hashRoutes) win.addEventListener("hashchange", onNavigate);

  // Queued calls: who the visitor is first (so the first page view carries it), then the
  // page view, then the rest in the order they were made.
  var q = [].slice.call(queued);
  q.forEach(function (args) {
    if (args[0] == "identify") call.apply(null, args);
  });
  pageview();
  q.forEach(function (args) {
    if (args[0] != "identify") call.apply(null, args);
  });
})(window, document, navigator);
