package ike

import (
	"time"
)

// Status is a snapshot of the tunnel for operators and the -once applet.
type Status struct {
	State       string        `json:"ike"` // a State's String: "down", "connecting", "established"
	KE          string        `json:"ke,omitempty"`
	AddKE       []string      `json:"addke"`
	Encr        string        `json:"encr,omitempty"`
	PRF         string        `json:"prf,omitempty"`
	ESP         string        `json:"esp,omitempty"`
	Local       string        `json:"local,omitempty"`
	Remote      string        `json:"remote,omitempty"`
	NATT        bool          `json:"nat_t"`
	SPIi        string        `json:"spi_i,omitempty"`
	SPIr        string        `json:"spi_r,omitempty"`
	Children    []ChildStatus `json:"children"`
	Established time.Time     `json:"established,omitzero"`
	IKERekeys   int           `json:"ike_rekeys"`
	ChildRekeys int           `json:"child_rekeys"`
	Exchanges   uint64        `json:"exchanges"`
	Retransmits uint64        `json:"retransmits"`
	Dropped     uint64        `json:"dropped"` // received datagrams ignored as invalid
	BytesSent   uint64        `json:"ike_bytes_sent"`
	BytesRecvd  uint64        `json:"ike_bytes_received"`
	LastError   string        `json:"last_error,omitempty"`
}

// ChildStatus describes one installed Child SA pair.
type ChildStatus struct {
	SPIIn      string   `json:"spi_in"`
	SPIOut     string   `json:"spi_out"`
	Local      []string `json:"local_ts"`
	Remote     []string `json:"remote_ts"`
	BytesIn    uint64   `json:"bytes_in"`
	BytesOut   uint64   `json:"bytes_out"`
	PacketsIn  uint64   `json:"packets_in"`
	PacketsOut uint64   `json:"packets_out"`
}
