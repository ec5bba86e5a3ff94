// captioner overlay: live captions from the /events WebSocket of the page's own server.
// The look comes from the query string (README.md lists the parameters); parameters it
// does not know, and values it cannot use, are ignored. It reconnects by itself with
// backoff, and every connection starts with the recent history, so a page opened late
// or cut off for a while shows what the others show.
"use strict";

(() => {
  const MAX_LINES = 50; // the server keeps as many finals for (re)connecting viewers
  const FIRST_RETRY_MS = 500;
  const MAX_RETRY_MS = 5000;

  const params = new URLSearchParams(location.search);
  const settings = {
    lines: integer("lines", 1, MAX_LINES, 2),
    size: integer("size", 8, 300, 40),
    color: colour("color", "#ffffff"),
    translationColor: colour("tcolor", "#ffd866"),
    background: flag("transparent", false) ? "transparent" : colour("bg", "#000000"),
    box: colour("box", "transparent"),
    outline: integer("outline", 0, 20, 0),
    outlineColor: colour("outline-color", "#000000"),
    font: fontFamily("font"),
    align: choice("align", ["left", "center", "right"], "center"),
    lang: (params.get("lang") || "").trim().toLowerCase(), // "" = the first one seen, "none" = hide
    speakers: flag("speakers", true),
    partial: flag("partial", true),
    status: flag("status", true),
    token: params.get("token") || "",
  };

  function integer(name, low, high, fallback) {
    const value = Number.parseInt(params.get(name) ?? "", 10);
    return Number.isFinite(value) ? Math.min(high, Math.max(low, value)) : fallback;
  }

  function flag(name, fallback) {
    const value = (params.get(name) ?? "").trim().toLowerCase();
    if (["1", "true", "yes", "on"].includes(value)) return true;
    if (["0", "false", "no", "off"].includes(value)) return false;
    return fallback;
  }

  function choice(name, allowed, fallback) {
    const value = (params.get(name) ?? "").trim().toLowerCase();
    return allowed.includes(value) ? value : fallback;
  }

  function colour(name, fallback) {
    // "white", "%23ffcc00" (#ffcc00) or "ffcc00": a '#' in a URL would start its fragment.
    const value = (params.get(name) ?? "").trim();
    if (!value) return fallback;
    for (const candidate of [value, "#" + value]) {
      if (CSS.supports("color", candidate)) return candidate;
    }
    return fallback;
  }

  function fontFamily(name) {
    const value = (params.get(name) ?? "").trim();
    const fallback = "system-ui, 'DejaVu Sans', Arial, sans-serif";
    return value && CSS.supports("font-family", value) ? `${value}, ${fallback}` : fallback;
  }

  function outlineShadow(width, colour) {
    if (width <= 0) return "none";
    const shadows = [];
    for (let step = 0; step < 16; step += 1) {
      const angle = (step / 16) * 2 * Math.PI;
      const x = (Math.cos(angle) * width).toFixed(2);
      const y = (Math.sin(angle) * width).toFixed(2);
      shadows.push(`${x}px ${y}px 0 ${colour}`);
    }
    return shadows.join(", ");
  }

  const root = document.documentElement.style;
  root.setProperty("--size", `${settings.size}px`);
  root.setProperty("--color", settings.color);
  root.setProperty("--translation-color", settings.translationColor);
  root.setProperty("--background", settings.background);
  root.setProperty("--box", settings.box);
  root.setProperty("--outline", outlineShadow(settings.outline, settings.outlineColor));
  root.setProperty("--font", settings.font);
  root.setProperty("--align", settings.align);
  document.documentElement.dataset.align = settings.align;

  const body = document.body;
  const finalsList = document.getElementById("finals");
  const partialLines = document.getElementById("partials");
  const statusLine = document.getElementById("status");

  let finals = []; // {turn, text, speaker, channel, translations: {language: text}}, oldest first
  let partials = {}; // channel -> {turn, text, speaker, channel}: each side's turn in progress
  let languages = []; // translation languages, in the order they first arrived
  let state = { state: "connecting", detail: "" };
  let socket = null;
  let linked = false; // a connection that has delivered its history
  let failures = 0;
  let retryTimer = 0;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    node.className = className;
    if (text !== undefined) node.textContent = text; // text, never markup
    return node;
  }

  function shownLanguage() {
    if (settings.lang === "none") return null;
    return settings.lang || languages[0] || null;
  }

  function renderFinals() {
    const language = shownLanguage();
    const items = finals.slice(-settings.lines).map((line) => {
      const item = element("li", `line final channel-${line.channel}`);
      item.dataset.turn = String(line.turn);
      item.dataset.channel = line.channel;
      if (settings.speakers && line.speaker) item.append(element("span", "speaker", line.speaker));
      item.append(element("span", "text", line.text));
      const translated = language ? line.translations[language] : undefined;
      if (translated !== undefined) {
        const translation = element("span", "translation", translated);
        translation.lang = language;
        item.append(translation);
      }
      return item;
    });
    finalsList.replaceChildren(...items);
  }

  function renderPartial() {
    const shown = settings.partial ? Object.values(partials).filter((partial) => partial.text) : [];
    const lines = shown.map((partial) => {
      const line = element("p", `line partial channel-${partial.channel}`);
      line.dataset.turn = String(partial.turn);
      line.dataset.channel = partial.channel;
      if (settings.speakers && partial.speaker) line.append(element("span", "speaker", partial.speaker));
      line.append(element("span", "text", partial.text));
      return line;
    });
    partialLines.replaceChildren(...lines);
  }

  const STATUS_TEXT = {
    connecting: "waiting for the meeting to start",
    live: "",
    reconnecting: "captions paused: reconnecting to the speech service",
    ended: "the meeting ended",
  };

  function renderStatus() {
    body.dataset.state = state.state;
    body.dataset.link = linked ? "up" : "down";
    let text = STATUS_TEXT[state.state] ?? "";
    if (!linked && state.state !== "ended") text = "offline: reconnecting to the captions";
    statusLine.textContent = text;
    statusLine.title = state.detail || "";
    statusLine.hidden = !settings.status || !text;
  }

  function lineOf(message) {
    return {
      turn: message.turn,
      text: String(message.text ?? ""),
      speaker: message.speaker || null,
      channel: String(message.channel || "mic"),
      translations: { ...(message.translations || {}) },
    };
  }

  function addFinal(message) {
    const line = lineOf(message);
    const index = finals.findIndex((other) => other.turn === line.turn);
    if (index >= 0) finals[index] = { ...line, translations: finals[index].translations };
    else finals.push(line);
    finals.sort((a, b) => a.turn - b.turn);
    if (finals.length > MAX_LINES) finals = finals.slice(-MAX_LINES);
    const partial = partials[line.channel];
    if (partial && partial.turn <= line.turn) delete partials[line.channel]; // the final replaces it
  }

  function handle(message) {
    switch (message.type) {
      case "history":
        finals = [];
        (message.finals || []).forEach(addFinal);
        partials = {};
        (message.partials || []).forEach((partial) => { partials[partial.channel || "mic"] = partial; });
        languages = Array.isArray(message.languages) ? [...message.languages] : [];
        state = message.state || state;
        renderFinals();
        renderPartial();
        renderStatus();
        break;
      case "partial":
        partials[message.channel || "mic"] = message;
        renderPartial();
        break;
      case "final":
        addFinal(message);
        renderFinals();
        renderPartial();
        break;
      case "translation": {
        const line = finals.find((other) => other.turn === message.turn);
        if (line) line.translations[message.language] = String(message.text ?? "");
        if (!languages.includes(message.language)) languages.push(message.language);
        renderFinals();
        break;
      }
      case "state":
        state = message;
        renderStatus();
        break;
      default:
        break; // a newer server's message: nothing to do with it
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    const url = new URL("events", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.search = settings.token ? `?token=${encodeURIComponent(settings.token)}` : "";
    url.hash = "";
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (error) {
      retry();
      return;
    }
    socket = ws;
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (message.type === "history") {
        linked = true;
        failures = 0; // a healthy connection: start the backoff again from the bottom
      }
      handle(message);
    };
    ws.onclose = () => {
      if (socket !== ws) return;
      socket = null;
      linked = false;
      renderStatus();
      retry();
    };
  }

  function retry() {
    // Exponential backoff with jitter, so many pages do not all come back at once.
    const ceiling = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** failures);
    failures += 1;
    retryTimer = setTimeout(connect, ceiling / 2 + Math.random() * (ceiling / 2));
  }

  renderStatus();
  connect();
})();
