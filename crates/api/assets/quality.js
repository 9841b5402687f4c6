// The supervisor's quality holds in the floor app (ADR 0057): the lots on hold, each
// released or scrapped by a decision with its reason, and a lot put on hold (with every lot
// it went into, if asked). Holds and decisions are sent at once (`direct`), like settings:
// a quality decision is not a floor action to replay later, and the person must see at
// once whether the server took it. The pure part (`heldRows`) is apart from the DOM.

/** The held lots as the card lists them: newest hold reason first is not known, so by item and lot. */
export function heldRows(lots) {
  return (lots || [])
    .filter((l) => l.status === 'held')
    .map((l) => ({
      item: l.item_id,
      lot: l.lot_id,
      reason: l.hold_reason || '—',
      quantity: l.quantity ?? 0,
      order: l.order_id || '—',
      where: (l.stock || []).map((s) => `${s.location} ${s.quantity}`).join(', ') || '—',
    }))
    .sort((a, b) => (a.item + a.lot).localeCompare(b.item + b.lot));
}

export class Quality {
  /** `ui`: { $, el, get, direct, toast, gate, app }. */
  constructor(ui) {
    this.ui = ui;
    this.lots = [];
  }

  wire() {
    const { $ } = this.ui;
    $('sv-hold').addEventListener('submit', (ev) => this.onHold(ev));
    $('sv-held').addEventListener('click', (ev) => this.onDecision(ev));
  }

  async load() {
    const { get, app } = this.ui;
    if (!app.endpoints.has('get /api/v1/lots')) return;
    this.lots = await get('/api/v1/lots?status=held&limit=500').catch(() => this.lots);
  }

  render() {
    const { $, el, gate } = this.ui;
    const rows = heldRows(this.lots);
    const tb = $('sv-held').tBodies[0];
    const sig = JSON.stringify(rows);
    if (tb.dataset.sig === sig) return;
    tb.dataset.sig = sig;
    const button = (r, act, label, cls) => el('button', {
      type: 'button', className: cls, 'data-item': r.item, 'data-lot': r.lot, 'data-decision': act,
      'data-perm': 'quality_holds', text: label, 'aria-label': `${label} lot ${r.item}/${r.lot}`,
    });
    tb.replaceChildren(...rows.map((r) => el('tr', { 'data-held': `${r.item}/${r.lot}` },
      el('td', { text: r.item }), el('td', { text: r.lot }), el('td', { text: r.reason }),
      el('td', { text: r.where }), el('td', { text: r.order }),
      el('td', {}, button(r, 'release', 'Release'), button(r, 'scrap', 'Scrap', 'danger')))));
    $('sv-held-none').hidden = rows.length > 0;
    gate(tb);
  }

  async refresh() {
    await this.load();
    this.render();
  }

  async onHold(ev) {
    ev.preventDefault();
    const { $ } = this.ui;
    const item = $('sv-hold-item').value.trim();
    const lot = $('sv-hold-lot').value.trim();
    const body = { reason: $('sv-hold-reason').value.trim(), forward: $('sv-hold-forward').checked };
    const path = `/api/v1/lots/${encodeURIComponent(item)}/${encodeURIComponent(lot)}/hold`;
    const answer = await this.decide(path, body);
    if (!answer) return;
    const n = (answer.held || []).length;
    this.ui.toast(`${item}/${lot}: ${n} lot${n === 1 ? '' : 's'} put on hold`, 'ok');
    ev.target.reset();
  }

  async onDecision(ev) {
    const b = ev.target.closest('button[data-decision]');
    if (!b) return;
    const { $, toast } = this.ui;
    const reason = $('sv-decision-reason');
    if (!reason.value.trim()) {
      toast('Give the reason for the decision first', 'error');
      reason.focus();
      return;
    }
    const { item, lot, decision } = b.dataset;
    const path = `/api/v1/lots/${encodeURIComponent(item)}/${encodeURIComponent(lot)}/${decision}`;
    if (await this.decide(path, { reason: reason.value.trim() })) {
      toast(`${item}/${lot} ${decision === 'scrap' ? 'scrapped' : 'released'}`, 'ok');
      reason.value = '';
    }
  }

  /** Sends a decision at once; shows the server's refusal. */
  async decide(path, body) {
    const { direct, toast } = this.ui;
    try {
      const answer = await direct('POST', path, body);
      await this.refresh();
      return answer || {};
    } catch (e) {
      toast(`Refused: ${e.message}`, 'error');
      return null;
    }
  }
}
