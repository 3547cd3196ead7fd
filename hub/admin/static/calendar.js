// calhub's central calendar page: EventCalendar (vendored) over the admin API.
//
// Rules this file keeps: every user string reaches the page through textContent (never as
// HTML); every change goes through the public HTTP API with the session's CSRF token and
// the entry's version as a precondition; a refused change is reverted and explained.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const DEFAULT_COLOUR = '#3a87ad';
  const EXTERNAL_COLOUR = '#9e9e9e';
  const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
  const VIEWS = {
    agents: 'resourceTimeGridWeek',
    timeline: 'resourceTimelineWeek',
    group: 'timeGridWeek',
    month: 'dayGridMonth',
    list: 'listWeek',
  };
  const MIXED_VIEWS = new Set(['group', 'month', 'list']); // several agents in one column
  const KIND_LABELS = {
    planned: 'planned (request plan)',
    action: 'logged action',
    manual: 'booked',
    external: "agent's own (read-only)",
  };
  const STATE_LABELS = {
    local: 'hub calendar only',
    pending: 'waiting for approval',
    sync: 'synced to the agent\u2019s calendar',
    rejected: 'rejected: hub calendar only',
    external: 'from the agent\u2019s calendar',
  };

  const state = {
    csrf: null,
    settings: null,
    agents: [],
    byId: new Map(),
    chosen: new Set(),
    ec: null,
    view: 'agents',
    days: 7,
    date: null,
    prefetch: null,
    hours: { from: 0, to: 24 * 60 },
    details: null,
  };

  // ------------------------------------------------------------------ helpers

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (state.csrf && method !== 'GET') headers['X-CSRF-Token'] = state.csrf;
    const response = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const message = (data && data.error) || `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, message);
    }
    return data;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function say(message, kind) {
    const status = $('status');
    status.textContent = message;
    status.className = `status ${kind || 'info'}`;
  }

  function pad(n) {
    return String(n).padStart(2, '0');
  }

  function localDate(d) {
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  }

  function wire(date, allDay) {
    // All-day entries travel as dates, timed ones as UTC instants.
    return allDay ? localDate(date) : date.toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  function minutes(hhmm) {
    const [h, m] = hhmm.split(':').map(Number);
    return h * 60 + m;
  }

  function clock(total) {
    return `${pad(Math.floor(total / 60))}:${pad(total % 60)}:00`;
  }

  // ------------------------------------------------------------------ entries -> events

  function colourOf(entry) {
    if (entry.kind === 'external') return EXTERNAL_COLOUR;
    if (entry.kind === 'planned') return state.settings.planned_colour;
    const agent = state.byId.get(entry.agent);
    return (agent && agent.colour) || DEFAULT_COLOUR;
  }

  function toEvent(entry) {
    const movable = !entry.read_only;
    const classes = [`kind-${entry.kind}`, `state-${entry.state}`];
    if (entry.private) classes.push('private');
    return {
      id: entry.id,
      resourceIds: [entry.agent],
      start: entry.start,
      end: entry.end,
      allDay: entry.all_day,
      title: entry.title,
      editable: movable,
      startEditable: movable,
      durationEditable: movable,
      backgroundColor: colourOf(entry),
      classNames: classes,
      extendedProps: { entry },
    };
  }

  function eventContent(info) {
    // The agents' own views draw EventCalendar's default content (time, title as text):
    // its fastest path, which matters with 1,500 entries. Views mixing agents add a line
    // naming the agent. Badges ("awaiting approval", "busy") come from the stylesheet.
    if (!MIXED_VIEWS.has(state.view)) return undefined;
    const entry = info.event.extendedProps.entry;
    if (!entry) return undefined;
    const nodes = [];
    if (info.timeText) nodes.push(el('span', 'ec-event-time', info.timeText));
    nodes.push(el('span', 'ec-event-title', entry.title));
    const agent = state.byId.get(entry.agent);
    nodes.push(el('span', 'who', agent ? agent.name : entry.agent));
    return { domNodes: nodes };
  }

  function applyShading() {
    // Non-working time is painted by the stylesheet, not drawn as background events (1,500
    // of those for 50 agents cost more than the entries): the working hours as positions in
    // the visible day, whole days off as classes. Set through CSSOM, which the CSP allows.
    const s = state.settings;
    const { from, to } = state.hours;
    const share = (m) => `${Math.min(100, Math.max(0, ((m - from) / (to - from)) * 100))}%`;
    const root = $('ec');
    root.style.setProperty('--work-start', share(minutes(s.day_start)));
    root.style.setProperty('--work-end', share(minutes(s.day_end)));
    for (const day of DAY_NAMES) root.classList.toggle(`off-${day}`, !s.working_days.includes(day));
  }

  function fetchEntries(start, end) {
    const query = new URLSearchParams({
      from: start.toISOString(),
      to: end.toISOString(),
      agents: [...state.chosen].join(','),
    });
    return api('GET', `/calendar/entries?${query}`);
  }

  function firstRange() {
    // The range the first view will ask for, so that its entries are on the way while the
    // calendar builds its grid (for 50 agents that takes longer than the request). Only for
    // the views whose range is plain: whole weeks from Monday, or days from the date.
    if (state.view === 'month') return null;
    const [y, m, d] = (state.date || localDate(new Date())).split('-').map(Number);
    let start = new Date(y, m - 1, d);
    if (state.days % 7 === 0) start = new Date(y, m - 1, d - ((start.getDay() + 6) % 7));
    const end = new Date(start.getFullYear(), start.getMonth(), start.getDate() + state.days);
    return { start, end };
  }

  async function loadEvents(info) {
    if (!state.chosen.size) return [];
    const early = state.prefetch;
    state.prefetch = null; // used once: later ranges and agent choices fetch their own
    const same = early && early.start.getTime() === info.start.getTime()
      && early.end.getTime() === info.end.getTime();
    const data = await (same ? early.entries : fetchEntries(info.start, info.end));
    return data.entries.map(toEvent);
  }

  // ------------------------------------------------------------------ live updates

  async function refresh(ids) {
    if (!ids.length || !state.ec) return;
    const data = await api('GET', `/calendar/entries?ids=${ids.join(',')}`);
    for (const id of data.gone) state.ec.removeEventById(id);
    for (const entry of data.entries) {
      state.ec.removeEventById(entry.id);
      if (state.chosen.has(entry.agent)) state.ec.addEvent(toEvent(entry));
    }
  }

  function listen() {
    const live = $('live');
    const source = new EventSource('/calendar/events');
    source.addEventListener('open', () => {
      live.textContent = 'live';
      live.className = 'live on';
    });
    source.addEventListener('error', () => {
      live.textContent = 'reconnecting';
      live.className = 'live';
    });
    source.addEventListener('changed', (event) => {
      refresh(JSON.parse(event.data)).catch((err) => say(err.message, 'error'));
    });
    source.addEventListener('reload', () => state.ec.refetchEvents());
  }

  // ------------------------------------------------------------------ changes

  async function change(info, what) {
    const entry = info.event.extendedProps.entry;
    const body = {
      start: wire(info.event.start, info.event.allDay),
      end: wire(info.event.end, info.event.allDay),
      version: entry.version,
    };
    if (info.newResource && info.newResource.id !== entry.agent) body.agent = info.newResource.id;
    try {
      const updated = await api('PATCH', `/appointments/${encodeURIComponent(entry.id)}`, body);
      await refresh(updated.id === entry.id ? [entry.id] : [entry.id, updated.id]);
      say(`${what}: ${entry.title}`, 'info');
    } catch (err) {
      info.revert();
      say(`Not ${what.toLowerCase()}: ${err.message}`, 'error');
    }
  }

  function openBooking(info) {
    const dialog = $('book');
    const select = $('book-agent');
    select.replaceChildren();
    const agents = info.resource ? [state.byId.get(info.resource.id)] : chosenAgents();
    for (const agent of agents) {
      const option = el('option', '', agent.name);
      option.value = agent.id;
      select.append(option);
    }
    $('book-when').textContent = `${info.start.toLocaleString()} \u2013 ${info.end.toLocaleString()}`;
    $('book-error').textContent = '';
    dialog.dataset.start = wire(info.start, info.allDay);
    dialog.dataset.end = wire(info.end, info.allDay);
    dialog.showModal();
    $('book-request').focus();
  }

  async function submitBooking(event) {
    event.preventDefault();
    const dialog = $('book');
    const request = $('book-request').value.trim();
    try {
      const made = await api('POST', `/requests/${encodeURIComponent(request)}/appointments`, {
        subject: $('book-subject').value,
        start: dialog.dataset.start,
        end: dialog.dataset.end,
        agents: [$('book-agent').value],
        note: $('book-note').value,
        private: $('book-private').checked,
      });
      dialog.close();
      $('book-form').reset();
      state.ec.unselect();
      await refresh(made.map((a) => a.id));
      say(`Booked: ${made[0].display_subject}`, 'info');
    } catch (err) {
      $('book-error').textContent = err.message;
    }
  }

  function row(list, term, value) {
    list.append(el('dt', '', term), el('dd', '', value));
  }

  async function openDetails(info) {
    const entry = info.event.extendedProps.entry;
    if (!entry) return;
    const dialog = $('details');
    $('details-error').textContent = '';
    let appt;
    try {
      appt = await api('GET', `/appointments/${encodeURIComponent(entry.id)}`);
    } catch (err) {
      say(err.message, 'error');
      return;
    }
    const agent = state.byId.get(appt.agent);
    $('details-title').textContent = appt.display_subject;
    const list = $('details-list');
    list.replaceChildren();
    row(list, 'Agent', agent ? agent.name : appt.agent);
    row(list, 'When', `${info.event.start.toLocaleString()} \u2013 ${info.event.end.toLocaleString()}`);
    row(list, 'Kind', KIND_LABELS[appt.kind] || appt.kind);
    row(list, 'Request', appt.request_id || '\u2014');
    if (appt.note) row(list, 'Note', appt.note);
    if (appt.private) row(list, 'Private', 'yes');
    row(list, 'State', STATE_LABELS[appt.push_state] || appt.push_state);
    row(
      list,
      'Synced',
      appt.sync
        ? `${appt.sync.account}: ${appt.sync.state}${appt.sync.remote_id ? '' : ' (not yet created)'}`
        : 'not linked to an external calendar',
    );
    const conflicts = await api('GET', `/conflicts?agent=${encodeURIComponent(appt.agent)}`);
    const mine = conflicts.filter((c) => c.appointment_id === appt.id);
    row(
      list,
      'Conflicts',
      mine.length ? mine.map((c) => `${c.created_at}: ${c.winner} won (${c.policy})`).join('; ') : 'none',
    );
    const pending = appt.push_state === 'pending';
    $('approve').hidden = !pending;
    $('reject').hidden = !pending;
    $('cancel-appointment').hidden = appt.read_only;
    state.details = appt;
    dialog.showModal();
  }

  async function decide(approve) {
    const appt = state.details;
    try {
      const queue = await api('GET', '/approvals');
      const approval = queue.find((a) => a.appointment_id === appt.id);
      if (!approval) throw new ApiError(409, 'no pending approval for this appointment any more');
      await api('POST', `/approvals/${encodeURIComponent(approval.id)}`, { approve });
      $('details').close();
      await refresh([appt.id]);
      say(`${approve ? 'Approved' : 'Rejected'}: ${appt.display_subject}`, 'info');
    } catch (err) {
      $('details-error').textContent = err.message;
    }
  }

  async function cancelAppointment() {
    const appt = state.details;
    try {
      await api('DELETE', `/appointments/${encodeURIComponent(appt.id)}`);
      $('details').close();
      state.ec.removeEventById(appt.id);
      say(`Cancelled: ${appt.display_subject}`, 'info');
    } catch (err) {
      $('details-error').textContent = err.message;
    }
  }

  // ------------------------------------------------------------------ the calendar

  function chosenAgents() {
    return state.agents.filter((a) => state.chosen.has(a.id));
  }

  function resources() {
    return chosenAgents().map((agent) => ({
      id: agent.id,
      title: agent.name,
      eventBackgroundColor: agent.colour || DEFAULT_COLOUR,
      extendedProps: { agent },
    }));
  }

  function resourceLabel(info) {
    const agent = info.resource.extendedProps.agent;
    const swatch = el('span', 'swatch');
    swatch.style.backgroundColor = agent.colour || DEFAULT_COLOUR;
    const nodes = [swatch, el('span', 'agent-name', agent.name)];
    if (agent.attention) {
      const flag = el('span', 'attention', '\u26a0 needs attention');
      flag.title = agent.attention;
      nodes.push(flag);
    }
    return { domNodes: nodes };
  }

  function duration() {
    if (state.view === 'month') return { months: 1 };
    // Whole weeks start on the first day of the week; other spans start on the shown date.
    if (state.days % 7 === 0) return { weeks: state.days / 7 };
    return { days: state.days };
  }

  function applyView() {
    const ec = state.ec;
    ec.setOption('view', VIEWS[state.view]);
    ec.setOption('duration', duration());
  }

  function applyHours() {
    const from = minutes($('hour-from').value || '00:00');
    const to = minutes($('hour-to').value || '00:00') || 24 * 60; // 00:00 as the end: midnight
    if (to <= from) {
      say('The visible hours must end after they start.', 'error');
      return;
    }
    state.hours = { from, to };
    state.ec.setOption('slotMinTime', clock(from));
    state.ec.setOption('slotMaxTime', clock(to));
    applyShading();
  }

  function buildChooser() {
    const list = $('agent-list');
    list.replaceChildren();
    for (const agent of state.agents) {
      const label = el('label', 'agent-choice');
      const box = el('input');
      box.type = 'checkbox';
      box.value = agent.id;
      box.checked = state.chosen.has(agent.id);
      box.addEventListener('change', () => {
        if (box.checked) state.chosen.add(agent.id);
        else state.chosen.delete(agent.id);
        state.ec.setOption('resources', resources());
        state.ec.refetchEvents();
      });
      const swatch = el('span', 'swatch');
      swatch.style.backgroundColor = agent.colour || DEFAULT_COLOUR;
      label.append(box, swatch, el('span', '', agent.name));
      list.append(label);
    }
  }

  function createCalendar() {
    const s = state.settings;
    const from = Math.max(0, minutes(s.day_start) - 60);
    const to = Math.min(24 * 60, minutes(s.day_end) + 60);
    state.hours = { from, to };
    $('hour-from').value = clock(from).slice(0, 5);
    $('hour-to').value = to === 24 * 60 ? '00:00' : clock(to).slice(0, 5);
    $('slot').value = String(s.slot_minutes);
    $('days').value = String(state.days);
    state.ec = EventCalendar.create($('ec'), {
      view: VIEWS[state.view],
      date: state.date || new Date(),
      duration: duration(),
      height: 'auto',
      firstDay: 1,
      timeZone: 'local',
      nowIndicator: true,
      allDaySlot: true,
      slotDuration: clock(s.slot_minutes),
      slotMinTime: clock(from),
      slotMaxTime: clock(to),
      scrollTime: clock(minutes(s.day_start)),
      headerToolbar: { start: 'prev,next today', center: 'title', end: '' },
      resources: resources(),
      resourceLabelContent: resourceLabel,
      eventSources: [{ events: loadEvents }],
      lazyFetching: true,
      editable: true,
      selectable: true,
      eventContent,
      eventDidMount: (info) => {
        // Which entry and agent an element shows, for styles and tests (data, never markup).
        const entry = info.event.extendedProps.entry;
        if (!entry) return;
        info.el.dataset.id = entry.id;
        info.el.dataset.agent = entry.agent;
      },
      eventDrop: (info) => change(info, 'Moved'),
      eventResize: (info) => change(info, 'Resized'),
      select: openBooking,
      eventClick: openDetails,
      loading: (busy) => document.body.classList.toggle('loading', busy),
    });
    applyShading();
  }

  function bindControls() {
    $('view').addEventListener('change', (e) => {
      state.view = e.target.value;
      applyView();
    });
    $('days').addEventListener('change', (e) => {
      state.days = Number(e.target.value);
      applyView();
    });
    $('slot').addEventListener('change', (e) => {
      state.ec.setOption('slotDuration', clock(Number(e.target.value)));
    });
    $('hour-from').addEventListener('change', applyHours);
    $('hour-to').addEventListener('change', applyHours);
    $('logout').addEventListener('click', async () => {
      await api('POST', '/calendar/logout').catch(() => null);
      window.location.reload();
    });
    $('book-form').addEventListener('submit', submitBooking);
    $('book-close').addEventListener('click', () => {
      $('book').close();
      state.ec.unselect();
    });
    $('details-close').addEventListener('click', () => $('details').close());
    $('approve').addEventListener('click', () => decide(true));
    $('reject').addEventListener('click', () => decide(false));
    $('cancel-appointment').addEventListener('click', cancelAppointment);
  }

  function readAddress() {
    // ?date=YYYY-MM-DD&view=agents&days=7&agents=alice,bob: a view worth a bookmark.
    const params = new URLSearchParams(window.location.search);
    if (VIEWS[params.get('view')]) state.view = params.get('view');
    const days = Number(params.get('days'));
    if ([1, 2, 3, 5, 7, 14].includes(days)) state.days = days;
    if (/^\d{4}-\d{2}-\d{2}$/.test(params.get('date') || '')) state.date = params.get('date');
    const agents = (params.get('agents') || '').split(',').filter((id) => state.byId.has(id));
    if (agents.length) state.chosen = new Set(agents);
    $('view').value = state.view;
  }

  function boot(session) {
    state.csrf = session.csrf;
    state.settings = session.calendar;
    state.agents = session.agents;
    state.byId = new Map(session.agents.map((a) => [a.id, a]));
    state.chosen = new Set(session.agents.map((a) => a.id));
    readAddress();
    const range = firstRange();
    if (range && state.chosen.size) {
      state.prefetch = { ...range, entries: fetchEntries(range.start, range.end) };
      state.prefetch.entries.catch(() => null); // its failure is reported by loadEvents
    }
    $('login').hidden = true;
    $('app').hidden = false;
    bindControls();
    buildChooser();
    createCalendar();
    listen();
    document.body.dataset.ready = 'true';
  }

  function showLogin() {
    $('app').hidden = true;
    $('login').hidden = false;
    $('login-token').focus();
  }

  async function login(event) {
    event.preventDefault();
    $('login-error').textContent = '';
    try {
      await api('POST', '/calendar/login', { token: $('login-token').value });
      $('login-token').value = '';
      await start();
    } catch (err) {
      $('login-error').textContent = err.message;
    }
  }

  async function start() {
    try {
      boot(await api('GET', '/calendar/session'));
    } catch (err) {
      if (err.status === 401) showLogin();
      else say(err.message, 'error');
    }
  }

  $('login-form').addEventListener('submit', login);
  start();
})();
