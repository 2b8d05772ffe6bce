package dnsfwd

import (
	"container/list"
	"time"

	"github.com/miekg/dns"
)

// cacheKey is what an answer depends on besides the upstream: the name
// (lower case), type, class and whether the client asked for DNSSEC
// records.
type cacheKey struct {
	name  string
	qtype uint16
	class uint16
	do    bool
}

type cacheEntry struct {
	key     cacheKey
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
}

// maxCacheTTL caps how long an answer is kept, whatever its TTL, so a
// changed record upstream shows within the hour.
const maxCacheTTL = time.Hour

// cache is a small LRU of answers: at most size entries, each evicted at
// its TTL. Not safe for concurrent use; the forwarder locks around it.
type cache struct {
	size  int
	ll    *list.List // front: most recently used
	items map[cacheKey]*list.Element
}

func newCache(size int) *cache {
	return &cache{size: size, ll: list.New(), items: map[cacheKey]*list.Element{}}
}

// get returns a copy of the answer for k with its TTLs aged, or nil.
func (c *cache) get(k cacheKey, now time.Time) *dns.Msg {
	el, ok := c.items[k]
	if !ok {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.items, k)
		return nil
	}
	c.ll.MoveToFront(el)
	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Rrtype != dns.TypeOPT {
				h.Ttl -= min(age, h.Ttl)
			}
		}
	}
	return m
}

// put stores m for k when it may be cached: a positive answer for its
// smallest TTL, a negative one (NXDOMAIN, or no data) for the SOA's
// negative TTL (RFC 2308), capped at maxCacheTTL.
func (c *cache) put(k cacheKey, m *dns.Msg, now time.Time) {
	if c.size <= 0 || m.Truncated {
		return
	}
	ttl, ok := cacheTTL(m)
	if !ok || ttl <= 0 {
		return
	}
	e := &cacheEntry{key: k, msg: m.Copy(), stored: now, expires: now.Add(min(ttl, maxCacheTTL))}
	if el, ok := c.items[k]; ok {
		el.Value = e
		c.ll.MoveToFront(el)
		return
	}
	c.items[k] = c.ll.PushFront(e)
	for c.ll.Len() > c.size {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
}

func (c *cache) len() int { return c.ll.Len() }

func cacheTTL(m *dns.Msg) (time.Duration, bool) {
	switch m.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		return 0, false
	}
	if len(m.Answer) > 0 && m.Rcode == dns.RcodeSuccess {
		ttl := m.Answer[0].Header().Ttl
		for _, rr := range m.Answer {
			ttl = min(ttl, rr.Header().Ttl)
		}
		return time.Duration(ttl) * time.Second, true
	}
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second, true
		}
	}
	return 0, false
}
