package syslog

// ring is the forwarder's bounded FIFO of records. The caller locks.
type ring struct {
	buf  []entry
	head int // oldest
	n    int
}

// push appends e; when full it overwrites the oldest and reports that.
func (r *ring) push(e entry) (dropped bool) {
	if r.n == len(r.buf) {
		r.buf[r.head] = e
		r.head = (r.head + 1) % len(r.buf)
		return true
	}
	r.buf[(r.head+r.n)%len(r.buf)] = e
	r.n++
	return false
}

func (r *ring) pop() (entry, bool) {
	if r.n == 0 {
		return entry{}, false
	}
	e := r.buf[r.head]
	r.buf[r.head] = entry{} // let the text be collected
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return e, true
}

func (r *ring) clear() {
	clear(r.buf)
	r.head, r.n = 0, 0
}
