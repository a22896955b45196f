// Tabs of one browser share one stream: window.ChatStream is an EventSource
// look-alike for app.js. One tab (the leader) holds the one real
// EventSource and relays every event over a BroadcastChannel; the other
// tabs dispatch what it relays. When the leader goes, another tab opens the
// stream from the newest position it has seen (per room), so nothing is
// lost; message events at or before that position are dropped, so nothing
// is doubled.
// The leader is the holder of the Web Lock "chat-stream" where Web Locks
// exist (secure contexts: https and localhost). Elsewhere (plain http on a
// LAN name, where Web Locks are missing but BroadcastChannel is not) the
// tabs elect one over the channel itself: the leader beats every second and
// answers every claim at once; a tab that hears no leader for a while, or
// hears it resign, claims, and leads unless a leader answers or a tab with
// a smaller ID claims too. Without BroadcastChannel, ChatStream is not
// defined and app.js opens one EventSource per tab.
"use strict";

(() => {
  if (typeof BroadcastChannel !== "function") return;

  const LOCK = "chat-stream";
  const CHANNEL = "chat-stream";
  const TYPES = ["message", "presence", "join", "leave", "typing", "status", "notice", "disconnect", "delete", "edit"];
  const DEFAULT_ROOM = "chat"; // its position entry is written bare
  const RECENT = 200; // message events a leader keeps for a tab that arrives
  const TAKEOVER_DELAY_MS = 100; // lets the old leader's last relays arrive first
  const ID = /^\d+-\d+$/;
  // The election without Web Locks.
  const BEAT_MS = 500; // a leader says it is there this often (hidden tabs: once a second)
  const LEASE_MS = 1500; // a leader not heard from for this long is asked
  const FIRST_WAIT_MS = 150; // a new tab waits this long for a leader's welcome
  const CLAIM_WAIT_MS = 150; // a claim stands if nobody objects within this

  function compareIds(a, b) {
    const [am, as] = a.split("-").map(Number);
    const [bm, bs] = b.split("-").map(Number);
    return am - bm || as - bs;
  }

  // mergePosition raises pos (room → ID) to every entry of the composite s.
  function mergePosition(pos, s) {
    for (const entry of (s || "").split(",")) {
      const eq = entry.indexOf("=");
      const r = eq < 0 ? DEFAULT_ROOM : entry.slice(0, eq);
      const id = eq < 0 ? entry : entry.slice(eq + 1);
      if (ID.test(id) && (!pos.has(r) || compareIds(id, pos.get(r)) > 0)) pos.set(r, id);
    }
  }

  function formatPosition(pos) {
    const out = [...pos.keys()].filter((r) => r !== DEFAULT_ROOM).sort().map((r) => r + "=" + pos.get(r));
    if (pos.has(DEFAULT_ROOM)) out.unshift(pos.get(DEFAULT_ROOM));
    return out.join(",");
  }

  // joinedRooms is the page's list of the user's rooms, as the server
  // rendered it: a tab whose list differs from the leader's joined or left
  // a room, and the leader's stream must be reopened to carry the change.
  function joinedRooms() {
    return [...document.querySelectorAll("#joined li")].map((li) => li.dataset.room).sort().join(",");
  }

  const tabID = Math.random().toString(36).slice(2);

  class ChatStream extends EventTarget {
    constructor(url) {
      super();
      this.url = url;
      this.readyState = 0; // CONNECTING
      this.onopen = null;
      this.onerror = null;
      this.leading = false;
      this.pos = new Map(); // room → newest message ID seen
      mergePosition(this.pos, new URL(url, location.href).searchParams.get("last_event_id"));
      this.rooms = joinedRooms();
      this.source = null;
      this.recent = []; // leader: the last message events, for a tab that arrives
      this.presence = new Map(); // leader: room → Map uid → user
      this.status = null; // leader: the last status event's data
      this.channel = new BroadcastChannel(CHANNEL);
      this.channel.onmessage = (e) => this.fromChannel(e.data);
      this.abort = new AbortController();
      this.electing = navigator.locks ? "locks" : "channel";
      window.chatElection = this.electing; // for tests
      if (navigator.locks) {
        navigator.locks
          .request(LOCK, { signal: this.abort.signal }, () => new Promise((resolve) => {
            this.resign = resolve;
            setTimeout(() => this.lead(), TAKEOVER_DELAY_MS);
          }))
          .catch(() => {}); // aborted by close
      } else {
        this.heard = 0; // when a leader was last heard from (performance.now)
        this.claiming = null; // { objected } while a claim of this tab stands
        this.beat = null;
        this.watch = setInterval(() => this.checkLeader(), BEAT_MS / 2);
        setTimeout(() => this.checkLeader(), FIRST_WAIT_MS);
        this.onFreeze = () => this.stepDown(true); // a frozen tab cannot relay
        document.addEventListener("freeze", this.onFreeze);
      }
      this.post({ kind: "hello", from: tabID, rooms: this.rooms, pos: formatPosition(this.pos) });
    }

    // checkLeader claims the stream when no leader has been heard from
    // within the lease (or yet, for a new tab).
    checkLeader() {
      if (this.readyState === 2 || this.leading || this.claiming) return;
      if (this.heard && performance.now() - this.heard < LEASE_MS) return;
      this.claim();
    }

    claim() {
      if (this.readyState === 2 || this.leading || this.claiming) return;
      const claim = { objected: false };
      this.claiming = claim;
      this.post({ kind: "claim", from: tabID });
      setTimeout(() => {
        this.claiming = null;
        if (this.readyState === 2) return;
        if (claim.objected) this.heard = performance.now();
        else this.lead();
      }, CLAIM_WAIT_MS);
    }

    // stepDown gives the stream up: another leader was heard (the one with
    // the smaller ID keeps it), or this tab is frozen or closing.
    stepDown(resign) {
      if (!this.leading) return;
      this.leading = false;
      clearInterval(this.beat);
      this.beat = null;
      if (this.source) this.source.close();
      this.source = null;
      this.heard = performance.now();
      if (resign) this.post({ kind: "resign", from: tabID });
    }

    // election handles the channel election's messages; it returns true
    // when m was one of them.
    election(m) {
      if (this.electing !== "channel") return false;
      switch (m.kind) {
        case "beat":
          if (this.leading) {
            if (m.from < tabID) this.stepDown(false);
          } else {
            this.heard = performance.now();
            if (this.claiming) this.claiming.objected = true;
          }
          return true;
        case "claim":
          if (this.leading) this.post({ kind: "beat", from: tabID });
          else if (this.claiming && m.from < tabID) this.claiming.objected = true;
          return true;
        case "resign":
          if (!this.leading) {
            this.heard = 0;
            this.claim();
          }
          return true;
      }
      // Anything else a leader sends shows it is there.
      if (!this.leading && (m.kind === "event" || m.kind === "state" || m.kind === "welcome")) this.heard = performance.now();
      return false;
    }

    post(m) {
      try {
        this.channel.postMessage(m);
      } catch {
        // closed
      }
    }

    // deliver dispatches one stream event in this tab, a message event only
    // if it is newer than what this tab has for its room.
    deliver(type, data, id) {
      if (type === "message") {
        let m;
        try {
          m = JSON.parse(data);
        } catch {
          return;
        }
        const r = m.room || DEFAULT_ROOM;
        const known = this.pos.get(r);
        if (!ID.test(m.id || "") || (known && compareIds(m.id, known) <= 0)) return;
        this.pos.set(r, m.id);
        mergePosition(this.pos, id);
      }
      this.dispatchEvent(new MessageEvent(type, { data, lastEventId: id || "" }));
    }

    setState(state) {
      if (state === "open") {
        this.readyState = 1;
        const e = new Event("open");
        this.dispatchEvent(e);
        if (this.onopen) this.onopen(e);
      } else {
        this.readyState = state === "closed" ? 2 : 0;
        const e = new Event("error");
        this.dispatchEvent(e);
        if (this.onerror) this.onerror(e);
      }
    }

    fromChannel(m) {
      if (this.readyState === 2 && m.kind !== "hello") return;
      if (this.election(m)) return;
      if (this.leading) {
        if (m.kind === "hello") this.welcome(m);
        return;
      }
      switch (m.kind) {
        case "event":
          this.deliver(m.type, m.data, m.id);
          break;
        case "state":
          if (!m.to || m.to === tabID) this.setState(m.state);
          break;
        case "welcome":
          if (m.to !== tabID) break;
          for (const e of m.events) this.deliver(e.type, e.data, e.id);
          if (m.state === "open" || m.state === "closed") this.setState(m.state);
          break;
      }
    }

    // welcome answers a tab that arrived: what it may have missed since its
    // page was rendered, who is online, and whether the stream is open; a
    // tab that joined or left a room makes the stream reopen.
    welcome(m) {
      const events = [...this.recent];
      for (const [room, people] of this.presence) {
        const users = [...people].map(([uid, user]) => ({ uid, user }));
        events.push({ type: "presence", data: JSON.stringify({ room, users, count: users.length }), id: "" });
      }
      if (this.status) events.push({ type: "status", data: this.status, id: "" });
      const state = !this.source ? "" : this.source.readyState === 1 ? "open" : this.source.readyState === 2 ? "closed" : "connecting";
      this.post({ kind: "welcome", to: m.from, events, state });
      if (m.rooms !== this.rooms) {
        this.rooms = m.rooms;
        mergePosition(this.pos, m.pos); // a new room resumes where that page was rendered
        this.open();
      }
    }

    lead() {
      if (this.readyState === 2 || this.leading) return;
      this.leading = true;
      if (this.electing === "channel") {
        this.post({ kind: "beat", from: tabID });
        this.beat = setInterval(() => this.post({ kind: "beat", from: tabID }), BEAT_MS);
      }
      this.open();
    }

    open() {
      if (this.source) this.source.close();
      this.recent = [];
      this.presence = new Map();
      const from = formatPosition(this.pos);
      const u = new URL(this.url, location.href);
      if (from) u.searchParams.set("last_event_id", from);
      else u.searchParams.delete("last_event_id");
      const source = new EventSource(u.pathname + u.search);
      this.source = source;
      window.chatStreamOpens = (window.chatStreamOpens || 0) + 1; // for tests
      source.onopen = () => {
        if (this.source !== source) return;
        this.post({ kind: "state", state: "open" });
        this.setState("open");
      };
      source.onerror = () => {
        if (this.source !== source) return;
        const state = source.readyState === 2 ? "closed" : "connecting";
        this.post({ kind: "state", state });
        this.setState(state);
      };
      for (const type of TYPES) {
        source.addEventListener(type, (e) => {
          if (this.source !== source) return;
          this.remember(type, e.data, e.lastEventId);
          this.post({ kind: "event", type, data: e.data, id: e.lastEventId });
          this.deliver(type, e.data, e.lastEventId);
        });
      }
    }

    remember(type, data, id) {
      let d = {};
      try {
        d = JSON.parse(data);
      } catch {
        return;
      }
      if (type === "message") {
        this.recent.push({ type, data, id });
        if (this.recent.length > RECENT) this.recent.shift();
      } else if (type === "presence") {
        this.presence.set(d.room, new Map((d.users || []).map((u) => [u.uid, u.user])));
      } else if (type === "join" || type === "leave") {
        const people = this.presence.get(d.room) || new Map();
        this.presence.set(d.room, people);
        if (type === "join") people.set(d.uid, d.user);
        else people.delete(d.uid);
      } else if (type === "status") {
        this.status = data;
      }
    }

    close() {
      this.readyState = 2;
      this.abort.abort();
      clearInterval(this.watch);
      clearInterval(this.beat);
      if (this.onFreeze) document.removeEventListener("freeze", this.onFreeze);
      if (this.source) this.source.close();
      this.source = null;
      if (this.leading) {
        this.post({ kind: "state", state: "connecting" });
        if (this.electing === "channel") this.post({ kind: "resign", from: tabID });
      }
      this.leading = false;
      if (this.resign) this.resign();
      this.channel.close();
    }
  }
  ChatStream.CONNECTING = 0;
  ChatStream.OPEN = 1;
  ChatStream.CLOSED = 2;
  window.ChatStream = ChatStream;
})();
