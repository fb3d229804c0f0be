package routes

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/proxyto/proxyto/health"
)

// ErrStored occurs when Holder.Store is given a table that was already
// stored: a table is bound to its holder's health state and metric IDs once.
var ErrStored = errors.New("proxyto: routes table already stored")

// Holder publishes the current routes table to the event loops: Table is one
// atomic load, Store and Reload swap the pointer, and a request keeps using
// the table it loaded until it is done. It is safe for concurrent use.
type Holder struct {
	cur     atomic.Pointer[Table]
	tracker *health.Tracker

	mu    sync.Mutex // serialises Store: ids, names, tracker.Retain
	ids   map[string]int
	names atomic.Pointer[[]string]
}

// NewHolder returns a Holder with no table. Route entries' health lives in
// tr, shared with X-Proxy-To lists (nil: a private tracker with the default
// settings).
func NewHolder(tr *health.Tracker) *Holder {
	if tr == nil {
		tr = health.New(health.Config{})
	}
	h := &Holder{tracker: tr, ids: map[string]int{}}
	h.names.Store(&[]string{})
	return h
}

// Table returns the current table, or nil when none was stored. It never
// blocks or allocates.
func (h *Holder) Table() *Table { return h.cur.Load() }

// Tracker returns the health tracker route entries report to.
func (h *Holder) Tracker() *health.Tracker { return h.tracker }

// Store binds t (a table fresh from Load or Parse) and publishes it: each
// route gets its stable metric ID, each entry its health identity and state
// (an upstream that stays in the file keeps its state), then the pointer
// swaps. Requests that loaded the old table finish with it.
func (h *Holder) Store(t *Table) error {
	if !t.stored.CompareAndSwap(false, true) {
		return ErrStored
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	names := *h.names.Load()
	var keys []health.Key
	for _, r := range t.routes {
		id, ok := h.ids[r.name]
		if !ok {
			id = len(names)
			h.ids[r.name] = id
			names = append(names[:len(names):len(names)], r.name)
		}
		r.id = id
		for i := range r.ups {
			r.keys[i] = h.tracker.Key(&r.ups[i])
		}
		keys = append(keys, r.keys...)
	}
	states := h.tracker.Retain(keys)
	for _, r := range t.routes {
		n := copy(r.states, states)
		states = states[n:]
	}
	// Names first: a request that sees the new table finds every ID in it.
	h.names.Store(&names)
	h.cur.Store(t)
	return nil
}

// Reload loads path and stores it. On any error the current table stays
// and the error (a *FileError for a bad file) is returned for the log.
func (h *Holder) Reload(path string) error {
	t, err := Load(path)
	if err != nil {
		return err
	}
	return h.Store(t)
}

// Names returns every route name any stored table defined, indexed by
// Route.ID. Names are never removed, so the slice only grows: a metric
// series for a route that left the file stays, frozen. Do not modify it.
func (h *Holder) Names() []string { return *h.names.Load() }

// EachRoute calls f for every route of the current table with its number
// of upstreams and how many of them are ejected: what the per-route gauges
// show, read at scrape time.
func (h *Holder) EachRoute(f func(name string, upstreams, ejected int)) {
	t := h.Table()
	if t == nil {
		return
	}
	for _, r := range t.routes {
		f(r.name, len(r.ups), r.Ejected())
	}
}
