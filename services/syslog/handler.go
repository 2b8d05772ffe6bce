package syslog

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// Handler returns a slog.Handler that passes every record to next, as
// before, and also queues it for the collector when the forwarder wants
// it. It never waits for the network. The record's AppKey attribute (added
// with Logger.With, as the appliance does per service) becomes the
// message's APP-NAME; the other attributes follow the message text as
// key=value pairs, as on the console.
func (f *Forwarder) Handler(next slog.Handler) slog.Handler {
	return &handler{f: f, next: next}
}

type handler struct {
	f      *Forwarder
	next   slog.Handler
	app    string // from an AppKey attribute added with WithAttrs
	prefix string // the open groups, "a.b."
	attrs  []byte // " k=v" of the attributes added with WithAttrs
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l) || h.f.enabled(l)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.next.Enabled(ctx, r.Level) {
		err = h.next.Handle(ctx, r)
	}
	if !h.f.enabled(r.Level) {
		return err
	}
	app := h.app
	b := make([]byte, 0, len(r.Message)+len(h.attrs)+64)
	b = append(b, r.Message...)
	b = append(b, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		b = h.appendAttr(b, h.prefix, a, &app)
		return len(b) < maxText
	})
	h.f.enqueue(entry{time: r.Time, level: r.Level, app: app, text: truncateUTF8(string(b), maxText)})
	return err
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.next = h.next.WithAttrs(as)
	h2.attrs = slices.Clip(h.attrs)
	for _, a := range as {
		h2.attrs = h2.appendAttr(h2.attrs, h.prefix, a, &h2.app)
	}
	return &h2
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.next = h.next.WithGroup(name)
	h2.prefix = h.prefix + name + "."
	return &h2
}

// appendAttr appends " key=value", flattening groups into dotted keys as
// slog's text handler does. A top-level AppKey attribute sets *app instead.
func (h *handler) appendAttr(b []byte, prefix string, a slog.Attr, app *string) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return b
	}
	if a.Value.Kind() == slog.KindGroup {
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			b = h.appendAttr(b, prefix, ga, app)
		}
		return b
	}
	if prefix == "" && a.Key == h.f.opts.AppKey {
		*app = a.Value.String()
		return b
	}
	b = append(b, ' ')
	b = appendText(b, prefix+a.Key)
	b = append(b, '=')
	return appendText(b, valueText(a.Value))
}

func valueText(v slog.Value) string {
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return err.Error()
		}
	}
	return v.String()
}

// appendText appends s, quoted when a reader could not tell where it ends.
func appendText(b []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if r == '"' || r == '=' || r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}
