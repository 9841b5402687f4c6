// The supervisor's plant settings in the floor app (ADR 0053): the reason codes (each
// change an event on the log, with who made it), the lines' shifts, and the calendars
// of ADR 0060 (rotations with crews and breaks, days off, holidays).
//
// Settings are changed online only (`direct`): they are not floor actions with a floor
// time, and the person must see at once whether the server took the change. The pure
// parts (`shiftRows`, `linesOf`, `reasonBody`, `rotationBody`, `rotationEditor`, `preset`) are separate from the DOM and the I/O.

const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
const LOSS_NAME = {
  breakdown: 'Breakdown', setup_adjustment: 'Setup and adjustment', small_stop: 'Small stop',
  reduced_speed: 'Reduced speed', startup_reject: 'Start-up rejects', production_reject: 'Production rejects',
};

/** The lines a supervisor may give shifts: every machine's line and every line with shifts. */
export function linesOf(machines, calendar) {
  const lines = new Set(machines.map((m) => m.line).filter(Boolean));
  for (const l of calendar?.lines || []) lines.add(l.line);
  return [...lines].sort();
}

/** The explicit ISA-95 sites of a hierarchy tree (ADR 0062), depth-first. */
export function sitesOf(hierarchy) {
  const out = [];
  const walk = (nodes) => {
    for (const n of nodes || []) {
      if (n.level === 'site' && !n.implicit) out.push({ id: n.node_id, name: n.name });
      walk(n.children);
    }
  };
  walk(hierarchy?.roots);
  return out;
}

/** The shifts of `line` in the calendar (a copy, to be edited). */
export function shiftRows(calendar, line) {
  const found = (calendar?.lines || []).find((l) => l.line === line);
  return (found?.shifts || []).map((s) => ({ ...s, days: [...(s.days || [1, 2, 3, 4, 5, 6, 7])] }));
}

/** The body of a reason-code definition; a planned code names no loss. */
export function reasonBody(name, category, loss) {
  return category === 'planned' ? { name, category } : { name, category, loss };
}

/** `10:00-10:30, 12:00–12:20` → [{start, end}]; throws on anything else. */
export function parseBreaks(text) {
  const parts = (text || '').split(',').map((x) => x.trim()).filter(Boolean);
  return parts.map((p) => {
    const m = /^(\d{1,2}:\d{2})\s*[-–]\s*(\d{1,2}:\d{2})$/.exec(p);
    if (!m) throw new Error(`break "${p}" is not HH:MM-HH:MM`);
    const pad = (t) => t.padStart(5, '0');
    return { start: pad(m[1]), end: pad(m[2]) };
  });
}

/** The breaks of a shift as the editor shows them. */
export function breaksText(breaks) {
  return (breaks || []).map((b) => `${b.start.slice(0, 5)}-${b.end.slice(0, 5)}`).join(', ');
}

/**
 * A rotation's body from the editor: `shifts` are the rotation's shifts ({shift, start,
 * end, breaks as text}), `grid[day][k]` says whether cycle day `day` works shift `k`
 * and with which crew.
 */
export function rotationBody(anchor, shifts, grid) {
  const specs = shifts.map((s) => ({ shift: s.shift.trim(), start: s.start, end: s.end, breaks: parseBreaks(s.breaks) }));
  return {
    anchor,
    days: grid.map((row) => row.flatMap((cell, k) => {
      if (!cell.work || !specs[k]) return [];
      const team = cell.team.trim();
      return [team ? { ...specs[k], team } : { ...specs[k] }];
    })),
  };
}

/** The editor's shifts and grid for a recorded rotation. */
export function rotationEditor(rotation) {
  const shifts = [];
  const key = (s) => JSON.stringify([s.shift, s.start.slice(0, 5), s.end.slice(0, 5), breaksText(s.breaks)]);
  for (const day of rotation.days) {
    for (const s of day) {
      if (!shifts.some((x) => key(x.spec) === key(s))) shifts.push({ spec: s });
    }
  }
  return {
    anchor: rotation.anchor,
    shifts: shifts.map(({ spec }) => ({ shift: spec.shift, start: spec.start.slice(0, 5), end: spec.end.slice(0, 5), breaks: breaksText(spec.breaks) })),
    grid: rotation.days.map((day) => shifts.map(({ spec }) => {
      const s = day.find((x) => key(x) === key(spec));
      return { work: Boolean(s), team: s?.team || '' };
    })),
  };
}

/** Common 12-hour rotations with four crews (A, B on days; C, D on nights). */
export const PRESETS = {
  '4-on-4-off': [1, 1, 1, 1, 0, 0, 0, 0],
  '2-2-3': [1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0],
};

/** A preset's shifts and grid: crew A or B on the day shift, C or D on the night shift. */
export function preset(name) {
  const pattern = PRESETS[name];
  if (!pattern) return null;
  return {
    shifts: [{ shift: 'day', start: '06:00', end: '18:00', breaks: '' }, { shift: 'night', start: '18:00', end: '06:00', breaks: '' }],
    grid: pattern.map((on) => [{ work: true, team: on ? 'A' : 'B' }, { work: true, team: on ? 'C' : 'D' }]),
  };
}

export class Settings {
  /** `ui`: { $, el, get, direct, toast, gate, app }. */
  constructor(ui) {
    this.ui = ui;
    this.calendar = null;
    this.line = '';
    this.rows = [];
    this.rot = { shifts: [], grid: [] };
  }

  wire() {
    const { $ } = this.ui;
    $('sv-reason').addEventListener('submit', (ev) => this.onDefine(ev));
    $('sv-reason-category').addEventListener('change', () => this.lossEnabled());
    $('sv-reasons').addEventListener('click', (ev) => this.onReasonClick(ev));
    $('sv-shift-line').addEventListener('change', (ev) => { this.line = ev.target.value; this.editLine(); });
    $('sv-shift-add').addEventListener('click', () => this.addShift());
    $('sv-shift-rows').addEventListener('click', (ev) => this.onShiftClick(ev));
    $('sv-shift-rows').addEventListener('change', (ev) => this.onShiftChange(ev));
    $('sv-shifts').addEventListener('submit', (ev) => this.onSaveShifts(ev));
    $('sv-holiday').addEventListener('submit', (ev) => this.onAddHoliday(ev));
    $('sv-holidays').addEventListener('click', (ev) => this.onHolidayClick(ev));
    $('sv-dayoff').addEventListener('submit', (ev) => this.onDayOff(ev));
    $('sv-rotation').addEventListener('submit', (ev) => this.onSaveRotation(ev));
    $('sv-rot-days').addEventListener('change', () => this.resizeCycle());
    $('sv-rot-add').addEventListener('click', () => this.addRotationShift());
    $('sv-rot-preset').addEventListener('change', (ev) => this.applyPreset(ev.target.value));
    $('sv-rot-load').addEventListener('click', () => this.loadRotation());
    for (const id of ['sv-rot-shifts', 'sv-rot-grid']) {
      $(id).addEventListener('change', (ev) => this.onRotationChange(ev));
      $(id).addEventListener('click', (ev) => this.onRotationClick(ev));
    }
    this.resizeCycle();
    this.lossEnabled();
  }

  /** The loss only applies to unplanned codes. */
  lossEnabled() {
    const { $ } = this.ui;
    $('sv-reason-loss').disabled = $('sv-reason-category').value === 'planned';
  }

  async load() {
    const { get, app } = this.ui;
    if (app.endpoints.has('get /api/v1/calendar')) this.calendar = await get('/api/v1/calendar').catch(() => this.calendar);
    app.reasons = await get('/api/v1/reason-codes').catch(() => app.reasons);
  }

  render() {
    this.renderReasons();
    this.renderCalendar();
    this.renderHistory();
  }

  /** Rotations, exceptions and holidays (ADR 0060). */
  renderHistory() {
    const { $, el, gate } = this.ui;
    if (!this.calendar) return;
    const shiftText = (s) => `${s.shift}${s.team ? ` (${s.team})` : ''} ${s.start.slice(0, 5)}–${s.end.slice(0, 5)}`
      + (s.breaks && s.breaks.length ? `, breaks ${s.breaks.map((b) => `${b.start.slice(0, 5)}–${b.end.slice(0, 5)}`).join(', ')}` : '');
    const dayText = (shifts) => (shifts.length ? shifts.map(shiftText).join('; ') : 'no work');
    const fill = (id, rows) => {
      const tb = $(id).tBodies[0];
      const sig = JSON.stringify(rows);
      if (tb.dataset.sig === sig) return false;
      tb.dataset.sig = sig;
      return tb;
    };
    const rot = this.calendar.rotations || [];
    let tb = fill('sv-rotations', rot);
    if (tb) tb.replaceChildren(...rot.map((r) => el('tr', {}, el('td', { text: r.line }), el('td', { text: r.effective_from }),
      el('td', { text: `${r.rotation.days.length} days from ${r.rotation.anchor}` }),
      el('td', { text: r.rotation.days.map((d, k) => `day ${k + 1}: ${dayText(d)}`).join(' · ') }))));
    const exc = this.calendar.exceptions || [];
    tb = fill('sv-exceptions', exc);
    if (tb) tb.replaceChildren(...exc.map((x) => el('tr', { 'data-day': x.day },
      el('td', { text: x.line }), el('td', { text: x.day }), el('td', { text: dayText(x.shifts) }))));
    const hol = this.calendar.non_working || [];
    tb = fill('sv-holidays', hol);
    const sites = sitesOf(this.ui.app.hierarchy);
    const select = $('sv-holiday-site');
    const sig = JSON.stringify(sites);
    if (select.dataset.sig !== sig) {
      select.dataset.sig = sig;
      const keep = select.value;
      select.replaceChildren(el('option', { value: '', text: 'The whole plant' }),
        ...sites.map((x) => el('option', { value: x.id, text: `Site ${x.name} (${x.id})` })));
      select.value = sites.some((x) => x.id === keep) ? keep : '';
    }
    if (tb) {
      tb.replaceChildren(...hol.map((n) => el('tr', { 'data-holiday': n.id },
        el('td', { text: n.site ? `${n.name} (site ${n.site})` : n.name }), el('td', { text: n.from.replace('T', ' ').slice(0, 16) }),
        el('td', { text: n.to.replace('T', ' ').slice(0, 16) }),
        el('td', {}, el('button', { type: 'button', className: 'danger', 'data-remove-holiday': n.id, 'data-perm': 'settings',
          text: 'Remove', 'aria-label': `Remove holiday ${n.name}` })))));
      gate(tb);
    }
  }

  async onAddHoliday(ev) {
    ev.preventDefault();
    const { $ } = this.ui;
    const secs = (v) => (v.length === 16 ? `${v}:00` : v);
    const body = { name: $('sv-holiday-name').value.trim(), from: secs($('sv-holiday-from').value), to: secs($('sv-holiday-to').value) };
    if ($('sv-holiday-site').value) body.site = $('sv-holiday-site').value;
    if (await this.change(`holiday ${body.name} added`, 'POST', '/api/v1/calendar/non-working', body)) ev.target.reset();
  }

  async onHolidayClick(ev) {
    const b = ev.target.closest('button[data-remove-holiday]');
    if (!b) return;
    await this.change('holiday removed', 'DELETE', `/api/v1/calendar/non-working/${b.dataset.removeHoliday}`);
  }

  async onDayOff(ev) {
    ev.preventDefault();
    const { $ } = this.ui;
    const day = $('sv-dayoff-date').value;
    if (!this.line || !day) return;
    await this.change(`${day} is a day off on ${this.line}`, 'PUT',
      `/api/v1/calendar/lines/${encodeURIComponent(this.line)}/exceptions/${day}`, { shifts: [] });
  }

  /** The cycle's length from the form: adds empty days or drops the last ones. */
  resizeCycle() {
    const n = Math.max(1, Math.min(366, Number(this.ui.$('sv-rot-days').value) || 1));
    const { grid, shifts } = this.rot;
    while (grid.length < n) grid.push(shifts.map(() => ({ work: false, team: '' })));
    grid.length = n;
    this.renderRotation();
  }

  addRotationShift() {
    this.rot.shifts.push({ shift: `shift-${this.rot.shifts.length + 1}`, start: '06:00', end: '14:00', breaks: '' });
    for (const row of this.rot.grid) row.push({ work: false, team: '' });
    this.renderRotation();
  }

  applyPreset(name) {
    const p = preset(name);
    if (!p) return;
    this.rot = p;
    this.ui.$('sv-rot-days').value = p.grid.length;
    this.renderRotation();
  }

  /** Starts from the line's rotation in force today (the latest recorded), if any. */
  loadRotation() {
    const { toast, $ } = this.ui;
    const today = new Date().toISOString().slice(0, 10);
    const mine = (this.calendar?.rotations || []).filter((r) => r.line === this.line && r.effective_from <= today);
    mine.sort((a, b) => (a.effective_from + a.recorded_at).localeCompare(b.effective_from + b.recorded_at));
    const current = mine[mine.length - 1];
    if (!current) {
      toast(`${this.line} has no rotation in force`, 'error');
      return;
    }
    const ed = rotationEditor(current.rotation);
    this.rot = { shifts: ed.shifts, grid: ed.grid };
    $('sv-rot-anchor').value = ed.anchor;
    $('sv-rot-days').value = ed.grid.length;
    this.renderRotation();
  }

  renderRotation() {
    this.renderRotationShifts();
    this.renderRotationGrid();
  }

  renderRotationShifts() {
    const { $, el } = this.ui;
    const { shifts } = this.rot;
    $('sv-rot-shifts').tBodies[0].replaceChildren(...shifts.map((s, k) => el('tr', {},
      el('td', {}, el('input', { value: s.shift, 'data-shift': k, 'data-field': 'shift', required: true, 'aria-label': `Rotation shift ${k + 1} name` })),
      el('td', {}, el('input', { type: 'time', value: s.start, 'data-shift': k, 'data-field': 'start', required: true, 'aria-label': `${s.shift} start` })),
      el('td', {}, el('input', { type: 'time', value: s.end, 'data-shift': k, 'data-field': 'end', required: true, 'aria-label': `${s.shift} end` })),
      el('td', {}, el('input', { value: s.breaks, 'data-shift': k, 'data-field': 'breaks', placeholder: '10:00-10:30',
        'aria-label': `${s.shift} breaks` })),
      el('td', {}, el('button', { type: 'button', className: 'danger', 'data-remove-shift': k, text: 'Remove', 'aria-label': `Remove ${s.shift} from the rotation` })))));
  }

  /** Cycle days × shifts: whether each is worked, and by which crew. */
  renderRotationGrid() {
    const { $, el } = this.ui;
    const { shifts, grid } = this.rot;
    const grid$ = $('sv-rot-grid');
    grid$.tHead.replaceChildren(el('tr', {}, el('th', { scope: 'col', text: 'Day' }),
      ...shifts.map((s) => el('th', { scope: 'col', text: `${s.shift} ${s.start}–${s.end}` }))));
    grid$.tBodies[0].replaceChildren(...grid.map((row, d) => el('tr', { 'data-cycle-day': d + 1 },
      el('th', { scope: 'row', text: `${d + 1}` }),
      ...row.map((cell, k) => el('td', { className: 'rot-cell' },
        el('label', { className: 'check' }, el('input', { type: 'checkbox', checked: cell.work, 'data-day': d, 'data-shift': k,
          'aria-label': `Day ${d + 1}: ${shifts[k].shift} worked` }), el('span', { text: ' worked' })),
        el('input', { value: cell.team, 'data-day': d, 'data-shift': k, 'data-field': 'team', size: 3, placeholder: 'crew',
          'aria-label': `Day ${d + 1}: ${shifts[k].shift} crew` }))))));
  }

  onRotationChange(ev) {
    const t = ev.target;
    const k = Number(t.dataset.shift);
    if (t.dataset.day !== undefined) {
      const cell = this.rot.grid[Number(t.dataset.day)]?.[k];
      if (!cell) return;
      if (t.type === 'checkbox') cell.work = t.checked;
      else {
        cell.team = t.value;
        if (t.value.trim()) {
          cell.work = true;
          t.closest('td').querySelector('input[type=checkbox]').checked = true;
        }
      }
    } else if (t.dataset.field && this.rot.shifts[k]) {
      this.rot.shifts[k][t.dataset.field] = t.value;
      if (t.dataset.field !== 'breaks') this.renderRotationGrid();
    }
  }

  onRotationClick(ev) {
    const b = ev.target.closest('button[data-remove-shift]');
    if (!b) return;
    const k = Number(b.dataset.removeShift);
    this.rot.shifts.splice(k, 1);
    for (const row of this.rot.grid) row.splice(k, 1);
    this.renderRotation();
  }

  async onSaveRotation(ev) {
    ev.preventDefault();
    const { $, toast } = this.ui;
    const from = $('sv-rot-from').value;
    if (!this.line || !from) return;
    let body;
    try {
      body = rotationBody($('sv-rot-anchor').value, this.rot.shifts, this.rot.grid);
    } catch (e) {
      toast(`Not saved: ${e.message}`, 'error');
      return;
    }
    await this.change(`rotation of ${this.line} from ${from} saved`, 'PUT',
      `/api/v1/calendar/lines/${encodeURIComponent(this.line)}/rotations/${from}`, body);
  }

  renderReasons() {
    const { $, el, app, gate } = this.ui;
    const tb = $('sv-reasons').tBodies[0];
    const rows = app.reasons.map((r) => [r.code, r.name, r.category, r.loss, r.retired]);
    if (tb.dataset.sig === JSON.stringify(rows)) return;
    tb.dataset.sig = JSON.stringify(rows);
    tb.replaceChildren(...app.reasons.map((r) => {
      const actions = el('td');
      if (r.code !== 'unclassified') {
        actions.append(el('button', { type: 'button', 'data-reason': r.code, 'data-act': 'edit', 'data-perm': 'settings',
          text: 'Edit', 'aria-label': `Edit ${r.code}` }));
        actions.append(r.retired
          ? el('button', { type: 'button', 'data-reason': r.code, 'data-act': 'restore', 'data-perm': 'settings',
            text: 'Restore', 'aria-label': `Restore ${r.code}` })
          : el('button', { type: 'button', className: 'danger', 'data-reason': r.code, 'data-act': 'retire', 'data-perm': 'settings',
            text: 'Retire', 'aria-label': `Retire ${r.code}` }));
      }
      return el('tr', { 'data-code': r.code, 'data-retired': r.retired ? '1' : '0' },
        el('td', { text: r.code }), el('td', { text: r.retired ? `${r.name} (retired)` : r.name }),
        el('td', { text: r.category }), el('td', { text: r.loss ? LOSS_NAME[r.loss] || r.loss : '—' }), actions);
    }));
    gate(tb);
  }

  async onDefine(ev) {
    ev.preventDefault();
    const { $ } = this.ui;
    const code = $('sv-reason-code').value.trim();
    const body = reasonBody($('sv-reason-name').value.trim(), $('sv-reason-category').value, $('sv-reason-loss').value);
    if (await this.change(`reason code ${code} saved`, 'PUT', `/api/v1/reason-codes/${encodeURIComponent(code)}`, body)) {
      ev.target.reset();
      this.lossEnabled();
    }
  }

  async onReasonClick(ev) {
    const b = ev.target.closest('button[data-reason]');
    if (!b) return;
    const { $, app } = this.ui;
    const r = app.reasons.find((x) => x.code === b.dataset.reason);
    if (!r) return;
    if (b.dataset.act === 'edit') {
      $('sv-reason-code').value = r.code;
      $('sv-reason-name').value = r.name;
      $('sv-reason-category').value = r.category;
      if (r.loss) $('sv-reason-loss').value = r.loss;
      this.lossEnabled();
      $('sv-reason-name').focus();
    } else if (b.dataset.act === 'retire') {
      await this.change(`reason code ${r.code} retired`, 'POST', `/api/v1/reason-codes/${encodeURIComponent(r.code)}/retire`);
    } else if (b.dataset.act === 'restore') {
      await this.change(`reason code ${r.code} restored`, 'PUT', `/api/v1/reason-codes/${encodeURIComponent(r.code)}`,
        reasonBody(r.name, r.category, r.loss));
    }
  }

  /** Sends a settings change at once; shows the server's answer. */
  async change(done, method, path, body) {
    const { direct, toast } = this.ui;
    try {
      await direct(method, path, body);
      toast(`${done}`, 'ok');
      await this.load();
      this.render();
      return true;
    } catch (e) {
      toast(`Refused: ${e.message}`, 'error');
      return false;
    }
  }

  renderCalendar() {
    const { $, el, app } = this.ui;
    if (!this.calendar) return;
    $('sv-tz').textContent = `Plant time zone: ${this.calendar.time_zone}. Times are plant-local.`;
    const lines = linesOf(app.machines, this.calendar);
    const select = $('sv-shift-line');
    if (select.dataset.sig !== JSON.stringify(lines)) {
      select.dataset.sig = JSON.stringify(lines);
      select.replaceChildren(...lines.map((l) => el('option', { value: l, text: l })));
      if (!lines.includes(this.line)) this.line = lines[0] || '';
      select.value = this.line;
      this.editLine();
    }
  }

  /** Starts editing the selected line's shifts from the server's calendar. */
  editLine() {
    this.rows = shiftRows(this.calendar, this.line);
    this.renderRows();
  }

  addShift() {
    this.rows.push({ shift_name: `shift-${this.rows.length + 1}`, start_time: '06:00', end_time: '14:00', days: [1, 2, 3, 4, 5] });
    this.renderRows();
  }

  renderRows() {
    const { $, el } = this.ui;
    const tb = $('sv-shift-rows').tBodies[0];
    tb.replaceChildren(...this.rows.map((s, i) => {
      const days = el('td', { className: 'days' }, ...DAYS.map((d, k) => el('label', { className: 'check' },
        el('input', { type: 'checkbox', 'data-row': i, 'data-day': k + 1, checked: s.days.includes(k + 1),
          'aria-label': `${s.shift_name}: starts on ${d}` }), el('span', { text: ` ${d}` }))));
      return el('tr', {},
        el('td', {}, el('input', { value: s.shift_name, 'data-row': i, 'data-field': 'shift_name', required: true, 'aria-label': `Shift ${i + 1} name` })),
        el('td', {}, el('input', { type: 'time', value: s.start_time, 'data-row': i, 'data-field': 'start_time', required: true, 'aria-label': `${s.shift_name} start` })),
        el('td', {}, el('input', { type: 'time', value: s.end_time, 'data-row': i, 'data-field': 'end_time', required: true, 'aria-label': `${s.shift_name} end` })),
        days,
        el('td', {}, el('button', { type: 'button', className: 'danger', 'data-remove': i, text: 'Remove', 'aria-label': `Remove ${s.shift_name}` })));
    }));
  }

  onShiftChange(ev) {
    const t = ev.target;
    const row = this.rows[Number(t.dataset.row)];
    if (!row) return;
    if (t.dataset.field) row[t.dataset.field] = t.value;
    if (t.dataset.day) {
      const day = Number(t.dataset.day);
      row.days = t.checked ? [...new Set([...row.days, day])].sort() : row.days.filter((d) => d !== day);
    }
  }

  onShiftClick(ev) {
    const b = ev.target.closest('button[data-remove]');
    if (!b) return;
    this.rows.splice(Number(b.dataset.remove), 1);
    this.renderRows();
  }

  async onSaveShifts(ev) {
    ev.preventDefault();
    if (!this.line) return;
    const shifts = this.rows.map((s) => ({ shift_name: s.shift_name.trim(), start_time: s.start_time, end_time: s.end_time, days: s.days }));
    await this.change(`shifts of ${this.line} saved`, 'PUT', `/api/v1/calendar/lines/${encodeURIComponent(this.line)}/shifts`, { shifts });
    this.editLine();
  }
}
